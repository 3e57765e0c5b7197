"""The networks of every variant from one set of parts, each chosen by name from a small registry.

:func:`world_model_parts` names the parts a model config asks for (the one place where a variant becomes an
assignment of parts); :func:`make_world_model`, :func:`make_actor` and :func:`make_value` look the names up in
the registries below and assemble them, the same way for Dreamer V1 / PlaNet, DreamerV2 and DreamerV3.

==============  ======================  ==============================  =====================================
part            Dreamer V1 / PlaNet     DreamerV2                       DreamerV3 (2023 / current)
==============  ======================  ==============================  =====================================
style           ELU, Glorot (STYLE_V1)  ELU, fan-avg trunc. normal      LayerNorm (2023) / RMSNorm + SiLU
encoder         conv / mlp_elu          conv_stride / mlp               conv_stride | conv_maxpool / mlp_symlog
core            gru_cell                norm_gru_gates                  norm_gru / block_gru
latent          gaussian                categorical                     categorical
decoder         deconv / mlp_elu        deconv_normal / mlp_normal      deconv_mse | upsample_mse / mlp_symlog
reward, value   normal_elu              normal                          twohot
continue        none                    bernoulli (off on DMC)          bernoulli
actor           tanh_normal             trunc_normal                    bounded_normal
==============  ======================  ==============================  =====================================

Sources: Dreamer V1's official code (networks and initialisation, shared by PlaNet), danijar/dreamerv2 07d906e,
danijar/dreamerv3 84ecf19 (2023) and e3f0224 (current); see docs/sources.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from tensordict.nn import TensorDictModule
from torch import nn

from dreamer_trl import keys
from dreamer_trl.behavior.actors import ActorFromFeatures, BoundedNormalActor, TruncNormalActor
from dreamer_trl.config import ModelConfig
from dreamer_trl.config.sizes import v3_size
from dreamer_trl.model.cores import BlockGRU, GRUCellCore, NormGRU
from dreamer_trl.model.heads import BernoulliHead, MSEHead, NormalHead, SymlogMSEHead, TwoHotHead
from dreamer_trl.model.latent import CategoricalLatent, GaussianLatent
from dreamer_trl.model.layers import (
    MLPV3,
    STYLE_2023,
    STYLE_V1,
    ConvDecoderV3,
    ConvEncoderV3,
    NetStyle,
    TransposedConvDecoderV3,
    encoder_depths,
    vector_encoder,
)
from dreamer_trl.model.networks import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    ScalarHead,
    TanhNormalActor,
    keras_init_,
    mlp,
)
from dreamer_trl.model.rssm import RSSM
from dreamer_trl.model.symlog import TwoHotCodec
from dreamer_trl.model.world_model import DreamerWorldModel

REPRESENTATIONS = ("reconstruction", "contrastive", "reward")


@dataclass
class Widths:
    """The widths a network is built with (V3: from ``model.size`` or the explicit fields)."""

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
    """``cfg.size`` (a V3 named size) gives belief_dim, rssm_hidden, state_dim, classes, mlp_hidden and cnn_depth;
    the vector encoder and decoder take ``vector_layers`` / ``vector_units`` where set (the 2023 DMC MLPs)."""
    if cfg.size != "custom":
        s = v3_size(cfg.size)
        deter, hidden, groups, classes, units, depth = s.deter, s.hidden, s.stoch, s.classes, s.units, s.depth
    else:
        deter, hidden, groups, classes = cfg.belief_dim, cfg.rssm_hidden, cfg.state_dim, cfg.classes
        units, depth = cfg.mlp_hidden, cfg.cnn_depth
    return Widths(deter, hidden, groups, classes, units, depth, cfg.vector_layers or cfg.mlp_layers,
                  cfg.vector_units or units)


def net_style(cfg: ModelConfig) -> NetStyle:
    """The layer style of the variant's networks (:class:`~dreamer_trl.model.layers.NetStyle`)."""
    if cfg.agent == "dreamer":
        return STYLE_V1
    if cfg.agent == "dreamer_v2":  # ELU, Glorot-scaled initialisation (TF's default in dreamerv2)
        return NetStyle(norm=cfg.norm, act="elu", fan="avg")
    if cfg.nets == "2023":  # fan-avg init, no biases before norms, norm eps 1e-3 (84ecf19 nets.py)
        return dataclasses.replace(STYLE_2023, norm=cfg.norm)
    return NetStyle(norm=cfg.norm, act="silu")


