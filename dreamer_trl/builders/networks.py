"""The networks of every variant from one set of parts, each chosen by name from a small registry.

The config names every part (``nets.style``, ``world_model.image_encoder``, ``world_model.rssm.core``,
``world_model.latent.kind``, ``world_model.reward_head``, ``behavior.actor.dist``, ``behavior.critic.head``, ...);
:func:`make_world_model`, :func:`make_actor` and :func:`make_value` look the names up in the registries below and
assemble them the same way for every variant. The presets are assignments of these names (``config/presets.py``):

==============  ======================  ==============================  =====================================
part            Dreamer V1 / PlaNet     DreamerV2                       DreamerV3 (2023 / current)
==============  ======================  ==============================  =====================================
nets.style      v1 (ELU, ReLU convs,    v2 (ELU, Glorot)                v3_2023 (LayerNorm) / v3 (RMSNorm, SiLU)
image_encoder   conv                    conv                            conv_stride / conv_maxpool
vector_encoder  mlp_out                 mlp                             mlp_symlog
rssm.core       gru_cell                norm_gru_gates                  norm_gru / block_gru
latent.kind     gaussian                categorical                     categorical
image_decoder   deconv                  deconv                          deconv_mse / upsample_mse
vector_decoder  mlp_normal              mlp_normal                      mlp_symlog
reward_head     normal                  normal                          twohot
continue_head   off                     off on DMC                      on
actor.dist      tanh_normal             trunc_normal                    bounded_normal
critic.head     normal                  normal                          twohot
==============  ======================  ==============================  =====================================

Sources: Dreamer V1's official code (networks and initialisation, shared by PlaNet), danijar/dreamerv2 07d906e,
danijar/dreamerv3 84ecf19 (2023) and e3f0224 (current); see docs/sources.md. Widths are the config's fields; a
named size (``nets.size``) writes its numbers into them (``config.sizes.apply_size``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from tensordict.nn import TensorDictModule
from torch import nn

from dreamer_trl import keys
from dreamer_trl.behavior.actors import BoundedNormalActor, OneHotActor, TanhNormalActor, TruncNormalActor
from dreamer_trl.config import DreamerConfig
from dreamer_trl.model.cores import BlockGRU, GRUCellCore, NormGRU
from dreamer_trl.model.heads import BernoulliHead, MSEHead, NormalHead, SymlogMSEHead, TwoHotHead
from dreamer_trl.model.latent import CategoricalLatent, GaussianLatent
from dreamer_trl.model.layers import (
    MLP,
    STYLE_2023,
    STYLE_V1,
    ConvEncoder,
    NetStyle,
    TransposedConvDecoder,
    UpsampleConvDecoder,
    encoder_depths,
    vector_encoder,
)
from dreamer_trl.model.rssm import RSSM
from dreamer_trl.model.symlog import TwoHotCodec
from dreamer_trl.model.world_model import DreamerWorldModel

REPRESENTATIONS = ("reconstruction", "contrastive", "reward")

STYLES: dict[str, Callable[[str], NetStyle]] = {
    "v1": lambda norm: STYLE_V1,
    "v2": lambda norm: NetStyle(norm=norm, act="elu", init="glorot_uniform"),  # dreamerv2: Keras layers' defaults
    "v3_2023": lambda norm: dataclasses.replace(STYLE_2023, norm=norm),  # fan-avg, no biases before norms, eps 1e-3
    "v3": lambda norm: NetStyle(norm=norm, act="silu"),
}
"""``nets.style`` -> the layer style (:class:`~dreamer_trl.model.layers.NetStyle`) given ``nets.norm``."""


def net_style(cfg: DreamerConfig) -> NetStyle:
    """The layer style of every network of ``cfg``."""
    return STYLES[cfg.nets.style](cfg.nets.norm)


def world_model_parts(cfg: DreamerConfig, obs_key: str) -> dict[str, str | None]:
    """The names of the world model's parts for ``cfg`` and the observation (None: no such part), keys of the
    registries below: the config's own names, for the observation kind and representation chosen."""
    wm = cfg.world_model
    pixels = obs_key == keys.PIXELS
    representation = wm.loss.representation
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    return dict(encoder=wm.image_encoder if pixels else wm.vector_encoder,
                decoder=(wm.image_decoder if pixels else wm.vector_decoder) if representation == "reconstruction"
                else None,
                core=wm.rssm.core, latent=wm.latent.kind, reward=wm.reward_head,
                continue_="bernoulli" if wm.continue_head else None,
                state_model="mlp" if representation == "contrastive" else None)


