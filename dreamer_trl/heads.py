"""Output heads: a network on the latent features plus the distribution its output parameterises.

A head maps features concat(s_t, h_t) to a raw output (``head(x)``); ``head.pred(raw)`` is its point
prediction (what imagination and acting use) and ``head.nll(raw, target)`` the negative log-likelihood of
a target, summed over the event dims. The losses use only these two, so a head with another
distribution (DreamerV3's symlog MSE or symexp two-hot, a Bernoulli continue flag) is one more class.

- :class:`NormalHead`: N(raw, 1) per element (Dreamer V1's decoder, reward and value heads).

Shapes: features ``[*N, S + D]``; raw and pred ``[*N, *event]``; nll ``[*N]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.latent import features

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
        return self.net(features(state, belief))

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
