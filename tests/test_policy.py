"""The real-environment policy: carries state/belief/prev_action, noise on in training and off in evaluation."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch
from conftest import TINY
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.data import Bounded
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type

from dreamer_trl.behavior.policy import make_policy, policy_carry_transform
from dreamer_trl.builders.networks import make_actor, make_world_model
from dreamer_trl.data.dmc import make_dmc_env

FEAT = TINY.world_model.latent.state_dim + TINY.world_model.rssm.belief_dim


def build(from_pixels=False, episode_frames=40, noise=0.3):
    torch.manual_seed(0)
    env = make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, episode_frames=episode_frames, seed=0)
    A = env.action_spec.shape[-1]
    env.append_transform(policy_carry_transform(TINY.world_model.latent.state_dim, TINY.world_model.rssm.belief_dim, A))
    key = "pixels" if from_pixels else "observation"
    wm = make_world_model(key, tuple(env.observation_spec[key].shape), A, TINY)
    actor = make_actor(FEAT, A, TINY)
    return env, wm, actor, make_policy(wm, actor, env.action_spec, noise)


def test_env_with_carry_passes_check_env_specs():
    env, *_ = build()
    check_env_specs(env)


def test_rollout_carries_prev_action_and_recurrent_state():
    env, wm, actor, policy = build()
    with set_exploration_type(ExplorationType.RANDOM):
        td = env.rollout(30, policy=policy, break_when_any_done=False)
    assert (td["prev_action"][0] == 0).all() and td["is_init"][0].item()
    torch.testing.assert_close(td["prev_action"][1:20], td["action"][:19])
    # the belief carried into step t+1 is the one computed at step t
    torch.testing.assert_close(td["next", "belief"][:-1], td["belief"][:-1])
    assert not torch.allclose(td["belief"][1], td["belief"][2])
    assert (td["action"].abs() <= 1).all()


def test_episode_restart_resets_the_carry():
    env, wm, actor, policy = build(episode_frames=20)  # 10 agent steps per episode
    collector = Collector(env, policy, frames_per_batch=25, total_frames=25)
    data = next(iter(collector))
    collector.shutdown()
    starts = data["is_init"].squeeze(-1).nonzero().flatten().tolist()
    assert starts == [0, 10, 20]
    for t in starts:
        assert (data["prev_action"][t] == 0).all()


def test_policy_step_matches_the_rssm_and_actor():
    env, wm, actor, policy = build(noise=0.0)
    rssm = wm.get_transition_model_operator()["observe"].rssm
    encoder = wm.get_transition_model_operator()["observe"].encoder
    td = env.reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.manual_seed(3)
        out = policy(td.clone())
        torch.manual_seed(3)
        s, h = rssm.observe_step(td["state"], td["belief"], td["prev_action"], encoder(td["observation"]),
                                 td["is_init"])
        expected = actor.module(s, h)
    torch.testing.assert_close(out["state"], s)
    torch.testing.assert_close(out["action"], expected)


def test_exploration_noise_only_in_training():
    env, wm, actor, policy = build(noise=0.3)
    td = env.reset()

    def act(kind, seed):
        torch.manual_seed(seed)
        with set_exploration_type(kind):
            return policy(td.clone())["action"]

    # evaluation: actor mode, no noise (equal across different random streams up to the posterior sample)
    base = TensorDictSequential(policy.module[0], policy.module[1])  # filter + behaviour, no noise
    torch.manual_seed(0)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        mode = base(td.clone())["action"]
    torch.testing.assert_close(act(ExplorationType.DETERMINISTIC, 0), mode)
    assert not torch.allclose(act(ExplorationType.RANDOM, 0), mode)


def test_pixel_policy_accepts_uint8_frames():
    env, wm, actor, policy = build(from_pixels=True, episode_frames=10)
    td = env.rollout(3, policy=policy)
    assert td["pixels"].dtype == torch.uint8 and td["action"].shape == (3, 1)


def test_any_behaviour_plugs_in_after_the_filter():
    """The behaviour is a TensorDictModule "state", "belief" -> "action": here a constant one."""
    from tensordict.nn import TensorDictModule

    env, wm, _, _ = build()
    A = env.action_spec.shape[-1]

    class Constant(torch.nn.Module):
        def forward(self, state, belief):
            return torch.full((*state.shape[:-1], A), 0.25)

    behaviour = TensorDictModule(Constant(), in_keys=["state", "belief"], out_keys=["action"])
    policy = make_policy(wm, behaviour, env.action_spec, exploration_noise=0.3)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = env.rollout(5, policy=policy)
    assert torch.equal(td["action"], torch.full((5, A), 0.25))
    assert not torch.equal(td["next", "belief"][1], td["next", "belief"][0])  # the filter still runs


def test_filter_writes_only_the_latent_and_runs_without_autograd():
    env, wm, actor, policy = build()
    td = env.reset()
    out = policy.module[0](td.clone())
    assert "action" not in out.keys() and out["state"].shape == (TINY.world_model.latent.state_dim,)
    assert not policy(td.clone())["action"].requires_grad


def test_actor_distribution_sample_mode_log_prob_entropy():
    _, _, actor, _ = build()
    torch.manual_seed(0)
    state, belief = torch.randn(64, TINY.world_model.latent.state_dim), torch.randn(64, TINY.world_model.rssm.belief_dim)
    dist = actor.module.dist(state, belief)
    torch.manual_seed(1)
    sample = dist.rsample()
    torch.manual_seed(1)
    assert torch.equal(sample, actor.module(state, belief))  # the actor's own sample under exploration
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert torch.equal(dist.mode(), actor.module(state, belief))
    assert dist.log_prob(sample).shape == (64,) and torch.isfinite(dist.entropy(samples=10)).all()


def test_act_with_mode_uses_the_actor_mode_under_random_exploration():
    env, wm, actor, _ = build()
    policy = make_policy(wm, actor, env.action_spec, exploration_noise=0.0, act_with_mode=True)
    sampling = make_policy(wm, actor, env.action_spec, exploration_noise=0.0)
    td = env.reset()

    def act(p, kind):
        torch.manual_seed(0)  # the same posterior sample for each call
        with set_exploration_type(kind):
            return p(td.clone())["action"]

    a_mode, a_sample = act(policy, ExplorationType.RANDOM), act(sampling, ExplorationType.RANDOM)
    a_det = act(sampling, ExplorationType.DETERMINISTIC)
    torch.testing.assert_close(a_mode, a_det)
    assert not torch.allclose(a_sample, a_det, atol=1e-3)


# --- composing with TorchRL's own envs and transforms (issue 14) ---

def torchrl_dmc_env(carry=True):
    """TorchRL's DMControlEnv (float64 state) with the obvious transforms, then our carry."""
    from torchrl.envs import CatTensors, DMControlEnv, DoubleToFloat, InitTracker, TransformedEnv

    env = TransformedEnv(DMControlEnv("cartpole", "balance"),
                         CatTensors(["position", "velocity"], "observation"))
    env.append_transform(DoubleToFloat())
    env.append_transform(InitTracker())
    if carry:
        env.append_transform(policy_carry_transform(TINY.world_model.latent.state_dim, TINY.world_model.rssm.belief_dim, 1))
    return env


