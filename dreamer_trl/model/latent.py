"""Latent state and latent distributions of the RSSM.

The latent state at step t is the pair (s_t, h_t): a stochastic part s_t ("state") drawn from a latent
distribution, and the deterministic GRU belief h_t ("belief"), held together by :class:`LatentState`.
Every head (decoder, reward, actor, value) reads the same features concat(s_t, h_t) (Dreamer,
arXiv:1912.01603, Sec. 3; PlaNet Sec. 3): :func:`features` is the one place they are formed.

A latent distribution family maps the raw output of a network layer to named parameters and provides
``sample`` / ``mode`` / ``kl`` / ``entropy`` on them. The RSSM, the losses and the imagination env only talk
to that interface, so another family (DreamerV2/V3's categorical latents) is one more class here.

- :class:`GaussianLatent`: diagonal Gaussian, std = softplus(x) + min_std (Dreamer V1 / PlaNet).
- :class:`CategoricalLatent`: G one-hot groups of C classes with straight-through gradients and a uniform
  mix (DreamerV2 Sec. 2; DreamerV3 Sec. 3, "unimix").

Parameters travel as a dict ``{name: tensor}``; in TensorDicts they are stored under
``"<prefix>_<name>"`` (``"prior_mean"``, ``"posterior_std"``, ...), TorchRL's Dreamer key names.

Shapes: raw ``[*N, param_dim]``; each parameter ``[*N, S]``; samples ``[*N, S]``; kl/entropy ``[*N]``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from tensordict import TensorDictBase
from torch.nn import functional as F


def features(state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
    """The heads' input, concat(s_t, h_t): ``[*N, S]``, ``[*N, D]`` -> ``[*N, S + D]``."""
    return torch.cat([state, belief], -1)


