"""Plain ``nn.Module`` networks of Dreamer V1 (sizes from Hafner et al. 2020, appendix and official code).

Shapes:
    pixels: uint8 ``[*N, 3, 64, 64]``; vector observation ``[*N, O]``; features ``[*N, S + D]``;
    embeddings ``[*N, E]`` (E = 1024 for pixels).

The TensorDict wrappers live in :mod:`dreamer_trl.model.world_model` and :mod:`dreamer_trl.behavior.policy`;
these modules take and return plain tensors so the time loops stay cheap.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.latent import NormalParams, normal_log_prob


def keras_init_(module: nn.Module) -> nn.Module:
    """The official code's initialisation (TF2 Keras defaults), in place; returns ``module``.

    Dense, Conv2D and Conv2DTranspose kernels: Glorot-uniform, U(-b, b) with b = sqrt(6 / (fan_in + fan_out));
    biases zero. GRU: input kernel Glorot-uniform, recurrent kernel orthogonal, biases zero. PyTorch's
    defaults differ (Kaiming-uniform with a = sqrt(5), uniform biases, uniform GRU weights). Fans are
    computed from PyTorch's layouts, which give the same bound as Keras's for every layer type here.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GRUCell):
            nn.init.xavier_uniform_(m.weight_ih)
            nn.init.orthogonal_(m.weight_hh)
            nn.init.zeros_(m.bias_ih)
            nn.init.zeros_(m.bias_hh)
    return module


def mlp(in_dim: int, out_dim: int, hidden: int, layers: int, act: type[nn.Module] = nn.ELU) -> nn.Sequential:
    """``layers`` hidden Linear+activation blocks of width ``hidden``, then a linear output."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), act()]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def _flatten_batch(x: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    batch = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims :]), batch


def pixels_as_uint8(pixels: torch.Tensor, key: str = "pixels") -> torch.Tensor:
    """Pixels as the model's inputs take them: uint8 ``[0, 255]`` as they are; float ``[0, 1]`` (what TorchRL's
    ``ToTensorImage`` makes of 8-bit frames) quantised back to uint8, which is lossless for such frames.

    Raises TypeError for other dtypes and ValueError for floats outside ``[0, 1]`` (e.g. normalised frames:
    the model centres pixels itself, ``x / 255 - 0.5``). Used where user data enters: the acting policy,
    :class:`~dreamer_trl.objectives.WorldModelLoss` and the replay buffer.
    """
    if pixels.dtype == torch.uint8:
        return pixels
    if not pixels.is_floating_point():
        raise TypeError(f"{key!r} must be uint8 in [0, 255] or float in [0, 1], got {pixels.dtype}")
    low, high = pixels.aminmax()
    if low < 0 or high > 1:
        raise ValueError(f"float {key!r} must be in [0, 1] (TorchRL's ToTensorImage), got values in "
                         f"[{float(low):.3g}, {float(high):.3g}]; pass raw frames (uint8 [0, 255]) or [0, 1] "
                         "floats, without normalisation: the model centres them itself")
    return pixels.mul(255).round_().to(torch.uint8)


def preprocess_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` to float ``[-0.5, 0.5]`` (official code: ``obs / 255 - 0.5``); floats pass through
    (they are taken as already centred: user floats in ``[0, 1]`` go through :func:`pixels_as_uint8` first).

    Images ``[*N, C, H, W]`` come out channels-last in memory (the channel stride is 1), the layout of the
    NHWC convolutions, so neither the encoder nor the reconstruction loss copies them again.
    """
    if pixels.dtype != torch.uint8:
        return pixels
    if pixels.dim() < 3:
        return pixels.float().div_(255.0).sub_(0.5)
    return pixels.movedim(-3, -1).contiguous().float().div_(255.0).sub_(0.5).movedim(-1, -3)


