"""The networks of the whole family: MLPs, block-diagonal linear layers, conv encoders and image decoders.

Every layer is Linear (or conv) -> Norm -> activation, and a :class:`NetStyle` says which norm, which
activation and which initialisation: Dreamer V1 / PlaNet (Hafner et al. 2020; official Dreamer code, TF2
Keras layers) and DreamerV2 have no norm, ELU and Glorot-uniform kernels (V1's convs ReLU); DreamerV3
(Hafner et al. 2023, arXiv:2301.04104, Sec. 3 and Appendix; Nature 2025) uses Norm -> SiLU. Two versions
of the official V3 code (danijar/dreamerv3) differ in the details, each choice one field of the style:

=====================  =====================================  ====================================
                       current code (``embodied/jax/nets.py``)  2023 code (commit 84ecf19, ``nets.py``)
=====================  =====================================  ====================================
norm                   RMSNorm, eps 1e-4, scale only          LayerNorm, eps 1e-3, scale and shift
bias before a norm     yes (``Linear(bias=True)``)            no (``bias and norm == 'none'``)
weight init            truncated normal, fan_in               truncated normal, (fan_in + fan_out) / 2
                                                              (output layers: uniform, same variance)
=====================  =====================================  ====================================

Initialisation (both versions): a standard normal truncated to [-2, 2], times
``1.1368 * sqrt(1 / fan)`` (1.1368 = 1 / 0.8796, the std of that truncated normal, so the weights have
variance 1 / fan); biases zero, norm scales one. ``outscale`` multiplies an output layer's weights
(current code: 0 for the reward and value heads, 0.01 for the policy; 0 gives zero weights).

Images: the encoder takes uint8 pixels to ``x / 255 - 0.5`` (both versions); the decoders predict in
that same space, which is this project's reconstruction target (:func:`~dreamer_trl.model.pixels.preprocess_pixels`).
The official current decoder ends in a sigmoid and is compared with ``x / 255``: here ``sigmoid - 0.5``;
the 2023 decoder adds 0.5 to a linear output: here the linear output itself. Same losses, same gradients.

Shapes: pixels ``[*N, 3, 64, 64]``; vectors ``[*N, O]``; features ``[*N, S + D]``; outputs ``[*N, .]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.pixels import preprocess_pixels
from dreamer_trl.model.symlog import symlog

TRUNC_NORMAL_STD_CORRECTION = 1.1368  # 1 / std of N(0, 1) truncated to [-2, 2] (official ``Initializer``)


@dataclass(frozen=True)
class NetStyle:
    """How layers are built: norm, activation, biases before norms, initialisation and its fan, norm epsilon."""

    norm: Literal["rms", "layer", "none"] = "rms"
    """normalisation after each hidden linear/conv layer (current code: rms; 2023: layer)"""
    act: Literal["silu", "elu", "gelu", "relu"] = "silu"
    """activation after each norm"""
    bias: bool = True
    """hidden layers followed by a norm have a bias (current code: yes; 2023: no)"""
    fan: Literal["in", "avg"] = "in"
    """fan of the truncated-normal init: fan_in (current) or (fan_in + fan_out) / 2 (2023)"""
    eps: float = 1e-4
    """norm epsilon (current code 1e-4; 2023 LayerNorm 1e-3)"""
    init: Literal["trunc_normal", "glorot_uniform"] = "trunc_normal"
    """weight initialisation: V3's truncated normal (scaled by ``fan``) or Keras's Glorot-uniform default (V1)"""
    conv_act: Literal["silu", "elu", "gelu", "relu"] | None = None
    """activation after each conv layer; None: ``act`` (V1's convs use ReLU beside its ELU MLPs)"""


OFFICIAL_STYLE = NetStyle()
"""danijar/dreamerv3 at e3f0224 (configs.yaml: norm rms, act silu, winit trunc_normal_in)."""
STYLE_2023 = NetStyle(norm="layer", bias=False, fan="avg", eps=1e-3)
"""danijar/dreamerv3 at 84ecf19 (configs.yaml: norm layer, act silu, winit normal, fan avg)."""
STYLE_V1 = NetStyle(norm="none", act="elu", init="glorot_uniform", conv_act="relu")
"""Dreamer V1 / PlaNet (official Dreamer code, TF2 Keras layers): no norm, ELU MLPs and ReLU convs, Glorot-uniform
kernels, zero biases."""

_ACTS = {"silu": nn.SiLU, "elu": nn.ELU, "gelu": nn.GELU, "relu": nn.ReLU}


def fans(weight: torch.Tensor, kind: str = "linear") -> tuple[int, int]:
    """(fan_in, fan_out) of a PyTorch weight, as the official code counts them for the same layer.

    ``kind``: "linear" ``(out, in)``; "conv" ``(out, in, k, k)``; "conv_transpose" ``(in, out, k, k)`` (fans swapped, as the 2023 code's ``HWOI`` kernel gives; it
    only used them averaged);
    "block" ``(G, in / G, out / G)``, whose fans are the full widths (in, out), as the official
    ``Initializer.compute_fans`` gives for the ``(G, in / G, out / G)`` kernel.
    """
    if kind == "linear":
        return weight.shape[1], weight.shape[0]
    if kind == "conv":
        space = weight.shape[2] * weight.shape[3]
        return weight.shape[1] * space, weight.shape[0] * space
    if kind == "conv_transpose":  # official 2023 kernel (k, k, out, in): fan_in counts the output channels
        space = weight.shape[2] * weight.shape[3]
        return weight.shape[1] * space, weight.shape[0] * space
    if kind == "block":
        g = weight.shape[0]
        return weight.shape[1] * g, weight.shape[2] * g
    raise ValueError(f"unknown weight kind {kind!r}")


@torch.no_grad()
def trunc_normal_init_(weight: torch.Tensor, fan_in: int, fan_out: int, fan: str = "in",
                       outscale: float = 1.0) -> torch.Tensor:
    """In place: N(0, 1) truncated to [-2, 2], times ``1.1368 * sqrt(1 / fan) * outscale``.

    Official ``Initializer('trunc_normal', fan)`` (current code; ``Linear._scaled_winit`` multiplies by
    ``outscale``). The 2023 code put its scale inside the square root, but only ever used 0 or 1 there.
    """
    if outscale == 0.0:
        return weight.zero_()
    n = {"in": fan_in, "avg": (fan_in + fan_out) / 2, "out": fan_out}[fan]
    nn.init.trunc_normal_(weight, 0.0, 1.0, -2.0, 2.0)
    return weight.mul_(TRUNC_NORMAL_STD_CORRECTION * math.sqrt(1.0 / n) * outscale)


@torch.no_grad()
def init_weight_(weight: torch.Tensor, kind: str, style: NetStyle, outscale: float = 1.0) -> torch.Tensor:
    """In place, the style's initialisation of a weight of layout ``kind`` (see :func:`fans`), times ``outscale``.

    trunc_normal: :func:`trunc_normal_init_` with the style's fan. glorot_uniform: U(-b, b) with
    b = sqrt(6 / (fan_in + fan_out)) (Keras's default kernel initialiser; for dense layers PyTorch's
    ``xavier_uniform_``, for convs and blocks the fans of :func:`fans`, which are Keras's receptive-field fans).
    """
    if style.init == "glorot_uniform":
        if kind == "linear":
            nn.init.xavier_uniform_(weight)
        else:
            fan_in, fan_out = fans(weight, kind)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(weight, -bound, bound)
        return weight if outscale == 1.0 else weight.mul_(outscale)
    return trunc_normal_init_(weight, *fans(weight, kind), style.fan, outscale)


def _init_layer_(layer: nn.Module, kind: str, style: NetStyle, outscale: float = 1.0) -> nn.Module:
    init_weight_(layer.weight, kind, style, outscale)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def linear(in_dim: int, out_dim: int, style: NetStyle = OFFICIAL_STYLE, bias: bool = True,
           outscale: float = 1.0) -> nn.Linear:
    """An ``nn.Linear`` with the official initialisation."""
    return _init_layer_(nn.Linear(in_dim, out_dim, bias=bias), "linear", style, outscale)


class Float32RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` computed in float32 and returned in the input's dtype (official ``Norm``; under bf16
    autocast the fused kernel would otherwise see a bf16 input with a float32 scale)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def make_norm(dim: int, style: NetStyle = OFFICIAL_STYLE) -> nn.Module:
    """RMSNorm (learned scale, no shift), LayerNorm (scale and shift) or identity over the last dim.

    Official ``Norm``: rms ``x * rsqrt(mean(x^2) + eps) * scale``; layer ``(x - mean) * rsqrt(var + eps)
    * scale + shift``; both computed in float32.
    """
    if style.norm == "rms":
        return Float32RMSNorm(dim, eps=style.eps)
    if style.norm == "layer":
        return nn.LayerNorm(dim, eps=style.eps)
    if style.norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be rms, layer or none, got {style.norm!r}")


def activation(style: NetStyle = OFFICIAL_STYLE) -> nn.Module:
    return _ACTS[style.act]()


def conv_activation(style: NetStyle = OFFICIAL_STYLE) -> nn.Module:
    """The activation after a conv layer: ``style.conv_act``, else ``style.act``."""
    return _ACTS[style.conv_act or style.act]()


def dense(in_dim: int, out_dim: int, style: NetStyle = OFFICIAL_STYLE) -> nn.Sequential:
    """Linear -> Norm -> activation, the hidden layer of every network (official V3 ``MLP`` layer; V1 and V2:
    no norm, a Keras ``Dense`` with its activation)."""
    if style.norm == "none":  # no identity module in between: V1's small MLPs are bound by per-module overhead
        return nn.Sequential(linear(in_dim, out_dim, style), activation(style))
    return nn.Sequential(linear(in_dim, out_dim, style, style.bias), make_norm(out_dim, style), activation(style))


class BlockLinear(nn.Module):
    """Block-diagonal linear layer: G independent ``in / G -> out / G`` maps (official ``BlockLinear``).

    ``y[..., g, :] = x[..., g, :] @ W[g] (+ b)`` with x and y viewed as G contiguous groups of their
    last dim. Weights ``[G, in / G, out / G]``, truncated-normal with the full widths as fans.
    """

    def __init__(self, in_dim: int, out_dim: int, blocks: int, style: NetStyle = OFFICIAL_STYLE,
                 bias: bool = True, outscale: float = 1.0):
        super().__init__()
        if in_dim % blocks or out_dim % blocks:
            raise ValueError(f"in_dim {in_dim} and out_dim {out_dim} must be divisible by blocks {blocks}")
        self.in_dim, self.out_dim, self.blocks = in_dim, out_dim, blocks
        self.weight = nn.Parameter(torch.empty(blocks, in_dim // blocks, out_dim // blocks))
        self.bias = nn.Parameter(torch.empty(out_dim)) if bias else None
        _init_layer_(self, "block", style, outscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.blocks, self.in_dim // self.blocks).transpose(0, 1)   # (G, N, in/G)
        y = torch.bmm(x, self.weight).transpose(0, 1).reshape(*lead, self.out_dim)  # (*N, out)
        return y if self.bias is None else y + self.bias.to(y.dtype)  # stays in bf16 under autocast


class MLP(nn.Module):
    """``layers`` x :func:`dense` (Linear -> Norm -> activation) of width ``units``, then an optional linear output.

    Official V3 ``MLP`` plus the output layer of ``Head`` (``outscale``: 0 for reward and value, 0.01 for
    the policy, 1 otherwise); V1's ``tools.mlp`` heads and actor (style :data:`STYLE_V1`), V2's ``MLP`` (no norm,
    ELU). ``symlog_inputs`` applies :func:`symlog` first (the V3 vector encoder).

    Shapes: ``[*N, in_dim]`` -> ``[*N, out_dim]`` (``out_dim`` None: ``[*N, units]``).
    """

    def __init__(self, in_dim: int, units: int, layers: int, out_dim: int | None = None,
                 style: NetStyle = OFFICIAL_STYLE, outscale: float = 1.0, symlog_inputs: bool = False):
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers):
            mods.append(dense(d, units, style))
            d = units
        if out_dim is not None:
            mods.append(linear(d, out_dim, style, outscale=outscale))
            d = out_dim
        self.net = nn.Sequential(*mods)
        self.symlog_inputs, self.out_dim = symlog_inputs, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(symlog(x) if self.symlog_inputs else x)

    def forward_latent(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        """``forward(concat(state, belief))`` without forming the concat: the first layer's weight meets s_t and
        h_t by its column blocks (the heads' input is large in imagination, N x H rows)."""
        first = self.net[0]
        layer = first[0] if isinstance(first, nn.Sequential) else first
        if self.symlog_inputs or not isinstance(layer, nn.Linear):
            return self(torch.cat([state, belief], -1))
        w_s, w_h = layer.weight.split([state.shape[-1], belief.shape[-1]], 1)
        y = torch.addmm(layer.bias, state.reshape(-1, state.shape[-1]), w_s.t()) if layer.bias is not None else \
            state.reshape(-1, state.shape[-1]) @ w_s.t()
        y = torch.addmm(y, belief.reshape(-1, belief.shape[-1]), w_h.t()).reshape(*state.shape[:-1], -1)
        rest = first[1:] if isinstance(first, nn.Sequential) else nn.Identity()
        return self.net[1:](rest(y))


def vector_encoder(obs_dim: int, units: int, layers: int = 3, style: NetStyle = OFFICIAL_STYLE) -> MLP:
    """The V3 vector encoder: symlog inputs, then ``layers`` normalised SiLU layers (official ``Encoder``)."""
    return MLP(obs_dim, units, layers, style=style, symlog_inputs=True)


class ChannelNorm(nn.Module):
    """:func:`make_norm` over the channel dim of ``[N, C, H, W]`` (official ``Norm`` on the last axis of NHWC)."""

    def __init__(self, channels: int, style: NetStyle = OFFICIAL_STYLE):
        super().__init__()
        self.norm = make_norm(channels, style)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # views when x is channels-last


def _conv_block(conv: nn.Module, kind: str, channels: int, style: NetStyle, pool: bool = False) -> list[nn.Module]:
    _init_layer_(conv, kind, style)
    return [conv, *([nn.MaxPool2d(2)] if pool else []), ChannelNorm(channels, style), conv_activation(style)]


DOWNSAMPLES = ("valid", "stride", "maxpool")


class ConvEncoder(nn.Module):
    """Conv stages that halve the resolution, each followed by Norm and the conv activation; output flattened.

    ``downsample="valid"`` (Dreamer V1, DreamerV2: Keras ``Conv2D(depth, 4, 2)``, no padding): 4x4 convs with
    stride 2, 64 -> 31 -> 14 -> 6 -> 2, depths ``depth * (1, 2, 4, 8)``; V1's ReLU (32 -> 1024 features),
    V2's ELU (48 -> 1536). ``downsample="stride"`` (V3 2023, ``resize: stride``): 4x4 convs with stride 2
    and "same" padding, 64 -> 4. ``downsample="maxpool"`` (V3 current, ``strided: False``): a ``kernel`` x
    ``kernel`` conv with stride 1 and "same" padding, then 2x2 max-pooling; depths ``depth * (2, 3, 4, 4)``.
    :func:`encoder_depths` gives each one's depths.

    Shapes: ``[*N, 3, 64, 64]`` (uint8 or preprocessed) -> ``[*N, depths[-1] * R * R]`` (R the last
    resolution), flattened in ``flatten`` order: "hwc", the official codes' TensorFlow / JAX layout, or "chw",
    PyTorch's (this project's V1 encoder since its first version: a fixed permutation of the same features,
    kept so that its checkpoints load as they are).
    """

    def __init__(self, depths: tuple[int, ...], kernel: int = 5, downsample: str = "maxpool",
                 style: NetStyle = OFFICIAL_STYLE, in_channels: int = 3, image_size: int = 64,
                 flatten: Literal["hwc", "chw"] = "hwc"):
        super().__init__()
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLES)}, got {downsample!r}")
        if flatten not in ("hwc", "chw"):
            raise ValueError(f"flatten must be hwc or chw, got {flatten!r}")
        self.flatten = flatten
        bias = style.bias or style.norm == "none"
        mods: list[nn.Module] = []
        c, res = in_channels, image_size
        for d in depths:
            if downsample == "maxpool":
                conv = nn.Conv2d(c, d, kernel, 1, padding=kernel // 2, bias=bias)
                res //= 2
            elif downsample == "stride":
                conv = nn.Conv2d(c, d, 4, 2, padding=1, bias=bias)
                res //= 2
            else:
                conv = nn.Conv2d(c, d, 4, 2, bias=bias)
                res = (res - 4) // 2 + 1
            mods += _conv_block(conv, "conv", d, style, pool=downsample == "maxpool")
            c = d
        self.net = nn.Sequential(*mods)
        self.min_res = res
        self.out_dim = depths[-1] * res**2
        self.to(memory_format=torch.channels_last)  # NHWC convs: faster on CPU (oneDNN) and GPU (cuDNN)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = preprocess_pixels(pixels)
        batch = x.shape[:-3]
        x = self.net(x.reshape(-1, *x.shape[-3:]).contiguous(memory_format=torch.channels_last))
        if self.flatten == "chw":
            return x.reshape(*batch, self.out_dim)                                   # (*N, C*H*W)
        return x.permute(0, 2, 3, 1).reshape(*batch, self.out_dim)                   # (*N, H*W*C)


def encoder_depths(depth: int, downsample: str = "maxpool", mults: tuple[int, ...] = (2, 3, 4, 4)) -> tuple[int, ...]:
    """Channel widths of the 4 stages: ``depth * 2^i`` (valid and stride convs) or ``depth * mults`` (maxpool)."""
    if downsample in ("valid", "stride"):
        return tuple(depth * 2**i for i in range(4))
    return tuple(depth * m for m in mults)


class UpsampleConvDecoder(nn.Module):
    """The current official image decoder: block-linear entry, then nearest-upsample + conv stages.

    Official ``Decoder`` (``bspace`` 8, ``strided: False``): the 4x4 map with ``C = depths[-1]`` channels is
    ``norm(BlockLinear_G(h)`` (block g writing channel group g at every position) ``+ Linear(SiLU(norm(
    Linear(s)))))`` then SiLU; each stage doubles the resolution (nearest neighbour) and applies a
    ``kernel`` conv ("same"), Norm and SiLU, widths ``depths[-2], ..., depths[0]``; a last upsample and
    conv give the 3 channels, ``outscale`` on its weights, sigmoid. Output ``sigmoid - 0.5`` (module doc).

    Shapes: features ``[*N, S + D]`` (state first, :func:`~dreamer_trl.model.latent.features`) -> ``[*N, 3, 64, 64]``.
    """

    def __init__(self, state_dim: int, belief_dim: int, depths: tuple[int, ...], units: int, kernel: int = 5,
                 blocks: int = 8, style: NetStyle = OFFICIAL_STYLE, out_channels: int = 3, image_size: int = 64,
                 outscale: float = 1.0):
        super().__init__()
        self.state_dim, self.blocks = state_dim, blocks
        self.res = image_size // 2 ** len(depths)
        c = depths[-1]
        if c % blocks:
            raise ValueError(f"the last depth {c} must be divisible by blocks {blocks}")
        self.channels = c
        self.space_belief = BlockLinear(belief_dim, self.res**2 * c, blocks, style)
        self.space_state = nn.Sequential(dense(state_dim, 2 * units, style),
                                         linear(2 * units, self.res**2 * c, style))
        self.space_norm = nn.Sequential(make_norm(c, style), conv_activation(style))
        bias = style.bias or style.norm == "none"
        mods: list[nn.Module] = []
        for d in reversed(depths[:-1]):
            mods += [nn.Upsample(scale_factor=2, mode="nearest"),
                     *_conv_block(nn.Conv2d(c, d, kernel, 1, padding=kernel // 2, bias=bias), "conv", d, style)]
            c = d
        out = _init_layer_(nn.Conv2d(c, out_channels, kernel, 1, padding=kernel // 2), "conv", style, outscale)
        self.net = nn.Sequential(*mods, nn.Upsample(scale_factor=2, mode="nearest"), out)
        self.net.to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features.shape[:-1]
        x = features.reshape(-1, features.shape[-1])
        state, belief = x[:, : self.state_dim], x[:, self.state_dim :]
        r, g, c = self.res, self.blocks, self.channels
        x0 = self.space_belief(belief).view(-1, g, r, r, c // g).permute(0, 2, 3, 1, 4).reshape(-1, r, r, c)
        x1 = self.space_state(state).view(-1, r, r, c)
        x = self.space_norm(x0 + x1).permute(0, 3, 1, 2)                          # (N, C, 4, 4) channels-last
        x = torch.sigmoid(self.net(x)) - 0.5                                      # (N, 3, 64, 64)
        return x.unflatten(0, batch) if len(batch) else x[0]


class TransposedConvDecoder(nn.Module):
    """An image decoder of stride-2 transposed convs after a linear entry layer (no norm, no activation).

    ``padding="valid"`` (Dreamer V1, DreamerV2: ``Dense(32 * depth)`` viewed as a 1x1 map, then Keras
    ``Conv2DTranspose`` without padding, ``kernels`` 5, 5, 6, 6: 1 -> 5 -> 13 -> 30 -> 64). ``padding="same"``
    (2023 ``ImageDecoderResnet``, ``resize: stride``, no residual blocks: a linear layer to ``[8 depth, 4, 4]``,
    4x4 transposed convs, 4 -> 64). Channels ``4, 2, 1 x depth`` after the entry, each stage with Norm and
    the conv activation; a last transposed conv (bias, no norm, ``outscale`` on its weights) to 3 channels.
    Output: the mean image in the preprocessed space (module doc). The 2023 code initialised the entry
    layer and the last conv with its default, a uniform distribution of the same variance 1 / fan_avg;
    here every layer follows the style.

    Shapes: features ``[*N, F]`` -> ``[*N, 3, 64, 64]``.
    """

    def __init__(self, feature_dim: int, depth: int = 32, style: NetStyle = STYLE_2023, out_channels: int = 3,
                 kernels: tuple[int, ...] = (4, 4, 4, 4), padding: str = "same", outscale: float = 1.0):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be same or valid, got {padding!r}")
        stages = len(kernels)
        c = depth * 2 ** (stages - 1) * (4 if padding == "valid" else 1)
        self.channels, self.res = c, 1 if padding == "valid" else 4
        self.fc = linear(feature_dim, self.res**2 * c, style)
        bias = style.bias or style.norm == "none"
        pad = [0 if padding == "valid" else (k - 2) // 2 for k in kernels]
        mods: list[nn.Module] = []
        for i, k in enumerate(kernels[:-1]):
            out = depth * 2 ** (stages - 2 - i)
            mods += _conv_block(nn.ConvTranspose2d(c, out, k, 2, padding=pad[i], bias=bias), "conv_transpose", out, style)
            c = out
        mods.append(_init_layer_(nn.ConvTranspose2d(c, out_channels, kernels[-1], 2, padding=pad[-1]),
                                 "conv_transpose", style, outscale))
        self.net = nn.Sequential(*mods)
        self.net.to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features.shape[:-1]
        x = self.fc(features.reshape(-1, features.shape[-1]))
        if self.res == 1:
            x = self.net[1:](self._first_deconv(x))
        else:
            x = self.net(x.view(-1, self.res, self.res, self.channels).permute(0, 3, 1, 2))  # NHWC order, as official
        return x.unflatten(0, batch) if len(batch) else x[0]                      # (*N, 3, 64, 64)

    def _first_deconv(self, x: torch.Tensor) -> torch.Tensor:
        """``net[0]`` (a transposed conv) on ``x`` viewed as ``[N, C, 1, 1]``, computed as one GEMM.

        On a 1x1 input a transposed conv is a dense layer onto the k x k map,
        ``y[n, c, i, j] = b[c] + sum_d x[n, d] w[d, c, i, j]``; one GEMM is faster than the convolution
        kernel for this shape on CPU. Same parameters (and state_dict) as the convolution; the output is laid
        out channels-last for the next layer.
        """
        conv = self.net[0]
        w = conv.weight                                   # (C, C', k, k)
        k, c = w.shape[-1], w.shape[1]
        y = F.linear(x, w.permute(2, 3, 1, 0).reshape(k * k * c, w.shape[0]),
                     None if conv.bias is None else conv.bias.repeat(k * k))
        return y.view(-1, k, k, c).permute(0, 3, 1, 2)
