"""make_env and make_agent: the shared wiring of the recipes."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from torchrl.envs.utils import check_env_specs

from conftest import TINY
import dreamer_trl as dt
from dreamer_trl.config import EnvConfig, LossConfig


def test_make_env_carries_the_policy_state_and_counts_returns():
    env = dt.make_env(EnvConfig(task="cartpole_swingup", from_pixels=False, episode_frames=20), TINY, seed=0)
    check_env_specs(env)
    td = env.rollout(3)
    assert {"state", "belief", "prev_action", "is_init"} <= set(td.keys())
    assert ("next", "episode_reward") in td.keys(True)


def test_make_agent_wires_losses_to_the_same_networks():
    agent = dt.make_agent("observation", (5,), 1, TINY, LossConfig(horizon=4, free_nats=1.0))
    assert agent.model_loss.world_model is agent.world_model and agent.model_loss.free_nats == 1.0
    assert agent.actor_loss.actor is agent.actor and agent.actor_loss.horizon == 4
    assert agent.value_loss.value is agent.value
    assert agent.model_loss.tensor_keys.observation == "observation"
