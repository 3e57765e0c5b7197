"""The whole agent from a config: world model, imagination env, behaviour, losses, exploration, update.

One builder for every variant: the networks come from :mod:`dreamer_trl.builders.networks` (parts by name),
the world-model loss from the configured representation objective (:mod:`dreamer_trl.objectives.representation`)
and KL terms (:mod:`dreamer_trl.objectives.kl`), the behaviour from ``behavior.kind`` (the actor and critic, or
PlaNet's planner), and the update from ``optim.kind`` (one Adam per objective, or one LaProp over everything).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from tensordict.nn import TensorDictModule
from torchrl.envs import EnvBase, RewardSum

from dreamer_trl.behavior.imagination import ImaginationEnv, make_imagination_env
from dreamer_trl.behavior.planner import make_planner
from dreamer_trl.behavior.policy import is_discrete, make_policy, policy_carry_transform
from dreamer_trl.builders.behavior import make_behavior_losses
from dreamer_trl.builders.networks import latent_dims, make_actor, make_value, make_world_model
from dreamer_trl.config import DreamerConfig, OptimConfig, check_actions
from dreamer_trl.data.suites import make_suite_env
from dreamer_trl.data.vector_env import batched_env, env_seeds
from dreamer_trl.model.world_model import DreamerWorldModel
from dreamer_trl.objectives import (
    ActorLoss,
    BalancedKL,
    CriticLoss,
    DynRepKL,
    SlowTarget,
    WorldModelLoss,
    make_representation,
)
from dreamer_trl.training.optim import LaProp, adam
from dreamer_trl.training.update import ChainedLoss, DreamerUpdate, Phase, trainable

SINGLE_PHASE = "agent"
"""The name of the one phase of ``optim.kind`` laprop."""


def make_env(cfg: DreamerConfig, seed: int, **env_kwargs) -> EnvBase:
    """The task of ``cfg.env`` from its suite (:func:`~dreamer_trl.data.suites.make_suite_env`) with the policy's
    recurrent carry (sized as ``cfg``'s world model: :func:`~dreamer_trl.builders.networks.latent_dims`) and an
    episode-return counter."""
    env = make_suite_env(cfg.env, seed, **env_kwargs)
    env.append_transform(policy_carry_transform(*latent_dims(cfg), env.action_spec.shape[-1]))
    env.append_transform(RewardSum())
    return env


def make_envs(cfg: DreamerConfig, seed: int, num_envs: int = 1, parallel: bool = True, **env_kwargs) -> EnvBase:
    """``num_envs`` envs of :func:`make_env` as one batched env (batch ``[num_envs]``; worker processes when
    ``parallel``), seeded ``seed + 1000 * i``; the plain env for one."""
    if num_envs < 1:
        raise ValueError(f"config field 'env.num_envs': expected >= 1, got {num_envs}")
    makers = [functools.partial(make_env, cfg, s, **env_kwargs) for s in env_seeds(seed, num_envs)]
    return batched_env(makers, parallel)


@dataclass
class Agent:
    """The networks and the losses of one Dreamer agent (``value_loss`` None with V_R: no value training).

    ``hooks`` run around each update's optimizer steps and are checkpointed with it (V3's slow critic and
    return statistics).

    A planning agent (PlaNet) has a ``planner`` and no actor, value or their losses (all None).

    The agent carries its own exploration (``behavior.exploration``): :meth:`policy` acts with it.
    """

    world_model: DreamerWorldModel
    imagination_env: ImaginationEnv
    actor: TensorDictModule | None
    value: TensorDictModule | None
    model_loss: WorldModelLoss
    actor_loss: ActorLoss | None
    value_loss: CriticLoss | None
    hooks: list = field(default_factory=list)
    planner: TensorDictModule | None = None
    exploration_noise: float = 0.3
    """std of the Gaussian noise added to actions while training (V1, PlaNet: 0.3; V2, V3: 0)"""
    act_with_mode: bool = False
    """act with the actor's mode plus noise instead of a sample plus noise (never for a planner)"""

    def policy(self, action_spec) -> TensorDictModule:
        """The acting policy (filter, then actor or planner, with this agent's exploration), clipped to
        ``action_spec`` (:func:`~dreamer_trl.behavior.policy.make_policy`)."""
        return make_policy(self.world_model, self.behavior, action_spec, self.exploration_noise,
                           act_with_mode=self.act_with_mode and self.planner is None)

    @property
    def behavior(self) -> TensorDictModule:
        """What acts after the filter: the planner if there is one, else the actor."""
        return self.planner if self.planner is not None else self.actor

    def after_update(self) -> None:
        """Once after each update's optimizer steps, in a loop of one's own (a TorchRL loop): V2/V3's slow critic
        moves toward the critic (EMA or copy). The return statistics need no call: they move in the actor loss's
        forward while training. :class:`~dreamer_trl.training.update.DreamerUpdate` does this itself."""
        for hook in self.hooks:
            getattr(hook, "after_update", lambda: None)()