class ConvEncoder(nn.Module):
    """Four 4x4 stride-2 convolutions, 32/64/128/256 channels, ReLU: ``[*N, 3, 64, 64] -> [*N, 1024]``."""

    def __init__(self, depth: int = 32, in_channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, depth, 4, 2), nn.ReLU(),
            nn.Conv2d(depth, 2 * depth, 4, 2), nn.ReLU(),
            nn.Conv2d(2 * depth, 4 * depth, 4, 2), nn.ReLU(),
            nn.Conv2d(4 * depth, 8 * depth, 4, 2), nn.ReLU(),
        )
        self.out_dim = 8 * depth * 4
        keras_init_(self)
        self.to(memory_format=torch.channels_last)  # NHWC convs: faster on CPU (oneDNN) and GPU (cuDNN)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x, batch = _flatten_batch(preprocess_pixels(pixels), 3)
        return self.net(x.contiguous(memory_format=torch.channels_last)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """Dense to 1024, then transposed convs (kernels 5, 5, 6, 6; channels 128/64/32/3): mean of N(., 1)."""

    def __init__(self, feature_dim: int, depth: int = 32, out_channels: int = 3):
        super().__init__()
        self.fc = nn.Linear(feature_dim, 32 * depth)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(32 * depth, 4 * depth, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(4 * depth, 2 * depth, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(2 * depth, depth, 6, 2), nn.ReLU(),
            nn.ConvTranspose2d(depth, out_channels, 6, 2),
        )
        keras_init_(self)
        self.net.to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x, batch = _flatten_batch(features, 1)
        x = self._first_deconv(self.fc(x))           # (N, 128, 5, 5), channels-last
        x = self.net[1:](x)                          # (N, 3, 64, 64)
        return x.unflatten(0, batch) if len(batch) else x[0]  # a view: no copy out of channels-last

    def _first_deconv(self, x: torch.Tensor) -> torch.Tensor:
        """``net[0]`` (a transposed conv) applied to ``x`` viewed as ``[N, 1024, 1, 1]``, computed as one GEMM.

        On a 1x1 input a transposed conv is a dense layer onto the k x k map,
        ``y[n, c, i, j] = b[c] + sum_d x[n, d] w[d, c, i, j]``; one GEMM is faster than the convolution
        kernel for this shape on CPU. Same parameters (and state_dict) as the convolution; the output is laid
        out channels-last for the next layer.
        """
        conv = self.net[0]
        w = conv.weight                                   # (1024, C, k, k)
        k, c = w.shape[-1], w.shape[1]
        y = F.linear(x, w.permute(2, 3, 1, 0).reshape(k * k * c, w.shape[0]), conv.bias.repeat(k * k))
        return y.view(-1, k, k, c).permute(0, 3, 1, 2)


class MLPEncoder(nn.Module):
    """Vector observation encoder: ELU MLP ``[*N, O] -> [*N, E]``."""

    def __init__(self, obs_dim: int, hidden: int = 400, layers: int = 2, out_dim: int = 400):
        super().__init__()
        self.net = keras_init_(mlp(obs_dim, out_dim, hidden, layers))
        self.out_dim = out_dim

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return F.elu(self.net(observation))


class MLPDecoder(nn.Module):
    """Vector observation decoder: ELU MLP ``[*N, S + D] -> [*N, O]``, mean of N(., 1)."""

    def __init__(self, feature_dim: int, obs_dim: int, hidden: int = 400, layers: int = 2):
        super().__init__()
        self.net = keras_init_(mlp(feature_dim, obs_dim, hidden, layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class ScalarHead(nn.Module):
    """ELU MLP to one scalar, the mean of N(., 1): reward (2x400) and value (3x400) heads."""

    def __init__(self, feature_dim: int, hidden: int = 400, layers: int = 2):
        super().__init__()
        self.net = keras_init_(mlp(feature_dim, 1, hidden, layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class TanhNormalActor(nn.Module):
    """Dreamer V1 action model: tanh-transformed Gaussian, ELU MLP 4x400.

    mean = s * tanh(x / s) with ``mean_scale`` s = 5; std = softplus(y + softplus^-1(init_std)) + min_std,
    ``init_std`` 5 (official code ``ActionDecoder(dist='tanh_normal')``). Samples are reparameterised:
    ``a = tanh(mean + std * eps)``; the deterministic action is ``tanh(mean)``.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: int = 400, layers: int = 4,
                 mean_scale: float = 5.0, init_std: float = 5.0, min_std: float = 1e-4):
        super().__init__()
        self.net = keras_init_(mlp(feature_dim, 2 * action_dim, hidden, layers))
        self.mean_scale = mean_scale
        self.raw_init_std = math.log(math.expm1(init_std))
        self.min_std = min_std

    def dist_params(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.squash(self.net(features))

    def squash(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLP's raw output ``[*N, 2A]`` to the pre-tanh Gaussian's (mean, std)."""
        mean, std = raw.chunk(2, -1)
        if self.mean_scale > 0:  # 0: the raw mean (TorchRL's actor)
            mean = self.mean_scale * torch.tanh(mean / self.mean_scale)
        std = F.softplus(std + self.raw_init_std) + self.min_std
        return mean, std

    def dist(self, features: torch.Tensor) -> "TanhNormal":
        """The action distribution at these features."""
        return TanhNormal(*self.dist_params(features))

    def forward(self, features: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.dist(features)
        return dist.mode() if deterministic else dist.rsample()


class TanhNormal(NormalParams):
    """a = tanh(u), u ~ N(mean, std) per action dim: sample, mode, log_prob, entropy.

    ``mode`` is tanh(mean) (the official code picks the most likely of 100 samples instead); ``entropy``
    is the sample estimate -mean_i log p(a_i) over ``samples`` reparameterised draws, as the official
    ``SampleDist`` computes it (the tanh-Gaussian has no closed form).
    Shapes: mean, std ``[*N, A]`` (``loc`` / ``scale``: the pre-tanh Gaussian's); actions ``[*N, A]``; log_prob
    and entropy ``[*N]``.
    """

    def rsample(self) -> torch.Tensor:
        return torch.tanh(self.mean + self.std * torch.randn_like(self.mean))

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)

    def log_prob(self, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """log N(u | mean, std) - sum log(1 - tanh(u)^2) with u = atanh(a) (a clipped to +-(1 - eps))."""
        u = torch.atanh(action.clamp(-1 + eps, 1 - eps))
        log_normal = normal_log_prob(u, self.mean, self.std)
        log_det = 2 * (math.log(2) - u - F.softplus(-2 * u))  # log(1 - tanh(u)^2), stable
        return (log_normal - log_det).sum(-1)

    def entropy(self, samples: int = 100) -> torch.Tensor:
        draws = torch.stack([self.rsample() for _ in range(samples)])
        return -self.log_prob(draws).mean(0)