def tiny_state_policy(action_spec, noise=0.3):
    torch.manual_seed(0)
    wm = make_world_model("observation", (5,), 1, TINY)
    return make_policy(wm, make_actor(FEAT, 1, TINY), action_spec, noise)


def test_carry_after_double_to_float_passes_check_env_specs_and_a_collector():
    """The carry casts the action (float64 after DoubleToFloat's inverse) to the float32 it declares."""
    env = torchrl_dmc_env()
    check_env_specs(env)
    policy = tiny_state_policy(env.action_spec)
    collector = Collector(env, policy, frames_per_batch=4, total_frames=8)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2
    for data in batches:
        assert data["prev_action"].dtype == torch.float32
        torch.testing.assert_close(data["prev_action"][1:], data["action"][:-1])


def test_policy_without_the_carry_names_the_missing_keys_and_the_transform():
    env = torchrl_dmc_env(carry=False)
    policy = tiny_state_policy(env.action_spec)
    with pytest.raises(KeyError, match=r"'state', 'belief', 'prev_action'.*policy_carry_transform"):
        env.rollout(2, policy)


def test_policy_built_on_a_batched_spec_runs_at_any_batch_shape():
    """A ParallelEnv's action spec is [n_envs, A] (SerialEnv's is the same, without processes); the policy
    built on it must also act in a single env (an eval env, or one collector worker)."""
    from torchrl.envs import SerialEnv

    batched = SerialEnv(2, torchrl_dmc_env)
    assert batched.action_spec.shape == (2, 1)
    for spec in (batched.action_spec, batched.full_action_spec):
        policy = tiny_state_policy(spec)
        with set_exploration_type(ExplorationType.RANDOM):
            assert batched.rollout(3, policy)["action"].shape == (2, 3, 1)
            single = torchrl_dmc_env().rollout(3, policy)
        assert single["action"].shape == (3, 1) and (single["action"].abs() <= 1).all()
    batched.close()


