"""make_env and make_agent: the shared wiring of the recipes."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
from conftest import make_batch, tiny
from torchrl.envs.utils import check_env_specs

import dreamer_trl as dt
from dreamer_trl.config import EnvConfig, OptimConfig


def test_make_env_carries_the_policy_state_and_counts_returns():
    cfg = tiny()
    cfg.env = EnvConfig(task="cartpole_swingup", from_pixels=False, episode_frames=20)
    env = dt.make_env(cfg, seed=0)
    check_env_specs(env)
    td = env.rollout(3)
    assert {"state", "belief", "prev_action", "is_init"} <= set(td.keys())
    assert ("next", "episode_reward") in td.keys(True)


def test_make_agent_wires_losses_to_the_same_networks():
    agent = dt.make_agent("observation", (5,), 1, tiny(**{"behavior.horizon": 4, "world_model.loss.free_nats": 1.0}))
    assert agent.model_loss.world_model is agent.world_model and agent.model_loss.free_nats == 1.0
    assert agent.actor_loss.actor is agent.actor and agent.actor_loss.horizon == 4
    assert agent.value_loss.value is agent.value
    assert agent.model_loss.tensor_keys.observation == "observation"


@pytest.mark.parametrize("representation, terms, decoder", [
    ("reconstruction", {"reco", "reward", "kl"}, True),
    ("contrastive", {"contrast", "reward", "kl"}, False),
    ("reward", {"reward", "kl"}, False),
])
def test_make_agent_selects_the_representation_objective(representation, terms, decoder):
    cfg = tiny(**{"behavior.horizon": 4, "world_model.loss.representation": representation,
                  "world_model.loss.obs_scale": 2.0, "world_model.loss.reward_scale": 0.5})
    agent = dt.make_agent("observation", (5,), 1, cfg)
    assert set(agent.model_loss.scales) == terms
    assert agent.model_loss.scales["reward"] == 0.5
    assert (agent.world_model.decoder is not None) == decoder
    assert (agent.world_model.state_model is not None) == (representation == "contrastive")
    update = dt.make_update(agent, OptimConfig())
    metrics = update.update(make_batch(A=1, obs_key="observation", obs_dim=5))
    assert {f"loss/model_{t}" for t in terms} <= set(metrics)


@pytest.mark.parametrize("estimate, kind, value_phase", [
    ("lambda", dt.LambdaReturn, True), ("nstep", dt.NStepReturn, True), ("reward", dt.RewardSum, False),
])
def test_make_agent_selects_the_value_estimate(estimate, kind, value_phase):
    cfg = tiny(**{"behavior.horizon": 4, "behavior.value_estimate": estimate, "behavior.value_steps": 2})
    agent = dt.make_agent("observation", (5,), 1, cfg)
    assert isinstance(agent.actor_loss.estimate, kind)
    assert (agent.value_loss is not None) == value_phase
    update = dt.make_update(agent, OptimConfig())
    assert list(update.optimizers) == ["model", "actor"] + (["value"] if value_phase else [])
    if estimate == "nstep":
        assert agent.actor_loss.estimate.k == 2
    metrics = update.update(make_batch(A=1, obs_key="observation", obs_dim=5))
    assert ("loss/value" in metrics) == value_phase


def test_make_agent_with_the_planner_trains_the_world_model_only():
    from torchrl.data import Bounded

    cfg = tiny(**{"behavior.kind": "planner", "behavior.planner.horizon": 3, "behavior.planner.candidates": 8,
                  "behavior.planner.top_k": 2, "behavior.planner.iterations": 2})
    spec = Bounded(-0.5, 0.5, (1,))
    agent = dt.make_agent("observation", (5,), 1, cfg, action_spec=spec)
    assert agent.actor is None and agent.value is None and agent.actor_loss is None and agent.value_loss is None
    planner = agent.behavior.module
    assert agent.behavior is agent.planner and planner.rssm is agent.world_model.rssm
    assert (planner.horizon, planner.candidates, planner.top_k, planner.iterations) == (3, 8, 2, 2)
    assert planner.action_high.tolist() == [0.5]
    update = dt.make_update(agent, OptimConfig(model_lr=1e-3))
    assert list(update.optimizers) == ["model"] and update.optimizers["model"].param_groups[0]["lr"] == 1e-3
    metrics = update.update(make_batch(A=1, obs_key="observation", obs_dim=5))
    assert "loss/model_reward" in metrics and "loss/actor" not in metrics
