"""Builders shared by the recipes and benchmarks: the training env and the whole agent from sub-configs.

This is where the variants are chosen by name: the representation objective
(:mod:`dreamer_trl.objectives.representation`), the value estimate
(:mod:`dreamer_trl.objectives.value_estimates`) and the behaviour (the actor, or PlaNet's planner:
:func:`make_agent`'s ``behavior``); everything else is built the same way for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict.nn import TensorDictModule
from torchrl.envs import EnvBase, RewardSum

from dreamer_trl.behavior.actors import make_actor, make_value
from dreamer_trl.behavior.imagination import ImaginationEnv, make_imagination_env
from dreamer_trl.behavior.planner import make_planner
from dreamer_trl.behavior.policy import policy_carry_transform
from dreamer_trl.builders.behavior import make_behavior_losses
from dreamer_trl.config import (
    BehaviorConfig,
    EnvConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
)
from dreamer_trl.data.dmc import make_dmc_env, split_task
from dreamer_trl.model.world_model import DreamerWorldModel, make_world_model
from dreamer_trl.objectives import (
    ActorLoss,
    CriticLoss,
    WorldModelLoss,
    make_representation,
)
from dreamer_trl.training.update import DreamerUpdate, adam_phase


def make_env(env_cfg: EnvConfig, model_cfg: ModelConfig, seed: int, **env_kwargs) -> EnvBase:
    """The DMC task of ``env_cfg`` with the policy's recurrent carry and an episode-return counter."""
    domain, task = split_task(env_cfg.task)
    env = make_dmc_env(domain, task, from_pixels=env_cfg.from_pixels, image_size=env_cfg.image_size,
                       action_repeat=env_cfg.action_repeat, episode_frames=env_cfg.episode_frames, seed=seed,
                       **env_kwargs)
    env.append_transform(policy_carry_transform(*latent_dims(model_cfg), env.action_spec.shape[-1]))
    env.append_transform(RewardSum())
    return env


def latent_dims(model_cfg: ModelConfig) -> tuple[int, int]:
    """(S, D): the widths of s_t (a sample; groups x classes for categorical latents) and h_t."""
    if model_cfg.agent == "dreamer":
        return model_cfg.state_dim, model_cfg.belief_dim
    from dreamer_trl.builders.family import widths

    w = widths(model_cfg)
    return (w.groups * w.classes if model_cfg.latent == "categorical" else w.groups), w.deter


@dataclass
class Agent:
    """The networks and the losses of one Dreamer agent (``value_loss`` None with V_R: no value training).

    ``hooks`` run around each update's optimizer steps and are checkpointed with it (V3's slow critic and
    return statistics); ``kind`` is ``model.agent``, which picks the update's shape in :func:`make_update`.

    A planning agent (PlaNet) has a ``planner`` and no actor, value or their losses (all None).
    """

    world_model: DreamerWorldModel
    imagination_env: ImaginationEnv
    actor: TensorDictModule | None
    value: TensorDictModule | None
    model_loss: WorldModelLoss
    actor_loss: ActorLoss | None
    value_loss: CriticLoss | None
    hooks: list = field(default_factory=list)
    kind: str = "dreamer"
    planner: TensorDictModule | None = None

    def after_update(self) -> None:
        """Once after each update's optimizer steps, in a loop of one's own (a TorchRL loop): V2/V3's slow critic
        moves toward the critic (EMA or copy). The return statistics need no call: they move in the actor loss's
        forward while training. :class:`~dreamer_trl.training.update.DreamerUpdate` does this itself."""
        for hook in self.hooks:
            getattr(hook, "after_update", lambda: None)()

    @property
    def behavior(self) -> TensorDictModule:
        """What acts after the filter: the planner if there is one, else the actor."""
        return self.planner if self.planner is not None else self.actor


def make_model_loss(world_model: DreamerWorldModel, loss_cfg: LossConfig) -> WorldModelLoss:
    """The world-model loss with ``loss_cfg``'s representation objective, scales and free nats."""
    representation = make_representation(loss_cfg.representation)
    scales = {**{t: loss_cfg.obs_scale for t in representation.terms}, "reward": loss_cfg.reward_scale,
              "kl": loss_cfg.kl_scale}
    return WorldModelLoss(world_model, representation=representation, scales=scales, free_nats=loss_cfg.free_nats)