@pytest.mark.parametrize("scale", ["uint8", "unit_float"])
def test_float_pixels_in_unit_range_act_as_their_uint8_frames(scale):
    """ToTensorImage's float [0, 1] frames reach the encoder centred exactly as the uint8 frames do."""
    torch.manual_seed(0)
    wm = make_world_model("pixels", (3, 64, 64), 1, TINY)
    policy = make_policy(wm, make_actor(FEAT, 1, TINY), Bounded(-1.0, 1.0, (1,)), exploration_noise=0.0)
    frame = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    td = TensorDict({"pixels": frame, "state": torch.zeros(2, TINY.world_model.latent.state_dim),
                     "belief": torch.zeros(2, TINY.world_model.rssm.belief_dim), "prev_action": torch.zeros(2, 1),
                     "is_init": torch.ones(2, 1, dtype=torch.bool)}, [2])
    given = td.clone().set("pixels", frame.float() / 255) if scale == "unit_float" else td.clone()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.manual_seed(1)
        expected = policy(td.clone())
        torch.manual_seed(1)
        got = policy(given)
    torch.testing.assert_close(got["belief"], expected["belief"], rtol=0, atol=0)
    torch.testing.assert_close(got["action"], expected["action"], rtol=0, atol=0)


def test_float_pixels_outside_the_unit_range_are_refused():
    torch.manual_seed(0)
    wm = make_world_model("pixels", (3, 64, 64), 1, TINY)
    policy = make_policy(wm, make_actor(FEAT, 1, TINY), Bounded(-1.0, 1.0, (1,)))
    td = TensorDict({"pixels": torch.rand(3, 64, 64) - 0.5, "state": torch.zeros(TINY.world_model.latent.state_dim),
                     "belief": torch.zeros(TINY.world_model.rssm.belief_dim), "prev_action": torch.zeros(1),
                     "is_init": torch.ones(1, dtype=torch.bool)}, [])
    with pytest.raises(ValueError, match=r"float 'pixels' must be in \[0, 1\]"):
        policy(td)


@pytest.mark.parametrize("preset", ["state", "dreamer_v3_proprio_current", "dreamer_v2"])
def test_the_carry_sized_from_the_built_world_model_runs_in_a_torchrl_collector(preset):
    """A user's TorchRL pipeline: the carry comes from the world model (carry_transform), whose widths a V3 named
    size sets (512 wide here, not the config's default 200), and a Collector steps the real env with the policy."""
    from dreamer_trl.behavior.policy import carry_transform
    from dreamer_trl.config import make_preset

    cfg = make_preset(preset, from_pixels=False)
    torch.manual_seed(0)
    env = make_dmc_env("cartpole", "swingup", from_pixels=False, episode_frames=40, seed=0)
    A = env.action_spec.shape[-1]
    wm = make_world_model("observation", tuple(env.observation_spec["observation"].shape), A, cfg)
    env.append_transform(carry_transform(wm, A))
    policy = make_policy(wm, make_actor(wm.rssm.feature_dim, A, cfg), env.action_spec, 0.3)
    check_env_specs(env)
    batch = next(iter(Collector(env, policy, frames_per_batch=8, total_frames=8)))
    assert batch["belief"].shape[-1] == wm.rssm.belief_dim and batch["state"].shape[-1] == wm.rssm.state_dim
    assert torch.isfinite(batch["action"]).all()
