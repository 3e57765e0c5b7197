"""Symlog squashing and the two-hot codec of DreamerV3 (Hafner et al. 2023, arXiv:2301.04104, "Robust predictions").

    symlog(x) = sign(x) ln(|x| + 1)        symexp(x) = sign(x) (exp(|x|) - 1)

symexp inverts symlog. Rewards and values are regressed as a categorical over K = 255 fixed bins B:
a target y becomes the "two-hot" vector that puts weight on the two bins around it, in proportion to
closeness, so the weights' mean is y; a prediction is the softmax-weighted mean of the bins.

Two placements of the bins, both from the official code (danijar/dreamerv3):

- ``space="symexp"`` (the current code, e3f0224, ``embodied/jax/heads.py`` ``symexp_twohot`` and
  ``outs.TwoHot``; the default): bins = symexp(linspace(-20, 20, K)) in value space; y is encoded by linear
  interpolation between its neighbouring bins in value space, and decode = sum_i p_i b_i in value space.
- ``space="symlog"`` (the 2023 code, 84ecf19, ``jaxutils.DiscDist``, the paper's equations): bins =
  linspace(-20, 20, K) in symlog space; symlog(y) is interpolated there, decode = symexp(sum_i p_i b_i).

Both build the bins exactly symmetric around 0 (the negative half mirrored) and sum the two halves
pairwise from the centre outward, as the current official code does, so uniform probabilities (a
zero-initialised output layer) decode to exactly 0; a plain left-to-right float32 sum over bins up to
+-4.9e8 would leave an error of several units. Targets beyond the outer bins go wholly to the end bin.

Shapes: values ``[*N]``; two-hot weights and logits ``[*N, K]``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SPACES = ("symexp", "symlog")


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) ln(|x| + 1)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (exp(|x|) - 1), the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def symmetric_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0, space: str = "symexp") -> torch.Tensor:
    """The K bin locations, ascending: linspace(low, high, K), passed through symexp when ``space="symexp"``.

    Built from the negative half and its mirror image, so b_i = -b_{K-1-i} exactly (``low == -high``).
    """
    if space not in SPACES:
        raise ValueError(f"two-hot space must be one of {SPACES}, got {space!r}")
    if low != -high or num_bins < 2:
        raise ValueError(f"two-hot bins need low == -high and at least 2 bins, got {low}, {high}, {num_bins}")
    squash = symexp if space == "symexp" else (lambda x: x)
    if num_bins % 2:
        half = squash(torch.linspace(low, 0.0, (num_bins - 1) // 2 + 1, dtype=torch.float64))  # ends at 0
        bins = torch.cat([half, -half[:-1].flip(0)])
    else:
        step = (high - low) / (num_bins - 1)
        half = squash(torch.linspace(low, -step / 2, num_bins // 2, dtype=torch.float64))
        bins = torch.cat([half, -half.flip(0)])
    return bins.float()


class TwoHotCodec(nn.Module):
    """Two-hot encoding of scalars over fixed bins and the expected value of a softmax over them.

    Args:
        num_bins: K (V3: 255).
        low, high: the bin range before any symexp (V3: -20, 20).
        space: "symexp" (current official code: bins and interpolation in value space) or "symlog"
            (2023 code and paper: bins and interpolation in symlog space, decode through symexp).
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0, space: str = "symexp"):
        super().__init__()
        self.space = space
        self.register_buffer("bins", symmetric_bins(num_bins, low, high, space), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.bins.numel()

    def _to_bin_space(self, y: torch.Tensor) -> torch.Tensor:
        return symlog(y) if self.space == "symlog" else y

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Two-hot weights ``[*N, K]`` of ``y`` ``[*N]``: they sum to 1 and their bin mean is x, where x = y
        (``space="symexp"``) or symlog(y) (``space="symlog"``).

        With b_k <= x < b_{k+1}: weight (b_{k+1} - x) / (b_{k+1} - b_k) on bin k and the rest on bin k+1
        (x on a bin: all on that bin); x <= b_0 or x >= b_{K-1}: all on the end bin.
        """
        x = self._to_bin_space(y.detach().to(self.bins.dtype))
        bins, K = self.bins, self.num_bins
        below = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, K - 2)  # bins[below] <= x
        lo, hi = bins[below], bins[below + 1]
        w_hi = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)  # 0 below the first bin, 1 above the last
        out = torch.zeros(*x.shape, K, dtype=bins.dtype, device=bins.device)
        out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, (below + 1).unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def expectation(self, probs: torch.Tensor) -> torch.Tensor:
        """sum_i p_i b_i in bin space ``[*N]``, summed pairwise from the centre outward (exactly 0 for uniform p)."""
        pb = probs * self.bins
        K = self.num_bins
        m = K // 2
        if K % 2:
            return pb[..., m] + (pb[..., :m].flip(-1) + pb[..., m + 1:]).sum(-1)
        return (pb[..., :m].flip(-1) + pb[..., m:]).sum(-1)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted value ``[*N]`` of logits ``[*N, K]``: E_softmax[b], then symexp in "symlog" space."""
        mean = self.expectation(torch.softmax(logits.float(), -1))
        return symexp(mean) if self.space == "symlog" else mean

    def nll(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy -sum_i twohot(y)_i log softmax(logits)_i ``[*N]`` (the target carries no gradient)."""
        return -(self.encode(y) * F.log_softmax(logits.float(), -1)).sum(-1)