@dataclass
class Build:
    """What a part's factory may read: the config, the observation and action sizes and the style."""

    cfg: DreamerConfig
    obs_shape: tuple
    action_dim: int
    style: NetStyle
    feat: int = 0
    """S + D, once the RSSM is built"""
    embed_dim: int = 0

    @property
    def wm(self):
        return self.cfg.world_model


def _conv(b: Build, downsample: str, flatten: str = "hwc"):
    return ConvEncoder(encoder_depths(b.wm.cnn_depth, downsample), kernel=5 if downsample == "maxpool" else 4,
                       downsample=downsample, style=b.style, flatten=flatten, in_channels=b.obs_shape[0])


ENCODERS: dict[str, Callable[[Build], nn.Module]] = {
    "conv": lambda b: _conv(b, "valid", flatten="chw"),
    "conv_stride": lambda b: _conv(b, "stride"),
    "conv_maxpool": lambda b: _conv(b, "maxpool"),
    "mlp": lambda b: MLP(b.obs_shape[0], b.wm.vector_units, b.wm.vector_layers, style=b.style),
    "mlp_out": lambda b: MLP(b.obs_shape[0], b.wm.vector_units, b.wm.vector_layers + 1, style=b.style),
    "mlp_symlog": lambda b: vector_encoder(b.obs_shape[0], b.wm.vector_units, b.wm.vector_layers, b.style),
}
"""Observation -> embedding ``[*N, E]`` (``.out_dim`` = E)."""

CORES: dict[str, Callable[[Build, int], nn.Module]] = {
    "gru_cell": lambda b, s: GRUCellCore(b.wm.rssm.belief_dim, s, b.action_dim, b.wm.rssm.hidden, b.style),
    "norm_gru": lambda b, s: NormGRU(b.wm.rssm.belief_dim, s, b.action_dim, b.wm.rssm.hidden, style=b.style),
    "norm_gru_gates": lambda b, s: NormGRU(b.wm.rssm.belief_dim, s, b.action_dim, b.wm.rssm.hidden, style=b.style,
                                           gate_norm="layer"),
    "block_gru": lambda b, s: BlockGRU(b.wm.rssm.belief_dim, s, b.action_dim, b.wm.rssm.hidden, b.wm.rssm.blocks,
                                       style=b.style),
}
"""The recurrent core f(h, s, a) (:mod:`dreamer_trl.model.cores`), given S."""

LATENTS: dict[str, Callable[[Build], object]] = {
    "gaussian": lambda b: GaussianLatent(b.wm.latent.state_dim, b.wm.latent.min_std),
    "categorical": lambda b: CategoricalLatent(b.wm.latent.state_dim, b.wm.latent.classes, b.wm.latent.unimix),
}

# (prior layers, posterior layers, RSSM width) per core: V1 / PlaNet, V2 and V3 2023 one each; V3 current 2 and 1.
RSSM_LAYERS = {"gru_cell": (1, 1), "norm_gru": (1, 1), "norm_gru_gates": (1, 1), "block_gru": (2, 1)}


def _upsample_mse(b: Build, rssm: RSSM):
    depths = encoder_depths(b.wm.cnn_depth, "maxpool")
    return MSEHead(UpsampleConvDecoder(rssm.state_dim, b.wm.rssm.belief_dim, depths, b.wm.units, blocks=b.wm.rssm.blocks,
                                       style=b.style, out_channels=b.obs_shape[0]), event_dims=3)


