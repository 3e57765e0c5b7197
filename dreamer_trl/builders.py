"""Builders shared by the recipes and benchmarks: the training env and the whole agent from sub-configs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict.nn import TensorDictModule
from torchrl.envs import EnvBase, RewardSum
from torchrl.modules import WorldModelWrapper

from dreamer_trl import keys
from dreamer_trl.config import EnvConfig, LossConfig, ModelConfig
from dreamer_trl.envs import make_dmc_env, split_task
from dreamer_trl.imagination import ImaginationEnv, make_imagination_env
from dreamer_trl.objectives import ActorLoss, ValueLoss, WorldModelLoss
from dreamer_trl.policy import make_actor, make_value, policy_carry_transform
from dreamer_trl.world_model import make_world_model


def make_env(env_cfg: EnvConfig, model_cfg: ModelConfig, seed: int, **env_kwargs) -> EnvBase:
    """The DMC task of ``env_cfg`` with the policy's recurrent carry and an episode-return counter."""
    domain, task = split_task(env_cfg.task)
    env = make_dmc_env(domain, task, from_pixels=env_cfg.from_pixels, image_size=env_cfg.image_size,
                       action_repeat=env_cfg.action_repeat, episode_frames=env_cfg.episode_frames, seed=seed,
                       **env_kwargs)
    env.append_transform(policy_carry_transform(model_cfg.state_dim, model_cfg.belief_dim,
                                                env.action_spec.shape[-1]))
    env.append_transform(RewardSum())
    return env


@dataclass
class Agent:
    """The networks and the three losses of one Dreamer agent."""

    world_model: WorldModelWrapper
    imagination_env: ImaginationEnv
    actor: TensorDictModule
    value: TensorDictModule
    model_loss: WorldModelLoss
    actor_loss: ActorLoss
    value_loss: ValueLoss


def make_agent(obs_key: str, obs_shape: tuple, action_dim: int, model_cfg: ModelConfig, loss_cfg: LossConfig,
               device="cpu") -> Agent:
    """World model, imagination env, actor, value and their losses, on ``device``.

    The actor loss shares its value predictions with the value loss (``ActorLoss(share_value=True)``):
    drive them with :class:`~dreamer_trl.training.DreamerUpdate`, or back-propagate the actor loss with
    ``retain_graph=True`` before the value loss.
    """
    device = torch.device(device)
    world_model = make_world_model(obs_key, obs_shape, action_dim, model_cfg).to(device)
    imagination_env = make_imagination_env(world_model, device=device)
    feature_dim = model_cfg.state_dim + model_cfg.belief_dim
    actor = make_actor(feature_dim, action_dim, model_cfg).to(device)
    value = make_value(feature_dim, model_cfg).to(device)
    model_loss = WorldModelLoss(world_model, kl_scale=loss_cfg.kl_scale, free_nats=loss_cfg.free_nats)
    if obs_key == keys.OBSERVATION:
        model_loss.set_keys(observation=keys.OBSERVATION, reco_observation=keys.RECO_OBSERVATION)
    actor_loss = ActorLoss(actor, value, imagination_env, horizon=loss_cfg.horizon, gamma=loss_cfg.gamma,
                           lmbda=loss_cfg.lmbda, share_value=True)
    return Agent(world_model, imagination_env, actor, value, model_loss, actor_loss,
                 ValueLoss(value, gamma=loss_cfg.gamma))