def make_model_loss(world_model: DreamerWorldModel, cfg: DreamerConfig, keep_graph: bool = False) -> WorldModelLoss:
    """The world-model loss: the representation objective's terms, reward, the KL terms and (with a continue
    head) the continue term, each with its configured scale.

    ``keep_graph``: hand on the posterior states with their graph (one phase whose later terms, DreamerV3's
    replay critic loss, train the world model too).
    """
    l = cfg.world_model.loss
    representation = make_representation(l.representation)
    kl_scales = {"dyn": l.dyn_scale, "rep": l.rep_scale} if l.kl == "dyn_rep" else {"kl": l.kl_scale}
    scales = {**{t: l.obs_scale for t in representation.terms}, "reward": l.reward_scale, **kl_scales}
    has_continue = world_model.continue_head is not None
    if has_continue:
        scales["continue"] = l.continue_scale
    kl_terms = {"free_nats": lambda: None, "balance": lambda: BalancedKL(l.kl_balance, l.free_nats),
                "dyn_rep": lambda: DynRepKL(l.free_nats)}[l.kl]()
    contdisc = cfg.world_model.continue_discount and has_continue
    return WorldModelLoss(world_model, representation=representation, scales=scales, free_nats=l.free_nats,
                          kl_terms=kl_terms, continue_discount=cfg.behavior.gamma if contdisc else 1.0,
                          keep_graph=keep_graph, window_start=l.window_start)


def make_agent(obs_key: str, obs_shape: tuple, action_dim: int, cfg: DreamerConfig | None = None, device="cpu",
               action_spec=None) -> Agent:
    """World model, imagination env, actor, value and their losses, on ``device``, as ``cfg`` names them
    (Dreamer V1's paper defaults when None).

    With ``behavior.kind == "planner"``: the world model, its loss and PlaNet's CEM planner
    (:func:`~dreamer_trl.behavior.planner.make_planner`, candidates clipped to ``action_spec``), no actor or value.

    ``world_model.loss.representation`` picks the world model's objective, ``behavior.losses`` and
    ``behavior.value_estimate`` the actor's and critic's. Drive the losses with :func:`make_update`, or call
    ``backward()`` on each loss as in a TorchRL loop, then :meth:`Agent.after_update` once after the optimizers
    step (V2/V3's slow critic). The agent does not depend on ``cfg.optim`` (:func:`make_update` decides the phases).
    """
    cfg = cfg or DreamerConfig()
    b = cfg.behavior
    discrete = is_discrete(action_spec)
    check_actions(cfg, "discrete" if discrete else "continuous")
    device = torch.device(device)
    world_model = make_world_model(obs_key, obs_shape, action_dim, cfg).to(device)
    imagination_env = make_imagination_env(world_model, device=device)
    planning = b.kind == "planner"
    # DreamerV3's replay critic term: the posteriors keep their (retained) graph for it, which one LaProp phase
    # over everything trains the world model with and a per-module update ignores (the agent never depends on
    # the update).
    keep_graph = (not planning and b.critic.replay_scale > 0 and b.losses == "v2_v3" and b.value_estimate != "reward")
    model_loss = make_model_loss(world_model, cfg, keep_graph=keep_graph)
    exploration = dict(exploration_noise=b.exploration.noise, act_with_mode=b.exploration.act_with_mode)
    if planning:
        p = b.planner
        planner = make_planner(world_model, action_spec, horizon=p.horizon, candidates=p.candidates, top_k=p.top_k,
                               iterations=p.iterations, warm_start=p.warm_start)
        return Agent(world_model, imagination_env, None, None, model_loss, None, None, planner=planner.to(device),
                     **exploration)
    feature_dim = world_model.rssm.feature_dim
    actor = make_actor(feature_dim, action_dim, cfg, discrete=discrete).to(device)
    value = make_value(feature_dim, cfg).to(device)
    contdisc = cfg.world_model.continue_discount and world_model.continue_head is not None
    losses = make_behavior_losses(actor, value, imagination_env, b, continue_head=world_model.continue_head,
                                  continue_has_discount=contdisc, device=device)
    return Agent(world_model, imagination_env, actor, value, model_loss, losses.actor_loss, losses.value_loss,
                 hooks=losses.hooks, **exploration)