DECODERS: dict[str, Callable[[Build, RSSM], nn.Module]] = {
    "deconv": lambda b, r: NormalHead(TransposedConvDecoder(b.feat, b.wm.cnn_depth, style=b.style, kernels=(5, 5, 6, 6),
                                                            padding="valid", out_channels=b.obs_shape[0]), event_dims=3),
    "deconv_normal": lambda b, r: NormalHead(TransposedConvDecoder(b.feat, b.wm.cnn_depth, style=b.style,
                                                                   out_channels=b.obs_shape[0]), event_dims=3),
    "deconv_mse": lambda b, r: MSEHead(TransposedConvDecoder(b.feat, b.wm.cnn_depth, style=b.style,
                                                             out_channels=b.obs_shape[0]), event_dims=3),
    "upsample_mse": _upsample_mse,
    "mlp_normal": lambda b, r: NormalHead(MLP(b.feat, b.wm.vector_units, b.wm.vector_layers, out_dim=b.obs_shape[0],
                                              style=b.style)),
    "mlp_symlog": lambda b, r: SymlogMSEHead(MLP(b.feat, b.wm.vector_units, b.wm.vector_layers,
                                                   out_dim=b.obs_shape[0], style=b.style)),
}
"""A head on the features predicting the observation (``pred`` / ``nll``)."""


def _twohot(b: Build, units: int, layers: int):
    bins = b.cfg.nets.twohot_bins
    net = MLP(b.feat, units, layers, out_dim=bins, style=b.style, outscale=0.0)
    return TwoHotHead(net, TwoHotCodec(bins, space=b.cfg.nets.twohot_space))


SCALAR_HEADS: dict[str, Callable[[Build, int, int], nn.Module]] = {
    "normal": lambda b, units, layers: NormalHead(MLP(b.feat, units, layers, out_dim=1, style=b.style)),
    "twohot": _twohot,
}
"""Scalar heads on the features (reward, value), given width and layers: N(raw, 1) or DreamerV3's two-hot."""

STATE_MODELS: dict[str, Callable[[Build, int], nn.Module]] = {
    "mlp": lambda b, out: MLP(b.embed_dim, b.wm.units, 1, out_dim=out, style=b.style),
}
"""The contrastive objective's q(s_t | o_t): one hidden layer on the embedding, to the latent's parameters."""


def latent_dims(cfg: DreamerConfig) -> tuple[int, int]:
    """(S, D): the widths of s_t (a sample: groups x classes for categorical latents) and h_t of the world model
    :func:`make_world_model` builds from ``cfg`` (the same latent part, so the two never disagree); what the acting
    policy's carry needs (:func:`~dreamer_trl.behavior.policy.policy_carry_transform`). Given a built world model,
    :func:`~dreamer_trl.behavior.policy.carry_transform` reads them from it instead."""
    latent = LATENTS[cfg.world_model.latent.kind](Build(cfg, (), 0, net_style(cfg)))
    return latent.sample_dim, cfg.world_model.rssm.belief_dim


def _check_obs(obs_key: str, obs_shape: tuple) -> None:
    if obs_key == keys.PIXELS:
        if tuple(obs_shape) != (3, 64, 64):
            raise ValueError(f"'pixels' must have shape (3, 64, 64) for the conv encoder, got {tuple(obs_shape)}")
    elif obs_key == keys.OBSERVATION:
        if len(obs_shape) != 1:
            raise ValueError(f"'observation' must be a flat vector [O], got shape {tuple(obs_shape)}")
    else:
        raise ValueError(f"obs_key must be 'pixels' or 'observation', got {obs_key!r}")


