"""A normal distribution truncated to [low, high], reparameterised: DreamerV2's continuous action distribution.

DreamerV2 (danijar/dreamerv2 at 07d906e, ``dreamerv2/common/dists.py`` ``TruncNormalDist``) samples
TensorFlow Probability's ``tfd.TruncatedNormal`` and clips the draw to [low + clip, high - clip] (clip 1e-6)
with a straight-through gradient: the value is the clipped draw, the gradient that of the unclipped draw.
Its ``mult`` (1) is the identity and is left out. Its log-density, entropy, mean and mode are TFP's
(tensorflow/probability at 07927c8, ``distributions/truncated_normal.py``: ``_log_prob``, ``_entropy``,
``_mean``, ``_mode``; the mode is ``loc`` clipped to the bounds, which is what ``agent.py`` ``Agent.policy``
acts with in evaluation, ``actor.mode()``).

Sampling is by the inverse CDF: with standardised bounds ``a = (low - loc) / scale`` and
``b = (high - loc) / scale`` and ``u`` uniform on (0, 1), ``z = ndtri(Phi(a) + u (Phi(b) - Phi(a)))`` and
``x = loc + scale * z``. The CDF values are combined in log space (``log_ndtr``), with the interval mirrored
into the left tail when it lies on the right, so that bounds far in a tail stay exact; where
``Phi`` itself underflows, ``z`` comes from Newton steps on ``log_ndtr`` from the asymptotic start. The
gradient to ``loc`` and ``scale`` is that of the inverse-CDF map at fixed ``u``, written in implicit form
(TFP's ``_sample_n`` gradient): ``dz/da = exp(log phi(a) - log phi(z)) (1 - u)`` and
``dz/db = exp(log phi(b) - log phi(z)) u``, computed in log space. The draw and these coefficients (without a
graph) and the density, entropy and mean (with one) are computed in float64 (float32 on MPS, which has no
float64) and returned in the dtype of ``loc``.

Shapes: ``loc``, ``scale`` ``[*N, A]`` (broadcastable); ``log_prob`` and ``entropy`` sum the last
``event_dims`` dims (1: V2's ``tfd.Independent(dist, 1)``; 0: per element).
"""
from __future__ import annotations

import math

import torch
from torch.special import log_ndtr, ndtri

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
HALF_LOG_2PIE = 0.5 * math.log(2 * math.pi * math.e)
LN2 = math.log(2.0)


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for the tail-sensitive arithmetic; float32 on MPS (no float64 there)."""
    return torch.float32 if t.device.type == "mps" else torch.float64


def log_phi(z: torch.Tensor) -> torch.Tensor:
    """log of the standard normal density."""
    return -0.5 * z * z - LOG_SQRT_2PI


def log_sub_exp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log(exp(x) - exp(y)) for x >= y, without cancellation (log(-expm1) near 0, log1p(-exp) below -ln 2)."""
    d = y - x
    near = torch.log(-torch.expm1(d.clamp(min=-LN2)))
    far = torch.log1p(-torch.exp(d.clamp(max=-LN2)))
    return x + torch.where(d > -LN2, near, far)


def mirrored(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flip, lo, hi): the interval [a, b], mirrored to [-b, -a] where its centre is positive, so that lo + hi <= 0
    and Phi(lo), Phi(hi) are never both close to 1."""
    flip = (a + b) > 0
    return flip, torch.where(flip, -b, a), torch.where(flip, -a, b)


def log_normalizer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log Z = log(Phi(b) - Phi(a)) for standardised bounds a < b (the same on the mirrored interval)."""
    _, lo, hi = mirrored(a, b)
    return log_sub_exp(log_ndtr(hi), log_ndtr(lo))


def ndtri_log(log_p: torch.Tensor, newton_steps: int = 4) -> torch.Tensor:
    """z with log Phi(z) = log_p: ``ndtri(exp(log_p))``, and where ``exp(log_p)`` is too close to underflow,
    Newton steps on ``log_ndtr`` from the asymptote ``z ~ -sqrt(t - log t)``, ``t = -2 log_p - log 2 pi``."""
    threshold = math.log(torch.finfo(log_p.dtype).tiny) + 20.0
    direct = ndtri(log_p.exp())
    if not bool((log_p <= threshold).any()):  # the actor's intervals always hold loc: no Newton steps
        return direct
    lp = log_p.clamp(max=threshold)
    t = -2.0 * lp - 2.0 * LOG_SQRT_2PI
    z = -torch.sqrt(t - torch.log(t))
    for _ in range(newton_steps):
        log_cdf = log_ndtr(z)
        z = z - (log_cdf - lp) * torch.exp(log_cdf - log_phi(z))
    return torch.where(log_p > threshold, direct, z)


