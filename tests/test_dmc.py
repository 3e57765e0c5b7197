import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import dm_env  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from dm_control import suite  # noqa: E402
from torchrl.envs.utils import check_env_specs, step_mdp  # noqa: E402

from dreamer_trl.data.dmc import DMCEnv, make_dmc_env  # noqa: E402
from dreamer_trl.keys import (  # noqa: E402
    ACTION,
    DONE,
    IS_INIT,
    OBSERVATION,
    PIXELS,
    REWARD,
    TERMINATED,
    TRUNCATED,
)

SEED = 7


def _random_actions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-1, 1, size=(n, dim)).astype(np.float32)


def _flat(observation) -> np.ndarray:
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in observation.values()])


def _run_ours(env, actions: np.ndarray) -> list:
    """Step `env` through `actions` from a reset; return the list of step outputs."""
    td = env.reset()
    outputs = [td.clone()]
    for a in actions:
        td[ACTION] = torch.from_numpy(a)
        td = env.step(td)
        outputs.append(td.clone())
        if td["next", DONE].item():
            break
        td = step_mdp(td)
    return outputs


@pytest.mark.parametrize(
    "domain, task, from_pixels", [("cartpole", "swingup", True), ("cheetah", "run", False)]
)
@pytest.mark.parametrize("wrapped", [True, False])
def test_check_env_specs(domain, task, from_pixels, wrapped):
    env = make_dmc_env(domain, task, from_pixels=from_pixels, episode_frames=20)
    check_env_specs(env if wrapped else env.base_env)


def test_pixel_dtypes_and_shapes():
    env = make_dmc_env("cartpole", "swingup")
    td = env.rand_step(env.reset())
    assert list(env.observation_spec.keys()) == [PIXELS, IS_INIT]
    for pixels in (td[PIXELS], td["next", PIXELS]):
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 64, 64)
    assert td[IS_INIT].item() and not td["next", IS_INIT].item()
    assert td["next", REWARD].dtype == torch.float32 and td["next", REWARD].shape == (1,)
    for key in (DONE, TERMINATED, TRUNCATED):
        assert td["next", key].dtype == torch.bool and td["next", key].shape == (1,)
    spec = env.action_spec
    assert spec.dtype == torch.float32 and spec.shape == (1,)
    assert torch.all(spec.space.low == -1) and torch.all(spec.space.high == 1)


def test_state_dtypes_and_shapes():
    env = make_dmc_env("cheetah", "run", from_pixels=False)
    raw_spec = suite.load("cheetah", "run").observation_spec()
    size = sum(int(np.prod(s.shape)) for s in raw_spec.values())
    obs = env.reset()[OBSERVATION]
    assert PIXELS not in env.observation_spec.keys()
    assert obs.dtype == torch.float32 and obs.shape == (size,) == (17,)
    spec = env.action_spec
    assert spec.dtype == torch.float32 and spec.shape == (6,)
    assert torch.all(spec.space.low == -1) and torch.all(spec.space.high == 1)


def test_pixels_match_raw_dm_control():
    """Same seed and actions: rewards (summed over 2 repeats), frames and episode length match."""
    frames, repeat = 100, 2
    env = make_dmc_env(
        "cartpole", "swingup", episode_frames=frames, action_repeat=repeat, seed=SEED
    )
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": SEED})
    actions = _random_actions(frames, 1)
    ours = _run_ours(env, actions)
    assert len(ours) - 1 == frames // repeat

    def raw_frame():
        return torch.from_numpy(raw.physics.render(64, 64, camera_id=0).transpose(2, 0, 1).copy())

    raw.reset()
    assert torch.equal(ours[0][PIXELS], raw_frame())
    for t, td in enumerate(ours[1:]):
        reward = sum(raw.step(actions[t]).reward for _ in range(repeat))
        assert td["next", REWARD].item() == pytest.approx(reward, abs=1e-6)
        assert torch.equal(td["next", PIXELS], raw_frame())
    assert ours[-1]["next", TRUNCATED].item() and not ours[-1]["next", TERMINATED].item()
    assert not any(td["next", DONE].item() for td in ours[1:-1])


def test_full_episode_matches_raw_dm_control():
    """1000 frames with action repeat 2 are 500 agent steps; the last one is truncated."""
    env = make_dmc_env("cheetah", "run", from_pixels=False, seed=SEED)
    raw = suite.load("cheetah", "run", task_kwargs={"random": SEED})
    actions = _random_actions(1000, 6)
    ours = _run_ours(env, actions)
    assert len(ours) - 1 == 500
    np.testing.assert_array_equal(ours[0][OBSERVATION].numpy(), _flat(raw.reset().observation))
    for t, td in enumerate(ours[1:]):
        steps = [raw.step(actions[t]) for _ in range(2)]
        assert td["next", REWARD].item() == pytest.approx(sum(s.reward for s in steps), abs=1e-6)
        np.testing.assert_array_equal(td["next", OBSERVATION].numpy(), _flat(steps[-1].observation))
    assert steps[-1].last() and steps[-1].discount == 1.0
    assert ours[-1]["next", TRUNCATED].item() and not ours[-1]["next", TERMINATED].item()