def make_world_model(obs_key: str, obs_shape: tuple[int, ...], action_dim: int,
                     cfg: DreamerConfig | None = None) -> DreamerWorldModel:
    """Encoder, RSSM, decoder (or the contrastive state model), reward and continue heads as a
    :class:`~dreamer_trl.model.world_model.DreamerWorldModel`, the parts named by :func:`world_model_parts`.

    Args:
        obs_key: "pixels" (conv encoder/decoder, obs_shape ``(3, 64, 64)``) or "observation" (MLPs).
        obs_shape: shape of one observation.
        action_dim: A.
        cfg: the config (Dreamer V1's paper defaults when None); its ``world_model.loss.representation`` picks
            "reconstruction" (a decoder), "contrastive" (no decoder; a state model q(s_t | o_t), one hidden
            layer on the embedding) or "reward" (neither).
    """
    cfg = cfg or DreamerConfig()
    _check_obs(obs_key, obs_shape)
    parts = world_model_parts(cfg, obs_key)
    b = Build(cfg, tuple(obs_shape), action_dim, net_style(cfg))
    wm = cfg.world_model
    encoder = ENCODERS[parts["encoder"]](b)
    latent = LATENTS[parts["latent"]](b)
    img_layers, obs_layers = RSSM_LAYERS[parts["core"]]
    rssm = RSSM(CORES[parts["core"]](b, latent.sample_dim), latent, encoder.out_dim, wm.rssm.hidden, img_layers,
                obs_layers, style=b.style, initial=wm.rssm.initial)
    b.feat, b.embed_dim = rssm.feature_dim, encoder.out_dim
    decoder = DECODERS[parts["decoder"]](b, rssm) if parts["decoder"] else None
    reward = SCALAR_HEADS[parts["reward"]](b, wm.units, wm.head_layers)
    state_model = STATE_MODELS[parts["state_model"]](b, latent.param_dim) if parts["state_model"] else None
    world_model = DreamerWorldModel(encoder, rssm, decoder, reward, obs_key, state_model)
    world_model.continue_head = (BernoulliHead(MLP(b.feat, wm.units, wm.head_layers, out_dim=1, style=b.style))
                                 if parts["continue_"] else None)
    return world_model


ACTORS = ("tanh_normal", "bounded_normal", "trunc_normal")


DISCRETE_UNIMIX = 0.01
"""The discrete actor's uniform mix (DreamerV3's categorical policy: 1% of a uniform over the actions)."""


def make_actor(feature_dim: int, action_dim: int, cfg: DreamerConfig | None = None,
               discrete: bool = False) -> TensorDictModule:
    """The actor on the features, "state", "belief" -> "action" (:mod:`dreamer_trl.behavior.actors`), its
    distribution ``behavior.actor.dist`` for continuous actions.

    tanh_normal: Dreamer V1's action model (4 x 400 ELU, mean scale ``mean_scale`` 5, init std 5);
    bounded_normal / trunc_normal: V3's / V2's actor on a normalised MLP whose output layer is scaled by
    ``outscale`` (V3 current 0.01; 2023 and V2 1.0). ``discrete``: one-hot actions over ``action_dim`` choices
    from the same MLP's ``action_dim`` logits, a categorical with :data:`DISCRETE_UNIMIX` (official V3
    ``policy_dist_disc``; :class:`~dreamer_trl.behavior.actors.OneHotActor`).
    """
    cfg = cfg or DreamerConfig()
    a = cfg.behavior.actor
    out = action_dim if discrete else 2 * action_dim
    net = MLP(feature_dim, a.units, a.layers, out_dim=out, style=net_style(cfg), outscale=a.outscale)
    if discrete:
        actor = OneHotActor(net, DISCRETE_UNIMIX)
    elif a.dist == "tanh_normal":
        actor = TanhNormalActor(net, mean_scale=a.mean_scale)
    elif a.dist == "trunc_normal":
        actor = TruncNormalActor(net, a.min_std)
    else:
        actor = BoundedNormalActor(net, a.min_std, a.max_std)
    return TensorDictModule(actor, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.ACTION])


def make_value(feature_dim: int, cfg: DreamerConfig | None = None) -> TensorDictModule:
    """The value model (critic) on the features, writing "state_value" (the head's raw output): ``behavior.critic.head``
    normal (V1's 3 x 400 ELU mean of N(v, 1), V2's unit Gaussian) or twohot (V3)."""
    cfg = cfg or DreamerConfig()
    c = cfg.behavior.critic
    b = Build(cfg, (), 0, net_style(cfg), feat=feature_dim)
    return TensorDictModule(SCALAR_HEADS[c.head](b, c.units, c.layers), in_keys=[keys.STATE, keys.BELIEF],
                            out_keys=[keys.STATE_VALUE])
