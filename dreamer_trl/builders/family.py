"""DreamerV2 and DreamerV3 built from the family's parts: one builder, the variant's choices from the config.

The same world model, losses and update as Dreamer V1 (:mod:`dreamer_trl.builders.agent`), with other parts:

- latent: categorical one-hot groups with straight-through gradients and unimix
  (:class:`~dreamer_trl.model.latent.CategoricalLatent`);
- RSSM: :class:`~dreamer_trl.model.cores.RSSMV3` with the block GRU (V3 current) or one dense GRU (blocks 1);
- networks: normalised SiLU MLPs and convs (:mod:`dreamer_trl.model.layers`), V3's named sizes
  (:mod:`dreamer_trl.config.sizes`);
- heads: symlog MSE (vectors) or MSE (images) decoder, symexp two-hot reward and critic (V3) or unit
  Gaussians (V2), Bernoulli continue head (:mod:`dreamer_trl.model.heads`);
- world-model loss: V2's balanced KL or V3's dyn/rep terms (:mod:`dreamer_trl.objectives.kl`);
- actor: V3's bounded normal or V2's truncated normal (:mod:`dreamer_trl.behavior.actors`);
- behaviour: the family's :class:`~dreamer_trl.objectives.actor_loss.ActorLoss` and
  :class:`~dreamer_trl.objectives.critic_loss.CriticLoss` with V2/V3's options, return normalisation and a slow
  critic (:func:`dreamer_trl.builders.behavior.make_behavior_losses`);
- update: one LaProp with adaptive gradient clipping over everything (V3 current) or one Adam per
  objective (V2, V3 2023) (:mod:`dreamer_trl.training.optim`).

Sources: danijar/dreamerv3 configs.yaml (e3f0224 current, 84ecf19 2023) and danijar/dreamerv2 configs.yaml;
numbers in shared/reference/DREAMER_V2_V3.md.
"""
from __future__ import annotations

import dataclasses

import torch
from tensordict.nn import TensorDictModule

from dreamer_trl import keys
from dreamer_trl.behavior.actors import BoundedNormalActor, TruncNormalActor
from dreamer_trl.behavior.imagination import make_imagination_env
from dreamer_trl.builders.behavior import make_behavior_losses
from dreamer_trl.config import LossConfig, ModelConfig, OptimConfig
from dreamer_trl.config.sizes import v3_size
from dreamer_trl.model.cores import RSSMV3, BlockGRU, NormGRU
from dreamer_trl.model.heads import (
    BernoulliHead,
    MSEHead,
    NormalHead,
    SymlogMSEHead,
    TwoHotHead,
)
from dreamer_trl.model.latent import CategoricalLatent, GaussianLatent
from dreamer_trl.model.layers import (
    MLPV3,
    STYLE_2023,
    ConvDecoderV3,
    ConvEncoderV3,
    NetStyle,
    TransposedConvDecoderV3,
    encoder_depths,
    vector_encoder,
)
from dreamer_trl.model.symlog import TwoHotCodec
from dreamer_trl.model.world_model import DreamerWorldModel
from dreamer_trl.objectives.kl import BalancedKL, DynRepKL, FreeNatsKL
from dreamer_trl.objectives.representation import Reconstruction
from dreamer_trl.objectives.return_norm import SlowTarget
from dreamer_trl.objectives.world_model_loss import WorldModelLoss
from dreamer_trl.training.optim import LaProp, v2_adam
from dreamer_trl.training.update import ChainedLoss, DreamerUpdate, Phase, trainable

SINGLE_PHASE = "agent"


@dataclasses.dataclass
class Widths:
    """The widths a V2/V3 agent is built with (from ``model.size`` or the explicit fields)."""

    deter: int
    hidden: int
    groups: int
    classes: int
    units: int
    depth: int
    vector_layers: int
    """layers of the vector encoder and decoder"""
    vector_units: int
    """width of the vector encoder and decoder"""


def widths(cfg: ModelConfig) -> Widths:
    """``cfg.size`` (a V3 named size) overrides belief_dim, rssm_hidden, classes, mlp_hidden and cnn_depth;
    the vector encoder and decoder take ``vector_layers`` / ``vector_units`` where set (the 2023 DMC MLPs)."""
    if cfg.size != "custom":
        s = v3_size(cfg.size)
        deter, hidden, groups, classes, units, depth = s.deter, s.hidden, s.stoch, s.classes, s.units, s.depth
    else:
        deter, hidden, groups, classes = cfg.belief_dim, cfg.rssm_hidden, cfg.state_dim, cfg.classes
        units, depth = cfg.mlp_hidden, cfg.cnn_depth
    return Widths(deter, hidden, groups, classes, units, depth, cfg.vector_layers or cfg.mlp_layers,
                  cfg.vector_units or units)


def _style(cfg: ModelConfig) -> NetStyle:
    if cfg.agent == "dreamer_v2":  # ELU, Glorot-scaled initialisation (TF's default in dreamerv2)
        return NetStyle(norm=cfg.norm, act="elu", fan="avg")
    if cfg.nets == "2023":  # fan-avg init, no biases before norms, norm eps 1e-3 (84ecf19 nets.py)
        return dataclasses.replace(STYLE_2023, norm=cfg.norm)
    return NetStyle(norm=cfg.norm, act="silu")