def world_model_parts(cfg: ModelConfig, obs_key: str, representation: str = "reconstruction") -> dict[str, str | None]:
    """The names of the world model's parts for ``cfg`` (None: no such part), keys of the registries below."""
    pixels = obs_key == keys.PIXELS
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    if cfg.agent == "dreamer":
        parts = dict(encoder="conv" if pixels else "mlp_elu", core="gru_cell",
                     decoder="deconv" if pixels else "mlp_elu", reward="normal_elu")
    elif cfg.agent == "dreamer_v2":  # dreamerv2 ConvEncoder / ConvDecoder, EnsembleRSSM with GRUCell(norm=True)
        parts = dict(encoder="conv_stride" if pixels else "mlp", core="norm_gru_gates",
                     decoder="deconv_normal" if pixels else "mlp_normal", reward=_scalar(cfg))
    else:
        decoder = ("deconv_mse" if cfg.conv == "stride" else "upsample_mse") if pixels else "mlp_symlog"
        parts = dict(encoder=f"conv_{cfg.conv}" if pixels else "mlp_symlog",
                     core="norm_gru" if cfg.nets == "2023" else "block_gru", decoder=decoder, reward=_scalar(cfg))
    parts["latent"] = cfg.latent
    parts["continue"] = "bernoulli" if cfg.continue_head and cfg.agent != "dreamer" else None
    if representation != "reconstruction":
        parts["decoder"] = None
    parts["state_model"] = "mlp_elu" if representation == "contrastive" and cfg.agent == "dreamer" else \
        "mlp" if representation == "contrastive" else None
    return parts


def _scalar(cfg: ModelConfig) -> str:
    return "twohot" if cfg.twohot_bins else "normal"


@dataclass
class Build:
    """What a part's factory may read: the config, the observation and action sizes, widths and style."""

    cfg: ModelConfig
    obs_shape: tuple
    action_dim: int
    w: Widths
    style: NetStyle
    feat: int = 0
    """S + D, once the RSSM is built"""
    embed_dim: int = 0


def _conv_v3(b: Build, downsample: str):
    return ConvEncoderV3(encoder_depths(b.w.depth, downsample), kernel=4 if downsample == "stride" else 5,
                         downsample=downsample, style=b.style)


ENCODERS: dict[str, Callable[[Build], nn.Module]] = {
    "conv": lambda b: ConvEncoder(b.w.depth),
    "conv_stride": lambda b: _conv_v3(b, "stride"),
    "conv_maxpool": lambda b: _conv_v3(b, "maxpool"),
    "mlp_elu": lambda b: MLPEncoder(b.obs_shape[0], b.w.units, b.cfg.obs_layers, b.w.units),
    "mlp": lambda b: MLPV3(b.obs_shape[0], b.w.vector_units, b.w.vector_layers, style=b.style),
    "mlp_symlog": lambda b: vector_encoder(b.obs_shape[0], b.w.vector_units, b.w.vector_layers, b.style),
}
"""Observation -> embedding ``[*N, E]`` (``.out_dim`` = E)."""

CORES: dict[str, Callable[[Build, int], nn.Module]] = {
    "gru_cell": lambda b, s: GRUCellCore(b.w.deter, s, b.action_dim, b.w.hidden, b.style),
    "norm_gru": lambda b, s: NormGRU(b.w.deter, s, b.action_dim, b.w.hidden, style=b.style),
    "norm_gru_gates": lambda b, s: NormGRU(b.w.deter, s, b.action_dim, b.w.hidden, style=b.style, gate_norm="layer"),
    "block_gru": lambda b, s: BlockGRU(b.w.deter, s, b.action_dim, b.w.hidden, b.cfg.blocks, style=b.style),
}
"""The recurrent core f(h, s, a) (:mod:`dreamer_trl.model.cores`), given S."""

LATENTS: dict[str, Callable[[Build], object]] = {
    "gaussian": lambda b: GaussianLatent(b.w.groups, b.cfg.min_std),
    "categorical": lambda b: CategoricalLatent(b.w.groups, b.w.classes, b.cfg.unimix),
}

# (prior layers, posterior layers, RSSM width) per core: V1 / PlaNet, V2 and V3 2023 one each; V3 current 2 and 1.
RSSM_LAYERS = {"gru_cell": (1, 1), "norm_gru": (1, 1), "norm_gru_gates": (1, 1), "block_gru": (2, 1)}


