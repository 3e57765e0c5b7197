"""Tests for dreamer_trl.data.gym (env.suite gym): frames, rewards and episode ends against gymnasium stepped
directly, the action mappings, the random stream saved for a resume, and refusals naming the space or id."""
import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

from dreamer_trl.data.gym import GymEnv, check_gym_id, gym_action_space, make_gym_env


def one_hot(index: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), n).float()


def step(env, td, action):
    td = env.step(td.set("action", action))
    return td, td["next"].clone()


def test_cartpole_steps_as_gymnasium_with_the_same_seed_and_actions():
    """Reference: gymnasium's CartPole-v1 reset with the same seed and stepped with the argmax of each one-hot
    action gives the same observations, rewards and terminal flags, over episode ends."""
    env = GymEnv("CartPole-v1", seed=7)
    ref = gymnasium.make("CartPole-v1")
    obs, _ = ref.reset(seed=7)
    td = env.reset()
    assert np.allclose(td["observation"].numpy(), obs)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(120):
        a = int(rng.integers(2))
        td, nxt = step(env, td, one_hot(a, 2))
        obs, r, term, trunc, _ = ref.step(a)
        assert np.allclose(nxt["observation"].numpy(), obs.astype(np.float32))
        assert nxt["reward"].item() == r and nxt["terminated"].item() == term and nxt["truncated"].item() == trunc
        assert nxt["done"].item() == (term or trunc)
        if term or trunc:
            ends += 1
            obs, _ = ref.reset()
            td = env.reset()
            assert np.allclose(td["observation"].numpy(), obs)
        else:
            td = nxt
    assert ends >= 2  # random actions end CartPole within about 20 steps


def test_specs_and_continuous_actions_are_mapped_onto_the_box_bounds():
    check_env_specs(make_gym_env("Pendulum-v1", seed=1))
    base = GymEnv("Pendulum-v1", seed=1)
    assert not base.discrete and base.action_spec.shape == (1,)
    assert (base.action_spec.space.low == -1).all() and (base.action_spec.space.high == 1).all()
    ref = gymnasium.make("Pendulum-v1")
    ref.reset(seed=1)
    td = base.reset()
    for x in (-1.0, 0.5, 1.0):  # Pendulum's torque bounds are [-2, 2]
        td, nxt = step(base, td, torch.tensor([x]))
        obs, r, *_ = ref.step(np.array([2.0 * x], dtype=np.float32))
        assert np.allclose(nxt["observation"].numpy(), obs) and np.isclose(nxt["reward"].item(), r)
        td = nxt
    check_env_specs(make_gym_env("CartPole-v1"))


def test_action_repeat_sums_rewards_and_the_frame_limit_truncates():
    env = GymEnv("CartPole-v1", seed=0, action_repeat=3, episode_frames=6)
    ref = gymnasium.make("CartPole-v1")
    ref.reset(seed=0)
    td = env.reset()
    actions = [0, 1, 0, 1, 0, 1]
    rewards = [ref.step(a)[1] for a in actions]
    td, nxt = step(env, td, one_hot(0, 2))
    assert nxt["reward"].item() == 3.0 and not nxt["done"].item()  # only action 0 three times: it is not replayed
    td = nxt
    td, nxt = step(env, td, one_hot(1, 2))
    assert nxt["truncated"].item() and nxt["done"].item() and not nxt["terminated"].item()  # 6 frames: the limit
    assert sum(rewards) == 6.0


def test_a_termination_is_not_a_truncation():
    env = GymEnv("CartPole-v1", seed=3)
    td = env.reset()
    for _ in range(200):  # always pushing left: the pole falls, a termination
        td, nxt = step(env, td, one_hot(0, 2))
        if nxt["done"].item():
            break
        td = nxt
    assert nxt["terminated"].item() and not nxt["truncated"].item()


def test_the_random_stream_round_trips_for_a_resume():
    """Resets after a restored task_random_state equal those of the env it was saved from."""
    env = GymEnv("CartPole-v1", seed=5)
    assert env.task_random_state() == {"seed": 5}  # before the first reset: the seed
    env.reset()
    env.reset()
    state = env.task_random_state()
    other = GymEnv("CartPole-v1", seed=99)
    other.set_task_random_state(state)
    for _ in range(3):
        assert torch.equal(env.reset()["observation"], other.reset()["observation"])
    fresh = GymEnv("CartPole-v1", seed=99)
    fresh.set_task_random_state({"seed": 5})
    assert torch.equal(fresh.reset()["observation"], GymEnv("CartPole-v1", seed=5).reset()["observation"])


def test_pixels_are_the_render_at_image_size():
    env = make_gym_env("CartPole-v1", from_pixels=True, image_size=32, seed=0)
    check_env_specs(env)
    td = env.reset()
    assert td["pixels"].shape == (3, 32, 32) and td["pixels"].dtype == torch.uint8
    assert td["pixels"].float().std() > 0  # a drawn frame, not a blank one
    assert env.base_env.render(48).shape == (48, 48, 3)


class _MultiDiscreteEnv(gymnasium.Env):
    """A user's env: no render_mode argument, a MultiDiscrete action space."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_unsupported_action_spaces_and_unknown_ids_are_refused_by_name():
    gymnasium.register(id="DreamerTrlTest/MultiDiscrete-v0", entry_point=_MultiDiscreteEnv)
    with pytest.raises(ValueError, match=r"Discrete or 1-d Box actions, not MultiDiscrete\(\[2 3\]\)"):
        GymEnv("DreamerTrlTest/MultiDiscrete-v0")
    with pytest.raises(ValueError, match=r"env.task': unknown gymnasium id 'CartPol-v1'; did you mean CartPole-v1"):
        check_gym_id("CartPol-v1")
    assert gym_action_space("CartPole-v1") == "discrete" and gym_action_space("Pendulum-v1") == "continuous"


def test_non_finite_actions_are_refused():
    env = GymEnv("Pendulum-v1")
    td = env.reset()
    with pytest.raises(ValueError, match="Non-finite"):
        env.step(td.set("action", torch.tensor([float("nan")])))
    assert isinstance(td, TensorDict)