def test_render_once_per_agent_step(monkeypatch):
    env = make_dmc_env("cartpole", "swingup", action_repeat=2)
    physics = env.base_env.dm_env.physics
    calls = []
    original = physics.render

    def counting_render(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(physics, "render", counting_render)
    env.rollout(5)
    assert len(calls) == 5 + 1
    assert all(c == {"height": 64, "width": 64, "camera_id": 0} for c in calls)


def test_discount_zero_is_terminated(monkeypatch):
    """A last time step with discount 0 ends the episode as terminated and stops the repeats."""
    env = DMCEnv("cartpole", "swingup", from_pixels=False, action_repeat=3)
    raw_step = env.dm_env.step
    calls = []

    def terminating_step(action):
        calls.append(1)
        time_step = raw_step(action)
        return time_step._replace(step_type=dm_env.StepType.LAST, discount=0.0)

    env.reset()
    monkeypatch.setattr(env.dm_env, "step", terminating_step)
    td = env.rand_step()
    assert len(calls) == 1
    assert td["next", TERMINATED].item() and td["next", DONE].item()
    assert not td["next", TRUNCATED].item()


def test_quadruped_uses_camera_2():
    assert DMCEnv("quadruped", "walk").camera_id == 2
    assert DMCEnv("quadruped", "walk", camera_id=1).camera_id == 1
    assert DMCEnv("cheetah", "run").camera_id == 0


def test_quadruped_actions_are_rescaled_to_task_bounds(monkeypatch):
    """quadruped's bounds are not [-1, 1]: agent actions -1 and 1 reach the task's min and max."""
    env = DMCEnv("quadruped", "walk", from_pixels=False, action_repeat=1)
    bounds = env.dm_env.action_spec()
    received = []
    raw_step = env.dm_env.step
    monkeypatch.setattr(env.dm_env, "step", lambda a: received.append(a) or raw_step(a))
    td = env.reset()
    for value in (-1.0, 1.0):
        td[ACTION] = torch.full((12,), value)
        td = step_mdp(env.step(td))
    np.testing.assert_allclose(received[0], bounds.minimum)
    np.testing.assert_allclose(received[1], bounds.maximum)


@pytest.mark.parametrize("from_pixels", [False, True])
def test_seeding(from_pixels):
    key = PIXELS if from_pixels else OBSERVATION

    def reset_obs(env):
        return env.reset()[key]

    first = reset_obs(make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, seed=3))
    second = reset_obs(make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, seed=3))
    other = reset_obs(make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, seed=4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)

    env = make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, seed=0)
    env.reset()
    env.set_seed(3)
    assert torch.equal(reset_obs(env), first)


def test_non_finite_action_raises():
    env = make_dmc_env("cartpole", "swingup", from_pixels=False)
    td = env.reset()
    td[ACTION] = torch.tensor([float("nan")])
    with pytest.raises(ValueError, match="action"):
        env.step(td)


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(domain="cartpole", task="no_such_task"), "no_such_task"),
        (dict(domain="no_such_domain", task="run"), "no_such_domain"),
        (dict(domain="cartpole", task="swingup", image_size=0), "image_size"),
        (dict(domain="cartpole", task="swingup", action_repeat=0), "action_repeat"),
        (dict(domain="lqr", task="lqr_2_1"), "unbounded"),
    ],
)
def test_invalid_arguments_raise(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        make_dmc_env(**kwargs)


def _faulty(env, fail_at_calls):
    """Make dm_control's step raise PhysicsError on the given call numbers."""
    from dm_control.rl.control import PhysicsError

    base = env.base_env if hasattr(env, "base_env") else env
    real_step, calls = base.dm_env.step, {"n": 0}

    def step(action):
        calls["n"] += 1
        if calls["n"] in fail_at_calls:
            raise PhysicsError("simulated instability")
        return real_step(action)

    base.dm_env.step = step
    return base


def test_physics_error_truncates_the_episode_and_the_env_recovers():
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, episode_frames=40, seed=0)
    base = _faulty(env, {5})
    td = env.rollout(30, break_when_any_done=False)
    done = td["next", "done"].squeeze(-1)
    first_end = int(done.nonzero()[0])
    assert first_end == 2  # agent step 3 holds physics calls 5-6 with action repeat 2
    assert td["next", "truncated"][first_end].item() and not td["next", "terminated"][first_end].item()
    assert torch.isfinite(td["next", "observation"]).all()
    assert td["is_init"][first_end + 1].item()  # reset after the fault
    assert base.physics_errors == 1


def test_repeated_physics_errors_abort_with_a_clear_message():
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, episode_frames=40, seed=0,
                       max_physics_errors=2, physics_error_window=10)
    _faulty(env, set(range(1, 1000)))
    with pytest.raises(RuntimeError, match="physics errors within the last 10 episodes"):
        env.rollout(10, break_when_any_done=False)


@pytest.mark.parametrize("wrapped", [True, False])
def test_task_random_state_round_trip(wrapped):
    # The task's random stream draws each episode's initial state; restoring it (from JSON, through the
    # TransformedEnv, which forwards the call) replays the same initial states.
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, seed=5)
    env = env if wrapped else env.base_env
    env.reset()
    state = json.loads(json.dumps(env.task_random_state()))
    first = [env.reset()[OBSERVATION] for _ in range(2)]
    assert not torch.equal(first[0], first[1])
    env.set_task_random_state(state)
    assert all(torch.equal(env.reset()[OBSERVATION], obs) for obs in first)
    other = make_dmc_env("cartpole", "swingup", from_pixels=False, seed=6)
    other.set_task_random_state(state)
    assert torch.equal(other.reset()[OBSERVATION], first[0])


def test_physics_errors_is_read_only_and_forwarded():
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, episode_frames=40, seed=0)
    _faulty(env, {3})
    env.rollout(5, break_when_any_done=False)
    assert env.physics_errors == env.base_env.physics_errors == 1
    with pytest.raises(AttributeError):
        env.base_env.physics_errors = 0