def _scalar_head(in_dim: int, w: Widths, layers: int, cfg: ModelConfig, style: NetStyle):
    """Two-hot (V3: 255 symexp bins, zero-initialised output) or unit-Gaussian (V2) scalar head."""
    if cfg.twohot_bins:
        net = MLPV3(in_dim, w.units, layers, out_dim=cfg.twohot_bins, style=style, outscale=0.0)
        return TwoHotHead(net, TwoHotCodec(cfg.twohot_bins, space=cfg.twohot_space))
    return NormalHead(MLPV3(in_dim, w.units, layers, out_dim=1, style=style))


def make_family_world_model(obs_key: str, obs_shape: tuple, action_dim: int, cfg: ModelConfig) -> DreamerWorldModel:
    """Encoder, V3 RSSM, decoder, reward and continue heads as a :class:`DreamerWorldModel`."""
    w, style = widths(cfg), _style(cfg)
    if cfg.latent == "categorical":
        latent = CategoricalLatent(w.groups, w.classes, cfg.unimix)
    else:
        latent = GaussianLatent(w.groups, cfg.min_std)
    v2 = cfg.agent == "dreamer_v2"
    if obs_key == keys.PIXELS:  # 4x4 stride-2 convs, 2^i depth (dreamerv2 ConvEncoder, V3 2023); current V3: max-pool
        downsample = "stride" if v2 else cfg.conv
        depths = encoder_depths(w.depth, downsample)
        encoder = ConvEncoderV3(depths, kernel=4 if downsample == "stride" else 5, downsample=downsample, style=style)
    elif v2:
        encoder = MLPV3(obs_shape[0], w.vector_units, w.vector_layers, style=style)  # V2 takes vectors as they are
    else:
        encoder = vector_encoder(obs_shape[0], w.vector_units, w.vector_layers, style)
    if v2:  # dreamerv2 EnsembleRSSM: one input layer, GRUCell(norm=True), one prior layer
        core = NormGRU(w.deter, latent.sample_dim, action_dim, w.hidden, style=style, gate_norm="layer")
        rssm = RSSMV3(core, latent, encoder.out_dim, w.hidden, img_layers=1, obs_layers=1, style=style)
    elif cfg.nets == "2023":  # 84ecf19 RSSM: img_in, GRU with normed gates, one prior and one posterior layer
        core = NormGRU(w.deter, latent.sample_dim, action_dim, w.hidden, style=style)
        rssm = RSSMV3(core, latent, encoder.out_dim, w.hidden, img_layers=1, obs_layers=1, style=style)
    else:
        core = BlockGRU(w.deter, latent.sample_dim, action_dim, w.hidden, cfg.blocks, style=style)
        rssm = RSSMV3(core, latent, encoder.out_dim, w.hidden, style=style)
    feat = rssm.feature_dim
    if obs_key == keys.PIXELS and v2:  # transposed convs, linear output, N(mean, 1) (dreamerv2 ConvDecoder)
        decoder = NormalHead(TransposedConvDecoderV3(feat, w.depth, style=style), event_dims=3)
    elif obs_key == keys.PIXELS and cfg.conv == "stride":  # the 2023 decoder: transposed convs, squared error
        decoder = MSEHead(TransposedConvDecoderV3(feat, w.depth, style=style), event_dims=3)
    elif obs_key == keys.PIXELS:
        decoder = MSEHead(ConvDecoderV3(rssm.state_dim, w.deter, depths, w.units, blocks=cfg.blocks, style=style),
                          event_dims=3)
    elif v2:
        decoder = NormalHead(MLPV3(feat, w.vector_units, w.vector_layers, out_dim=obs_shape[0], style=style))
    else:
        decoder = SymlogMSEHead(MLPV3(feat, w.vector_units, w.vector_layers, out_dim=obs_shape[0], style=style))
    reward = _scalar_head(feat, w, cfg.head_layers, cfg, style)
    world_model = DreamerWorldModel(encoder, rssm, decoder, reward, obs_key)
    world_model.continue_head = (BernoulliHead(MLPV3(feat, w.units, cfg.head_layers, out_dim=1, style=style))
                                 if cfg.continue_head else None)
    return world_model


def make_family_actor(feature_dim: int, action_dim: int, cfg: ModelConfig) -> TensorDictModule:
    """The actor on the features (output layer scaled by ``actor_outscale``: current 0.01, 2023 1.0): V3's bounded
    normal, or V2's truncated normal on [-1, 1] (``actor_dist``)."""
    w, style = widths(cfg), _style(cfg)
    net = MLPV3(feature_dim, w.units, cfg.mlp_layers, out_dim=2 * action_dim, style=style, outscale=cfg.actor_outscale)
    if cfg.actor_dist == "trunc_normal":
        actor = TruncNormalActor(net, cfg.actor_min_std)
    else:
        actor = BoundedNormalActor(net, cfg.actor_min_std, cfg.actor_max_std)
    return TensorDictModule(actor, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.ACTION])