class TruncatedNormal:
    """N(loc, scale) truncated to [low, high]; rsample draws by the inverse CDF with implicit gradients and clips
    the draw to [low + clip, high - clip] straight-through (module docstring).

    Args:
        loc, scale: ``[*N, A]`` tensors (scale > 0); the untruncated normal's mean and std.
        low, high: finite bounds (V2: -1, 1).
        clip: the straight-through margin inside the bounds (V2: 1e-6; 0: none).
        event_dims: trailing dims summed by ``log_prob`` and ``entropy`` (V2: 1).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, low: float = -1.0, high: float = 1.0,
                 clip: float = 1e-6, event_dims: int = 1):
        if not low < high:
            raise ValueError(f"low must be below high, got {low} and {high}")
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.low, self.high, self.clip, self.event_dims = float(low), float(high), float(clip), event_dims

    def _sum(self, value: torch.Tensor) -> torch.Tensor:
        return value.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else value

    def _standard(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, scale = (self.loc, self.scale) if dtype is None else (self.loc.to(dtype), self.scale.to(dtype))
        return (self.low - loc) / scale, (self.high - loc) / scale, scale

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        """The draw at ``u`` in (0, 1) (``[*S, *N, A]``), unclipped, with the gradient of the inverse-CDF map at
        fixed ``u`` to loc and scale."""
        a, b, _ = self._standard()
        wd = work_dtype(self.loc)
        with torch.no_grad():
            u = u.to(wd)
            a0, b0 = a.detach().to(wd), b.detach().to(wd)
            flip, lo, hi = mirrored(a0, b0)
            v = torch.where(flip, 1.0 - u, u)  # Y = -Z on [-b, -a]: P(Y <= -z) = 1 - u
            log_p = torch.logaddexp(torch.log1p(-v) + log_ndtr(lo), torch.log(v) + log_ndtr(hi))
            y = torch.minimum(torch.maximum(ndtri_log(log_p), lo), hi)
            z = torch.where(flip, -y, y)
            lz = log_phi(z)
            da = torch.exp(log_phi(a0) - lz + torch.log1p(-u)).to(a.dtype)
            db = torch.exp(log_phi(b0) - lz + torch.log(u)).to(b.dtype)
            z = z.to(a.dtype)
        z = z + da * (a - a.detach()) + db * (b - b.detach())  # value z; gradient dz/da, dz/db
        return self.loc + self.scale * z

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """A reparameterised draw ``[*sample_shape, *N, A]`` in [low + clip, high - clip]: the clipped value,
        the unclipped draw's gradient (V2 ``TruncNormalDist.sample``)."""
        shape = torch.Size(sample_shape) + self.loc.shape
        like = self.loc.detach().expand(shape).contiguous()  # rand_like: the draws' one entry point (tests fix it)
        draw = self.icdf(torch.rand_like(like, dtype=work_dtype(self.loc)))
        if not self.clip:
            return draw
        clipped = draw.detach().clamp(self.low + self.clip, self.high - self.clip)
        return draw + (clipped - draw.detach())

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def mode(self) -> torch.Tensor:
        """``loc`` clipped to [low, high] (TFP ``_mode``; V2 acts with it in evaluation)."""
        return self.loc.clamp(self.low, self.high)

    @property
    def mean(self) -> torch.Tensor:
        """loc + scale (phi(a) - phi(b)) / Z."""
        a, b, scale = self._standard(work_dtype(self.loc))
        log_z = log_normalizer(a, b)
        shift = torch.exp(log_phi(a) - log_z) - torch.exp(log_phi(b) - log_z)
        return self.loc + (scale * shift).to(self.loc.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log density, -inf outside [low, high] (TFP ``_log_prob``), summed over the event dims."""
        a, b, scale = self._standard(work_dtype(self.loc))
        z = (value.to(scale.dtype) - self.loc.to(scale.dtype)) / scale
        log_prob = log_phi(z) - torch.log(scale) - log_normalizer(a, b)
        outside = (value < self.low) | (value > self.high)
        log_prob = torch.where(outside, torch.full_like(log_prob, -math.inf), log_prob)
        return self._sum(log_prob.to(self.loc.dtype))

    def entropy(self) -> torch.Tensor:
        """log(sqrt(2 pi e) scale Z) + (a phi(a) - b phi(b)) / (2 Z) (TFP ``_entropy``), summed over the event dims."""
        a, b, scale = self._standard(work_dtype(self.loc))
        log_z = log_normalizer(a, b)
        edges = a * torch.exp(log_phi(a) - log_z) - b * torch.exp(log_phi(b) - log_z)
        entropy = HALF_LOG_2PIE + torch.log(scale) + log_z + 0.5 * edges
        return self._sum(entropy.to(self.loc.dtype))