def _upsample_mse(b: Build, rssm: RSSM):
    depths = encoder_depths(b.w.depth, "maxpool")
    return MSEHead(ConvDecoderV3(rssm.state_dim, b.w.deter, depths, b.w.units, blocks=b.cfg.blocks, style=b.style),
                   event_dims=3)


DECODERS: dict[str, Callable[[Build, RSSM], nn.Module]] = {
    "deconv": lambda b, r: NormalHead(ConvDecoder(b.feat, b.w.depth), event_dims=3),
    "deconv_normal": lambda b, r: NormalHead(TransposedConvDecoderV3(b.feat, b.w.depth, style=b.style), event_dims=3),
    "deconv_mse": lambda b, r: MSEHead(TransposedConvDecoderV3(b.feat, b.w.depth, style=b.style), event_dims=3),
    "upsample_mse": _upsample_mse,
    "mlp_elu": lambda b, r: NormalHead(MLPDecoder(b.feat, b.obs_shape[0], b.w.units, b.cfg.obs_layers)),
    "mlp_normal": lambda b, r: NormalHead(MLPV3(b.feat, b.w.vector_units, b.w.vector_layers, out_dim=b.obs_shape[0],
                                                style=b.style)),
    "mlp_symlog": lambda b, r: SymlogMSEHead(MLPV3(b.feat, b.w.vector_units, b.w.vector_layers,
                                                   out_dim=b.obs_shape[0], style=b.style)),
}
"""A head on the features predicting the observation (``pred`` / ``nll``)."""


def _twohot(b: Build, layers: int):
    net = MLPV3(b.feat, b.w.units, layers, out_dim=b.cfg.twohot_bins, style=b.style, outscale=0.0)
    return TwoHotHead(net, TwoHotCodec(b.cfg.twohot_bins, space=b.cfg.twohot_space))


SCALAR_HEADS: dict[str, Callable[[Build, int], nn.Module]] = {
    "normal_elu": lambda b, layers: NormalHead(ScalarHead(b.feat, b.w.units, layers)),
    "normal": lambda b, layers: NormalHead(MLPV3(b.feat, b.w.units, layers, out_dim=1, style=b.style)),
    "twohot": _twohot,
}
"""Scalar heads on the features (reward, value): N(raw, 1) or DreamerV3's two-hot over 255 bins."""

STATE_MODELS: dict[str, Callable[[Build, int], nn.Module]] = {
    "mlp_elu": lambda b, out: keras_init_(mlp(b.embed_dim, out, b.w.units, 1)),
    "mlp": lambda b, out: MLPV3(b.embed_dim, b.w.units, 1, out_dim=out, style=b.style),
}
"""The contrastive objective's q(s_t | o_t): one hidden layer on the embedding, to the latent's parameters."""


def latent_dims(cfg: ModelConfig) -> tuple[int, int]:
    """(S, D): the widths of s_t (a sample: groups x classes for categorical latents) and h_t of the world model
    :func:`make_world_model` builds from ``cfg`` (the same latent part, so the two never disagree); what the acting
    policy's carry needs (:func:`~dreamer_trl.behavior.policy.policy_carry_transform`). Given a built world model,
    :func:`~dreamer_trl.behavior.policy.carry_transform` reads them from it instead."""
    w = widths(cfg)
    return LATENTS[cfg.latent](Build(cfg, (), 0, w, net_style(cfg))).sample_dim, w.deter


def _check_obs(obs_key: str, obs_shape: tuple) -> None:
    if obs_key == keys.PIXELS:
        if tuple(obs_shape) != (3, 64, 64):
            raise ValueError(f"'pixels' must have shape (3, 64, 64) for the conv encoder, got {tuple(obs_shape)}")
    elif obs_key == keys.OBSERVATION:
        if len(obs_shape) != 1:
            raise ValueError(f"'observation' must be a flat vector [O], got shape {tuple(obs_shape)}")
    else:
        raise ValueError(f"obs_key must be 'pixels' or 'observation', got {obs_key!r}")