def make_family_value(feature_dim: int, cfg: ModelConfig) -> TensorDictModule:
    """The critic: two-hot (V3) or unit-Gaussian (V2) head writing "state_value" (its raw output)."""
    head = _scalar_head(feature_dim, widths(cfg), cfg.mlp_layers, cfg, _style(cfg))
    return TensorDictModule(head, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.STATE_VALUE])


def make_family_agent(obs_key: str, obs_shape: tuple, action_dim: int, model_cfg: ModelConfig, loss_cfg: LossConfig,
                      single_phase: bool, device="cpu"):
    """The V2/V3 agent (a :class:`~dreamer_trl.builders.agent.Agent` with its hooks), on ``device``.

    The agent does not depend on the update: with a replay critic term (``loss.replay_value_scale`` > 0) the
    world-model loss always hands on the posterior states with their (retained) graph, which the one-phase
    LaProp update (V3 current) trains the world model with, and a per-module update ignores. ``single_phase``
    is kept for callers and has no effect.
    """
    from dreamer_trl.builders.agent import Agent

    device = torch.device(device)
    world_model = make_family_world_model(obs_key, obs_shape, action_dim, model_cfg).to(device)
    imagination_env = make_imagination_env(world_model, device=device)
    feat = world_model.rssm.feature_dim
    actor = make_family_actor(feat, action_dim, model_cfg).to(device)
    value = make_family_value(feat, model_cfg).to(device)
    l = loss_cfg
    kl_terms = {"dyn_rep": lambda: DynRepKL(l.free_nats), "balance": lambda: BalancedKL(l.kl_balance, l.free_nats),
                "free_nats": lambda: FreeNatsKL(l.free_nats)}[l.kl]()
    kl_scales = {"dyn": l.dyn_scale, "rep": l.rep_scale} if l.kl == "dyn_rep" else {"kl": l.kl_scale}
    scales = {"reco": l.obs_scale, "reward": l.reward_scale, **kl_scales}
    if world_model.continue_head is not None:
        scales["continue"] = l.continue_scale
    contdisc = l.continue_discount and world_model.continue_head is not None
    model_loss = WorldModelLoss(world_model, representation=Reconstruction(), scales=scales, kl_terms=kl_terms,
                                continue_discount=l.gamma if contdisc else 1.0,
                                keep_graph=l.replay_value_scale > 0 and l.value_estimate != "reward")
    behavior_losses = make_behavior_losses(model_cfg.agent, actor, value, imagination_env, l,
                                           continue_head=world_model.continue_head, continue_has_discount=contdisc,
                                           device=device)
    actor_loss, value_loss, hooks = behavior_losses.actor_loss, behavior_losses.value_loss, behavior_losses.hooks
    return Agent(world_model, imagination_env, actor, value, model_loss, actor_loss, value_loss, hooks=hooks)


def make_family_update(agent, optim_cfg: OptimConfig, max_nonfinite: int = 10, autocast=None) -> DreamerUpdate:
    """LaProp over everything in one phase (``optim.kind`` laprop), or one Adam per objective (adam); without a
    critic loss (V_R) there is no critic phase or parameters. The slow critic follows the phase that trains the
    critic."""
    o = optim_cfg
    if o.kind != "laprop" and o.step_model_first and agent.model_loss.keep_graph:
        raise ValueError("loss.replay_value_scale > 0 trains the world model through the replay critic term "
                         "(V3 current, one LaProp phase), but optim.step_model_first steps the world model before "
                         "the critic's loss exists: set loss.replay_value_scale 0, optim.step_model_first false, "
                         "or optim.kind laprop")
    losses = [(name, loss, module) for name, loss, module in (
        ("model", agent.model_loss, agent.world_model), ("actor", agent.actor_loss, agent.actor),
        ("value", agent.value_loss, agent.value)) if loss is not None]
    for hook in agent.hooks:
        if isinstance(hook, SlowTarget):
            hook.phase = SINGLE_PHASE if o.kind == "laprop" else "value"
    if o.kind == "laprop":
        loss = ChainedLoss(*(loss for _, loss, _ in losses))
        params = [p for _, _, module in losses for p in trainable(module)]
        optimizer = LaProp(params, lr=o.lr, eps=o.laprop_eps, warmup=o.warmup, agc=o.agc)
        phases = [Phase(SINGLE_PHASE, loss, params, optimizer, clip=float("inf"))]
    else:
        phases = []
        model_eps, model_clip = o.model_adam_eps or o.adam_eps, o.model_grad_clip or o.grad_clip
        settings = {"model": (o.model_lr, model_eps, model_clip), "actor": (o.actor_lr, o.adam_eps, o.grad_clip),
                    "value": (o.value_lr, o.adam_eps, o.grad_clip)}
        for name, loss, module in losses:
            lr, eps, clip = settings[name]
            params = trainable(module)
            phases.append(Phase(name, loss, params, v2_adam(params, lr, eps, o.weight_decay), clip))
    return DreamerUpdate(phases=phases, hooks=agent.hooks, max_nonfinite=max_nonfinite, autocast=autocast,
                         step_model_first=o.step_model_first)