def make_agent(obs_key: str, obs_shape: tuple, action_dim: int, model_cfg: ModelConfig, loss_cfg: LossConfig,
               device="cpu", behavior: BehaviorConfig | None = None, action_spec=None,
               optim_cfg: OptimConfig | None = None) -> Agent:
    """World model, imagination env, actor, value and their losses, on ``device``.

    With ``behavior.kind == "planner"``: the world model, its loss and PlaNet's CEM planner
    (:func:`~dreamer_trl.behavior.planner.make_planner`, candidates clipped to ``action_spec``), no actor or value.

    ``loss_cfg.representation`` picks the world model's objective and ``loss_cfg.value_estimate`` the
    actor's target. The actor loss shares its value predictions with the value loss
    (``ActorLoss(share_value=True)``): drive them with :class:`~dreamer_trl.training.update.DreamerUpdate`, or call
    ``backward()`` on each loss as in a TorchRL loop (each reaches only its own module's parameters).

    ``model_cfg.agent`` "dreamer_v2" / "dreamer_v3" builds that agent instead (:mod:`dreamer_trl.builders.family`);
    ``optim_cfg`` is accepted for callers and changes nothing in the agent (:func:`make_update` decides the phases).

    In a TorchRL loop (a ``backward()`` per loss, one optimizer per module), call :meth:`Agent.after_update`
    once after the optimizers step: it runs the hooks (V2/V3's slow critic) that :class:`DreamerUpdate` runs.
    """
    if model_cfg.agent != "dreamer":
        from dreamer_trl.builders.family import make_family_agent

        agent = make_family_agent(obs_key, obs_shape, action_dim, model_cfg, loss_cfg, False, device)
        agent.kind = model_cfg.agent
        return agent
    device = torch.device(device)
    world_model = make_world_model(obs_key, obs_shape, action_dim, model_cfg, loss_cfg.representation).to(device)
    imagination_env = make_imagination_env(world_model, device=device)
    if behavior is not None and behavior.kind == "planner":
        planner = make_planner(world_model, action_spec, horizon=behavior.plan_horizon, candidates=behavior.candidates,
                               top_k=behavior.top_k, iterations=behavior.iterations, warm_start=behavior.warm_start)
        return Agent(world_model, imagination_env, None, None, make_model_loss(world_model, loss_cfg), None, None,
                     planner=planner.to(device))
    feature_dim = model_cfg.state_dim + model_cfg.belief_dim
    actor = make_actor(feature_dim, action_dim, model_cfg).to(device)
    value = make_value(feature_dim, model_cfg).to(device)
    model_loss = make_model_loss(world_model, loss_cfg)
    behavior_losses = make_behavior_losses("dreamer", actor, value, imagination_env, loss_cfg)
    actor_loss, value_loss = behavior_losses.actor_loss, behavior_losses.value_loss
    return Agent(world_model, imagination_env, actor, value, model_loss, actor_loss, value_loss)


def make_update(agent: Agent, optim_cfg: OptimConfig, max_nonfinite: int = 10, autocast=None) -> DreamerUpdate:
    """The agent's update: world model, actor and (unless V_R) value phases with their Adams (V2/V3: see
    :func:`dreamer_trl.builders.family.make_family_update`)."""
    """The agent's update: world model, actor and (unless V_R) value phases with their Adams; a planning
    agent's update is the world-model phase alone; V2/V3: :func:`dreamer_trl.builders.family.make_family_update`."""
    if agent.kind != "dreamer":
        from dreamer_trl.builders.family import make_family_update

        return make_family_update(agent, optim_cfg, max_nonfinite, autocast)
    if agent.actor_loss is None:
        phases = [adam_phase("model", agent.model_loss, agent.world_model, optim_cfg.model_lr, optim_cfg)]
        return DreamerUpdate(cfg=optim_cfg, max_nonfinite=max_nonfinite, autocast=autocast, phases=phases)
    return DreamerUpdate(agent.model_loss, agent.actor_loss, agent.value_loss, optim_cfg, max_nonfinite,
                         autocast=autocast)