def make_update(agent: Agent, optim_cfg: OptimConfig, max_nonfinite: int = 10, autocast=None) -> DreamerUpdate:
    """The agent's update, as phases of (loss, parameters, optimizer, clip):

    - ``optim.kind`` adam: "model", "actor" and (unless V_R) "value", each with its own Adam (V2: decoupled
      weight decay; the world model may have its own epsilon and clip, V3 2023); a planning agent has the
      "model" phase alone.
    - ``optim.kind`` laprop: one phase over everything on the sum of all terms, LaProp with adaptive gradient
      clipping (V3 current).
    """
    o = optim_cfg
    if o.kind != "laprop" and o.step_model_first and agent.model_loss.keep_graph:
        raise ValueError("behavior.critic.replay_scale > 0 trains the world model through the replay critic term "
                         "(V3 current, one LaProp phase), but optim.step_model_first steps the world model before "
                         "the critic's loss exists: set behavior.critic.replay_scale 0, optim.step_model_first "
                         "false, or optim.kind laprop")
    critic_phase = SINGLE_PHASE if o.kind == "laprop" else "value"
    for hook in agent.hooks:  # the slow critic follows the phase that trains the critic
        if isinstance(hook, SlowTarget):
            hook.phase = critic_phase
    if o.kind == "laprop":
        losses = [loss for loss in (agent.model_loss, agent.actor_loss, agent.value_loss) if loss is not None]
        loss = ChainedLoss(*losses) if len(losses) > 1 else losses[0]
        trained = [(agent.world_model, agent.model_loss), (agent.actor, agent.actor_loss), (agent.value, agent.value_loss)]
        params = [p for m, loss in trained if loss is not None for p in trainable(m)]  # V_R: no critic to train
        optimizer = LaProp(params, lr=o.lr, eps=o.laprop_eps, warmup=o.warmup, agc=o.agc)
        phases = [Phase(SINGLE_PHASE, loss, params, optimizer, clip=float("inf"))]
    else:
        phases = []
        model_eps, model_clip = o.model_adam_eps or o.adam_eps, o.model_grad_clip or o.grad_clip
        for name, loss, module, lr, eps, clip in (
                ("model", agent.model_loss, agent.world_model, o.model_lr, model_eps, model_clip),
                ("actor", agent.actor_loss, agent.actor, o.actor_lr, o.adam_eps, o.grad_clip),
                ("value", agent.value_loss, agent.value, o.value_lr, o.adam_eps, o.grad_clip)):
            if loss is not None:
                params = trainable(module)
                phases.append(Phase(name, loss, params, adam(params, lr, eps, o.weight_decay), clip))
    return DreamerUpdate(phases=phases, hooks=agent.hooks, max_nonfinite=max_nonfinite, autocast=autocast,
                         step_model_first=o.step_model_first)
