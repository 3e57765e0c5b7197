"""Output heads: a network on the latent features plus the distribution its output parameterises.

A head maps features concat(s_t, h_t) to a raw output (``head(x)``); ``head.pred(raw)`` is its point
prediction (what imagination and acting use) and ``head.nll(raw, target)`` the negative log-likelihood of
a target, summed over the event dims. The losses use only these two, so a head with another
distribution (DreamerV3's symlog MSE or symexp two-hot, a Bernoulli continue flag) is one more class.

- :class:`NormalHead`: N(raw, 1) per element (Dreamer V1's decoder, reward and value heads).
- :class:`SymlogMSEHead`: squared error in symlog space, pred = symexp(raw) (DreamerV3 vector decoder).
- :class:`TwoHotHead`: K logits over symexp-spaced bins, cross-entropy to the two-hot target (DreamerV3
  reward and critic; output layer zero-initialised with :func:`zero_init_last_linear`).
- :class:`BernoulliHead`: a logit, pred = probability (DreamerV3 continue, DreamerV2 discount predictor).

Shapes: features ``[*N, S + D]``; raw and pred ``[*N, *event]``; nll ``[*N]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.latent import on_features
from dreamer_trl.model.symlog import TwoHotCodec, symexp, symlog

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class NormalHead(nn.Module):
    """Unit-variance Gaussian head: the network outputs the mean of N(., 1).

    -log N(y | m, 1) = 1/2 (y - m)^2 + 1/2 log(2 pi) per element (Dreamer Eq. 10's log-likelihood terms).

    Args:
        net: features ``[*N, F]`` -> mean ``[*N, *event]``.
        event_dims: how many trailing dims form one event (1 for vectors and scalars ``[*N, 1]``,
            3 for images ``[*N, C, H, W]``).
    """

    def __init__(self, net: nn.Module, event_dims: int = 1):
        super().__init__()
        self.net, self.event_dims = net, event_dims

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return on_features(self.net, state, belief)

    def pred(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log N(target | raw, 1) summed over the event dims: ``[*N]``."""
        nll = 0.5 * (target - raw) ** 2 + HALF_LOG_2PI
        return nll.sum(tuple(range(-self.event_dims, 0)))

    def mean_nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:meth:`nll` averaged over all rows, fused (no per-element temporaries: images are large)."""
        event = target.shape[target.dim() - self.event_dims:].numel()
        rows = target.numel() // max(event, 1)
        return 0.5 * F.mse_loss(raw, target, reduction="sum") / rows + event * HALF_LOG_2PI


def zero_init_last_linear(module: nn.Module) -> nn.Module:
    """Zero the weight and bias of the last ``nn.Linear`` in ``module`` (registration order); returns ``module``.

    DreamerV3 zero-initialises the reward and critic output layers (paper, "Critic learning"; official
    configs ``rewhead`` and ``value``: ``outscale: 0.0``), so with :class:`TwoHotHead` both start predicting
    exactly 0 (uniform softmax over symmetric bins).
    """
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError(f"zero_init_last_linear: {type(module).__name__} has no nn.Linear")
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    return module


def _sum_event(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.sum(tuple(range(-event_dims, 0))) if event_dims else x


class SymlogMSEHead(nn.Module):
    """Symlog regression (DreamerV3, arXiv:2301.04104, "Robust predictions"): the net predicts symlog(y).

    nll = sum over the event of (raw - symlog(y))^2 (the official ``symlog_mse``: plain squared error, no 1/2,
    no constant), pred = symexp(raw).

    Args:
        net: features ``[*N, F]`` -> raw ``[*N, *event]``.
        event_dims: trailing dims forming one event (1 for vectors).
    """

    def __init__(self, net: nn.Module, event_dims: int = 1):
        super().__init__()
        self.net, self.event_dims = net, event_dims

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return on_features(self.net, state, belief)

    def pred(self, raw: torch.Tensor) -> torch.Tensor:
        return symexp(raw)

    def nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """sum over the event dims of (raw - symlog(target))^2: ``[*N]``."""
        return _sum_event((raw - symlog(target.detach())) ** 2, self.event_dims)

    def mean_nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:meth:`nll` averaged over all rows."""
        event = target.shape[target.dim() - self.event_dims:].numel()
        rows = target.numel() // max(event, 1)
        return F.mse_loss(raw, symlog(target.detach()), reduction="sum") / rows


class TwoHotHead(nn.Module):
    """Discrete regression of a scalar (DreamerV3, "Robust predictions": symexp two-hot): K logits, two-hot
    cross-entropy, decoded mean.

    Drop-in for a scalar :class:`NormalHead`: targets and predictions keep a trailing dim of 1.

    Args:
        net: features ``[*N, F]`` -> logits ``[*N, K]``; zero its last layer with :func:`zero_init_last_linear`.
        codec: the bins (default :class:`~dreamer_trl.model.symlog.TwoHotCodec`: 255 symexp bins, current official).

    Shapes: raw ``[*N, K]``; target and pred ``[*N, 1]``; nll ``[*N]``.
    """

    def __init__(self, net: nn.Module, codec: TwoHotCodec | None = None):
        super().__init__()
        self.net = net
        self.codec = codec if codec is not None else TwoHotCodec()

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return on_features(self.net, state, belief)

    def pred(self, raw: torch.Tensor) -> torch.Tensor:
        """The decoded value ``[*N, 1]``."""
        return self.codec.decode(raw).unsqueeze(-1)

    def nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of softmax(raw) to twohot(target): ``[*N]`` for target ``[*N, 1]``."""
        if target.shape[-1] != 1 or target.shape[:-1] != raw.shape[:-1]:
            raise ValueError(f"TwoHotHead: target {tuple(target.shape)} must be [*N, 1] for logits {tuple(raw.shape)}")
        return self.codec.nll(raw, target.squeeze(-1))

    def mean_nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.nll(raw, target).mean()


class BernoulliHead(nn.Module):
    """A Bernoulli flag from one logit per element: DreamerV3's continue predictor (``binary`` output),
    DreamerV2's discount predictor.

    pred = sigmoid(raw), the probability of 1, which multiplies the imagined discounts (V3 uses
    ``con.prob(1)`` in its imagination loss); :meth:`mode` = raw > 0. nll = BCE with logits summed over the
    event dims (targets may be soft, e.g. V3's ``contdisc`` target (1 - terminal)(1 - 1/H)).

    Args:
        net: features ``[*N, F]`` -> logits ``[*N, *event]`` (``[*N, 1]`` for the continue flag).
        event_dims: trailing dims forming one event.
    """

    def __init__(self, net: nn.Module, event_dims: int = 1):
        super().__init__()
        self.net, self.event_dims = net, event_dims

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return on_features(self.net, state, belief)

    def pred(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw)

    def mode(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw > 0).to(raw.dtype)

    def nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-[y log sigmoid(raw) + (1 - y) log sigmoid(-raw)] summed over the event dims: ``[*N]``."""
        bce = F.binary_cross_entropy_with_logits(raw, target.detach().to(raw.dtype), reduction="none")
        return _sum_event(bce, self.event_dims)

    def mean_nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        event = target.shape[target.dim() - self.event_dims:].numel()
        rows = target.numel() // max(event, 1)
        return F.binary_cross_entropy_with_logits(raw, target.detach().to(raw.dtype), reduction="sum") / rows


class MSEHead(NormalHead):
    """Plain squared error summed over the event (DreamerV3's image loss, official ``mse``: no 1/2, no
    constant); pred is the raw output. Images are targets in [-0.5, 0.5] here (the encoder's input), which
    shifts the official [0, 1] target by a constant the decoder's output absorbs."""

    def nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((target - raw) ** 2).sum(tuple(range(-self.event_dims, 0)))

    def mean_nll(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        event = target.shape[target.dim() - self.event_dims:].numel()
        return F.mse_loss(raw, target, reduction="sum") / (target.numel() // max(event, 1))
