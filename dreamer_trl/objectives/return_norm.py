"""DreamerV3 return normalisation and the slow (EMA) / target critic, both stateful and checkpointable.

:class:`ReturnNormalizer` (DreamerV3, arXiv:2301.04104, "Actor learning"; official current code
``embodied/jax/utils.py`` ``Normalize`` with ``retnorm: {impl: perc, rate: 0.01, limit: 1.0, perclo: 5,
perchi: 95, debias: False}``; the 2023 code ``jaxutils.Moments(impl="perc_ema", decay=0.99, max=1)``):

    lo <- (1 - r) lo + r Per(R, 5)        hi <- (1 - r) hi + r Per(R, 95)        (r = 0.01, lo = hi = 0 at start)
    S = max(L, hi - lo)   (L = 1)         advantage = (R - v) / S

Both official versions keep an EMA of each percentile (the same as an EMA of their difference) and update it
with the current batch before reading it, so the scale already includes this batch. Percentiles use linear
interpolation between order statistics (``numpy.percentile``'s default, like ``jnp.percentile``). A batch
with any non-finite return leaves the statistics unchanged, so one bad imagined batch cannot poison
the EMA for the rest of the run (the update itself is then skipped by ``DreamerUpdate``). The statistics are
buffers: put the normaliser in ``DreamerUpdate(hooks=[...])`` (it only has ``state_dict``) or in a checkpointed
module so a resumed run continues them.

:class:`SlowTarget` (DreamerV3 "Critic learning": an EMA of the critic's weights, fraction 0.02 per update,
official ``SlowModel(rate=0.02, every=1)``; DreamerV2: a target critic copied every 100 updates, official
``slow_target_update: 100, slow_target_fraction: 1``):

    after update k (k = 0, 1, ...): if k % every == 0:  slow <- fraction * fast + (1 - fraction) * slow

with slow = fast at construction (both official codes start the target as a copy). It is a
``DreamerUpdate`` hook: ``after_step(phase)`` acts after the critic phase's optimizer step, and its
``state_dict`` holds the update counter and the slow weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile of all of ``x`` with linear interpolation (``numpy.percentile``'s default)."""
    s = x.flatten().sort().values
    pos = q / 100 * (s.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, s.numel() - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


class ReturnNormalizer(nn.Module):
    """EMA of the 5th and 95th return percentiles; ``forward(returns) -> (offset, scale)``, scale = max(limit, hi - lo).

    Args:
        rate: EMA rate r (V3: 0.01, i.e. decay 0.99).
        low, high: percentiles (V3: 5, 95).
        limit: the scale's floor L (V3: 1, so small returns are not scaled up).
        debias: divide the EMAs by their total weight 1 - (1 - r)^k (official option, off for returns in V3).

    Shapes: returns any shape; offset and scale 0-d tensors, without gradient.
    """

    def __init__(self, rate: float = 0.01, low: float = 5.0, high: float = 95.0, limit: float = 1.0,
                 debias: bool = False):
        super().__init__()
        if not 0.0 < rate <= 1.0 or not 0.0 <= low < high <= 100.0:
            raise ValueError(f"return normalisation needs 0 < rate <= 1 and 0 <= low < high <= 100, "
                             f"got rate={rate}, low={low}, high={high}")
        self.rate, self.low, self.high, self.limit, self.debias = rate, low, high, limit, debias
        self.gather = None  # returns -> the returns of all ranks (set by distributed.share_return_statistics)
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("weight", torch.zeros(()))  # total EMA weight 1 - (1 - r)^k, for debias

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        """Move the EMAs toward this batch's percentiles (no change if any return is not finite; no host sync)."""
        x = returns.detach().float()
        if self.gather is not None:  # data-parallel: every rank's returns (dreamer_trl.training.distributed)
            x = self.gather(x)
        lo, hi = percentile(x, self.low), percentile(x, self.high)
        ok = torch.isfinite(x).all()  # sort puts NaN last, so the percentiles alone could look finite
        r = self.rate
        self.lo.copy_(torch.where(ok, (1 - r) * self.lo + r * lo, self.lo))
        self.hi.copy_(torch.where(ok, (1 - r) * self.hi + r * hi, self.hi))
        self.weight.copy_(torch.where(ok, (1 - r) * self.weight + r, self.weight))

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset lo, scale max(limit, hi - lo)), debiased when configured."""
        lo, hi = self.lo, self.hi
        if self.debias:
            corr = 1.0 / self.weight.clamp_min(self.rate)
            lo, hi = lo * corr, hi * corr
        return lo.clone(), (hi - lo).clamp_min(self.limit)

    def forward(self, returns: torch.Tensor, update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Update with ``returns`` (when ``update``), then return (offset, scale)."""
        if update:
            self.update(returns)
        return self.stats()


class SlowTarget:
    """A slow copy of a network, updated after the critic's optimizer step (V3 EMA / V2 periodic copy).

    Args:
        source: the fast network (the critic).
        target: the slow network; default a deep copy of ``source``. Its weights are set to ``source``'s
            at construction and it is excluded from autograd.
        fraction: the mix toward ``source`` at each update that acts (V3: 0.02; V2: 1, a hard copy).
        every: act after every ``every``-th update, starting with the first (V3: 1; V2: 100).
        phase: the ``DreamerUpdate`` phase whose step triggers it ("value").
    """

    def __init__(self, source: nn.Module, target: nn.Module | None = None, fraction: float = 0.02,
                 every: int = 1, phase: str = "value"):
        if not 0.0 < fraction <= 1.0 or every < 1:
            raise ValueError(f"slow target needs 0 < fraction <= 1 and every >= 1, got {fraction}, {every}")
        self.source, self.fraction, self.every, self.phase = source, fraction, every, phase
        self.target = copy.deepcopy(source) if target is None else target
        self.target.load_state_dict(source.state_dict())
        self.target.requires_grad_(False)
        self.count = 0  # updates seen

    def _pairs(self):
        src = list(self.source.parameters()) + list(self.source.buffers())
        dst = list(self.target.parameters()) + list(self.target.buffers())
        if len(src) != len(dst):
            raise ValueError("SlowTarget: source and target do not have the same tensors")
        return zip(src, dst, strict=True)

    @torch.no_grad()
    def update(self) -> None:
        """One update: mix when ``count % every == 0``, then count it."""
        if self.count % self.every == 0:
            for s, t in self._pairs():
                if self.fraction == 1.0 or not t.is_floating_point():
                    t.copy_(s)
                else:
                    t.lerp_(s, self.fraction)  # t + fraction * (s - t) = (1 - fraction) t + fraction s
        self.count += 1

    def after_step(self, phase) -> None:
        if phase.name == self.phase:
            self.update()

    def after_update(self) -> None:
        """The same update, for a loop without phases (:meth:`dreamer_trl.builders.agent.Agent.after_update`)."""
        self.update()

    def __call__(self, *args, **kwargs):
        return self.target(*args, **kwargs)

    def state_dict(self) -> dict:
        return {"count": torch.tensor(self.count), "target": self.target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self.target.load_state_dict(state["target"])