def on_features(net, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
    """``net(features(state, belief))``, through ``net.forward_latent(state, belief)`` when the network has one
    (it avoids forming the concatenation: DreamerV3's MLPs)."""
    forward_latent = getattr(net, "forward_latent", None)
    return forward_latent(state, belief) if forward_latent is not None else net(features(state, belief))


def normal_log_prob(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(value | mean, std) per element (not summed)."""
    z = (value - mean) / std
    return -0.5 * z**2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


class NormalParams:
    """A diagonal Gaussian's parameters: ``mean``, ``std`` ``[*N, A]``, also as ``loc`` / ``scale`` (the names of
    :class:`~dreamer_trl.model.trunc_normal.TruncatedNormal`), the base of the actors' Gaussian distributions."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    @property
    def loc(self) -> torch.Tensor:
        return self.mean

    @property
    def scale(self) -> torch.Tensor:
        return self.std


class LatentState(NamedTuple):
    """(s_t, h_t): the stochastic state ``[*N, S]`` and the deterministic belief ``[*N, D]``.

    A tuple, so ``state, belief = latent`` works wherever the pair is expected.
    """

    state: torch.Tensor
    belief: torch.Tensor

    @classmethod
    def from_tensordict(cls, td: TensorDictBase, state_key="state", belief_key="belief") -> "LatentState":
        return cls(td.get(state_key), td.get(belief_key))

    def features(self) -> torch.Tensor:
        return features(self.state, self.belief)

    def detach(self) -> "LatentState":
        return LatentState(self.state.detach(), self.belief.detach())

    def flatten(self) -> "LatentState":
        """All batch dims into one: ``[*B, X]`` -> ``[N, X]``."""
        return LatentState(self.state.reshape(-1, self.state.shape[-1]), self.belief.reshape(-1, self.belief.shape[-1]))


def param_keys(prefix: str, names: tuple[str, ...]) -> list[str]:
    """TensorDict keys of a distribution's parameters: ``("prior", ("mean", "std"))`` -> prior_mean, prior_std."""
    return [f"{prefix}_{n}" for n in names]


class GaussianLatent:
    """Diagonal Gaussian over s_t: mean, std = softplus(x) + ``min_std`` (official V1 ``RSSM``, min_std 0.1).

    Args:
        size: S, the dimension of s_t.
        min_std: added to softplus of the raw std.
    """

    names = ("mean", "std")

    def __init__(self, size: int, min_std: float = 0.1):
        self.size, self.min_std = size, min_std

    @property
    def param_dim(self) -> int:
        """Width of the raw layer output this family reads."""
        return 2 * self.size

    @property
    def sample_dim(self) -> int:
        """Width of a sample s_t."""
        return self.size

    def params(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, std = raw.chunk(2, -1)
        return {"mean": mean, "std": F.softplus(std) + self.min_std}

    def sample(self, params: dict[str, torch.Tensor], noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps; ``noise`` (standard normal) replaces eps when given."""
        mean, std = params["mean"], params["std"]
        eps = torch.randn_like(mean) if noise is None else noise
        return mean + std * eps

    def mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["mean"]

    def kl(self, q: dict[str, torch.Tensor], p: dict[str, torch.Tensor]) -> torch.Tensor:
        """KL(q || p) summed over S: log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2."""
        mean_q, std_q, mean_p, std_p = q["mean"], q["std"], p["mean"], p["std"]
        kl = torch.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5
        return kl.sum(-1)

    def entropy(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over S of 1/2 log(2 pi e std^2)."""
        return (torch.log(params["std"]) + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def log_prob(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        """log N(value | mean, std) summed over S."""
        return normal_log_prob(value, params["mean"], params["std"]).sum(-1)

    def pairwise_log_prob(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        """``out[i, j] = log p_j(value_i)`` for every pair of N rows: params ``[N, S]``, value ``[N, S]`` -> ``[N, N]``.

        Expanded into matrix products so memory is O(N^2), not O(N^2 S):
        sum_s -(x_is - m_js)^2 / (2 v_js) - log std_js - 1/2 log 2 pi, with v = std^2.
        """
        mean, std = params["mean"], params["std"]
        inv_var = std.pow(-2)                                                          # (N, S)
        quad = value.pow(2) @ inv_var.T - 2 * value @ (mean * inv_var).T + (mean.pow(2) * inv_var).sum(-1)
        log_norm = torch.log(std).sum(-1) + 0.5 * value.shape[-1] * math.log(2 * math.pi)           # (N,)
        return -0.5 * quad - log_norm                                                  # (N, N)


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim, written out: several times faster than ``torch.softmax`` on CPU when that
    dim is a handful of classes (V3 size1m: 4)."""
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


class CategoricalLatent:
    """G independent categoricals of C classes, sampled as one-hot vectors (DreamerV2, arXiv:2010.02193, Sec. 2
    and Algorithm 1; DreamerV3, arXiv:2301.04104, Sec. 3).

    - unimix: probs = (1 - u) softmax(raw) + u / C per group (V3: u = 0.01), so every class keeps at least
      u / C; the stored parameter "logits" is log(probs), flattened to ``[*N, G * C]`` (the official 2023
      code stores the mixed log-probabilities the same way).
    - sample: a one-hot draw per group with straight-through gradients, onehot + probs - sg(probs)
      (V2 Algorithm 1): the forward value is exactly one-hot, the gradient is that of probs.
    - mode: the one-hot argmax per group, with the same straight-through gradient (official V3 ``OneHot.pred``).
    - kl, entropy, log_prob: summed over the G groups.

    Args:
        groups: G (V2/V3: 32).
        classes: C (V2/V3 default: 32; V3 size1m: 4).
        unimix: u, the uniform share (V3: 0.01; V2: 0).

    Shapes: raw and "logits" ``[*N, G * C]``; samples ``[*N, G * C]`` (group-major); kl/entropy ``[*N]``.
    """

    names = ("logits",)

    def __init__(self, groups: int = 32, classes: int = 32, unimix: float = 0.01):
        if not 0.0 <= unimix < 1.0:
            raise ValueError(f"unimix must be in [0, 1), got {unimix}")
        self.groups, self.classes, self.unimix = groups, classes, unimix

    @property
    def param_dim(self) -> int:
        return self.groups * self.classes

    @property
    def sample_dim(self) -> int:
        return self.groups * self.classes

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.groups, self.classes))                       # (*N, G, C)

    def params(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self._grouped(raw)
        if self.unimix:
            probs = (1 - self.unimix) * _softmax(logits) + self.unimix / self.classes
            logits = torch.log(probs)
        else:
            logits = F.log_softmax(logits, -1)
        return {"logits": logits.flatten(-2)}

    def probs(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The (mixed) class probabilities ``[*N, G * C]``."""
        return params["logits"].exp()

    def _straight_through(self, index: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(index, self.classes).to(logits.dtype)
        if not (torch.is_grad_enabled() and logits.requires_grad):  # no gradient to pass through
            return onehot.flatten(-2)
        probs = logits.exp()
        return (onehot + (probs - probs.detach())).flatten(-2)  # bracketed: the forward value is exactly one-hot

    def sample(self, params: dict[str, torch.Tensor], noise: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot draw per group with straight-through gradients, by the Gumbel-max trick.

        ``noise`` (standard normal ``[*N, G * C]``, as for the Gaussian family) replaces the random draw when
        given: it is mapped to uniforms by the normal CDF, then to Gumbel noise, so the sample stays exact.
        """
        logits = self._grouped(params["logits"])
        if noise is None:
            uniform = torch.rand_like(logits)
        else:
            uniform = torch.special.ndtr(self._grouped(noise).to(logits.dtype))
        tiny = torch.finfo(logits.dtype).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp(tiny, 1 - torch.finfo(logits.dtype).eps)))
        index = (logits.detach() + gumbel).argmax(-1)
        return self._straight_through(index, logits)

    def mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self._grouped(params["logits"])
        return self._straight_through(logits.detach().argmax(-1), logits)

    def kl(self, q: dict[str, torch.Tensor], p: dict[str, torch.Tensor]) -> torch.Tensor:
        """KL(q || p) = sum over groups and classes of q_i (log q_i - log p_i): ``[*N]``."""
        log_q, log_p = q["logits"], p["logits"]
        return (log_q.exp() * (log_q - log_p)).sum(-1)

    def entropy(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """-sum over groups and classes of p_i log p_i: ``[*N]``."""
        logits = params["logits"]
        return -(logits.exp() * logits).sum(-1)

    def log_prob(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        """log p of a one-hot ``value`` ``[*N, G * C]``, summed over groups: ``[*N]``."""
        return (value * params["logits"]).sum(-1)

    def pairwise_log_prob(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        """``out[i, j] = log p_j(value_i)`` for every pair of N rows (one-hot values): ``[N, G * C]`` -> ``[N, N]``."""
        return value @ params["logits"].T