def make_world_model(obs_key: str, obs_shape: tuple[int, ...], action_dim: int, cfg: ModelConfig | None = None,
                     representation: str = "reconstruction") -> DreamerWorldModel:
    """Encoder, RSSM, decoder (or the contrastive state model), reward and continue heads as a
    :class:`~dreamer_trl.model.world_model.DreamerWorldModel`, the parts named by :func:`world_model_parts`.

    Args:
        obs_key: "pixels" (conv encoder/decoder, obs_shape ``(3, 64, 64)``) or "observation" (MLPs).
        obs_shape: shape of one observation.
        action_dim: A.
        cfg: the model config (Dreamer V1's paper defaults when None).
        representation: "reconstruction" (a decoder), "contrastive" (no decoder; a state model q(s_t | o_t),
            one hidden layer on the embedding) or "reward" (neither).
    """
    cfg = cfg or ModelConfig()
    _check_obs(obs_key, obs_shape)
    parts = world_model_parts(cfg, obs_key, representation)
    b = Build(cfg, tuple(obs_shape), action_dim, widths(cfg), net_style(cfg))
    encoder = ENCODERS[parts["encoder"]](b)
    latent = LATENTS[parts["latent"]](b)
    img_layers, obs_layers = RSSM_LAYERS[parts["core"]]
    rssm = RSSM(CORES[parts["core"]](b, latent.sample_dim), latent, encoder.out_dim, b.w.hidden, img_layers,
                obs_layers, style=b.style)
    b.feat, b.embed_dim = rssm.feature_dim, encoder.out_dim
    decoder = DECODERS[parts["decoder"]](b, rssm) if parts["decoder"] else None
    reward_layers = cfg.reward_layers if cfg.agent == "dreamer" else cfg.head_layers
    reward = SCALAR_HEADS[parts["reward"]](b, reward_layers)
    state_model = STATE_MODELS[parts["state_model"]](b, latent.param_dim) if parts["state_model"] else None
    world_model = DreamerWorldModel(encoder, rssm, decoder, reward, obs_key, state_model)
    world_model.continue_head = (BernoulliHead(MLPV3(b.feat, b.w.units, cfg.head_layers, out_dim=1, style=b.style))
                                 if parts["continue"] else None)
    return world_model


ACTORS = ("tanh_normal", "bounded_normal", "trunc_normal")


def actor_part(cfg: ModelConfig) -> str:
    """The actor's distribution: V1's tanh-Gaussian, V3's bounded normal or V2's truncated normal."""
    return "tanh_normal" if cfg.agent == "dreamer" else cfg.actor_dist


def make_actor(feature_dim: int, action_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """The actor on the features, "state", "belief" -> "action" (:mod:`dreamer_trl.behavior.actors`).

    tanh_normal: Dreamer V1's action model (4 x 400 ELU, mean scale ``actor_mean_scale`` 5, init std 5);
    bounded_normal / trunc_normal: V3's / V2's actor on a normalised MLP whose output layer is scaled by
    ``actor_outscale`` (V3 current 0.01; 2023 and V2 1.0).
    """
    cfg = cfg or ModelConfig()
    kind = actor_part(cfg)
    if kind == "tanh_normal":
        net = TanhNormalActor(feature_dim, action_dim, widths(cfg).units, cfg.actor_layers,
                              mean_scale=cfg.actor_mean_scale)
        actor = ActorFromFeatures(net)
    else:
        units = widths(cfg).units
        net = MLPV3(feature_dim, units, cfg.mlp_layers, out_dim=2 * action_dim, style=net_style(cfg),
                    outscale=cfg.actor_outscale)
        actor = (TruncNormalActor(net, cfg.actor_min_std) if kind == "trunc_normal"
                 else BoundedNormalActor(net, cfg.actor_min_std, cfg.actor_max_std))
    return TensorDictModule(actor, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.ACTION])


def make_value(feature_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """The value model (critic) on the features, writing "state_value" (the head's raw output): V1's 3 x 400 ELU
    mean of N(v, 1), V2's unit Gaussian or V3's two-hot head."""
    cfg = cfg or ModelConfig()
    b = Build(cfg, (), 0, widths(cfg), net_style(cfg), feat=feature_dim)
    kind = "normal_elu" if cfg.agent == "dreamer" else _scalar(cfg)
    layers = cfg.value_layers if cfg.agent == "dreamer" else cfg.mlp_layers
    return TensorDictModule(SCALAR_HEADS[kind](b, layers), in_keys=[keys.STATE, keys.BELIEF],
                            out_keys=[keys.STATE_VALUE])
