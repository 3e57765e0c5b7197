"""Behaviours: what maps a latent state (s_t, h_t) to an action, and the value model.

A behaviour is any TensorDictModule reading "state", "belief" and writing "action"; the acting policy
(:func:`~dreamer_trl.behavior.policy.make_policy`) puts it after the filter, and imagination calls its module on
tensors. Dreamer's behaviour is the actor; PlaNet's planner is another.

- :class:`TanhNormal` / :class:`TanhNormalActor`: Dreamer V1's tanh-Gaussian actor on (state, belief).

Every actor samples under exploration type RANDOM or unset and acts with its mode under DETERMINISTIC/MODE/MEAN;
its input features are detached. ``actor.module.dist(state, belief)`` gives the distribution (sample, mode,
log_prob, entropy).
- :class:`BoundedNormal` / :class:`BoundedNormalActor`: DreamerV3's continuous actor, N(tanh(m), sigma)
  with sigma in [min_std, max_std] (official ``bounded_normal``: (max - min) * sigmoid(x + 2) + min).
- :class:`TruncNormalActor`: DreamerV2's continuous actor, N(tanh(m), 2 sigmoid(s / 2) + min_std) truncated to
  [-1, 1] (:class:`~dreamer_trl.model.trunc_normal.TruncatedNormal`).

Shapes: "state" ``[*N, S]``, "belief" ``[*N, D]``, "action" ``[*N, A]``, "state_value" ``[*N, 1]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchrl.envs.utils import ExplorationType, exploration_type

from dreamer_trl.model.latent import NormalParams, normal_log_prob, on_features
from dreamer_trl.model.trunc_normal import TruncatedNormal


def deterministic() -> bool:
    """True under the exploration types that ask for the mode (evaluation)."""
    return exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)


class TanhNormalActor(nn.Module):
    """(state, belief) -> action with Dreamer V1's tanh-transformed Gaussian (official ``ActionDecoder``,
    ``dist='tanh_normal'``): mean = s tanh(x / s) with ``mean_scale`` s = 5 (0: the raw mean, TorchRL's actor),
    std = softplus(y + softplus^-1(init_std)) + min_std with ``init_std`` 5.

    Args:
        net: features ``[*N, F]`` -> ``[*N, 2A]`` (mean and std pre-activations; V1: 4 x 400 ELU).
    Samples (reparameterised, ``tanh(mean + std * eps)``) under exploration RANDOM (or unset), the mode
    ``tanh(mean)`` under DETERMINISTIC/MODE/MEAN; features detached (imagination starts are stop-gradient,
    official ``_imagine_ahead``; the actor's own gradient comes through the actions).
    """

    def __init__(self, net: nn.Module, mean_scale: float = 5.0, init_std: float = 5.0, min_std: float = 1e-4):
        super().__init__()
        self.net = net
        self.mean_scale = mean_scale
        self.raw_init_std = math.log(math.expm1(init_std))
        self.min_std = min_std

    def squash(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLP's raw output ``[*N, 2A]`` to the pre-tanh Gaussian's (mean, std)."""
        mean, std = raw.chunk(2, -1)
        if self.mean_scale > 0:
            mean = self.mean_scale * torch.tanh(mean / self.mean_scale)
        return mean, F.softplus(std + self.raw_init_std) + self.min_std

    def dist(self, state: torch.Tensor, belief: torch.Tensor) -> "TanhNormal":
        return TanhNormal(*self.squash(on_features(self.net, state.detach(), belief.detach())))

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        dist = self.dist(state, belief)
        return dist.mode() if deterministic() else dist.rsample()


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


class BoundedNormal(NormalParams):
    """N(mean, std) per action dim, summed over dims: rsample, mode (the mean), log_prob, entropy (closed form).

    Samples are not squashed: the env clips them to the action bounds (official DreamerV3).
    Shapes: mean, std ``[*N, A]``; actions ``[*N, A]``; log_prob and entropy ``[*N]``.
    """

    def rsample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(action, self.mean, self.std).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)


class BoundedNormalActor(nn.Module):
    """(state, belief) -> action with :class:`BoundedNormal`: mean = tanh(x), std = (max - min) sigmoid(y + 2) + min.

    Args:
        net: features ``[*N, F]`` -> ``[*N, 2A]`` (mean and std pre-activations; DreamerV3 scales its output
            layer by 0.01).
        min_std, max_std: DreamerV3's 0.1 and 1.0.
    Samples under exploration RANDOM (or unset), the mean under DETERMINISTIC/MODE/MEAN; features detached.
    """

    def __init__(self, net: nn.Module, min_std: float = 0.1, max_std: float = 1.0):
        super().__init__()
        self.net, self.min_std, self.max_std = net, min_std, max_std

    def dist(self, state: torch.Tensor, belief: torch.Tensor) -> BoundedNormal:
        mean, std = on_features(self.net, state.detach(), belief.detach()).chunk(2, -1)
        return BoundedNormal(torch.tanh(mean), (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std)

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        dist = self.dist(state, belief)
        return dist.mode() if deterministic() else dist.rsample()


class TruncNormalActor(nn.Module):
    """(state, belief) -> action in [-1, 1] with DreamerV2's truncated normal: loc = tanh(x),
    scale = 2 sigmoid(y / 2) + min_std, truncated to [-1, 1], draws clipped to [-1 + clip, 1 - clip] straight-through.

    danijar/dreamerv2 at 07d906e: ``agent.py`` ``ActorCritic.__init__`` (``actor.dist: auto`` is ``trunc_normal``
    for continuous actions), ``common/nets.py`` ``DistLayer.__call__`` (``trunc_normal``: the mean and std layers,
    ``init_std`` 0, ``min_std`` 0.1 from ``configs.yaml`` ``actor``), ``common/dists.py`` ``TruncNormalDist``.

    Args:
        net: features ``[*N, F]`` -> ``[*N, 2A]`` (mean and std pre-activations).
        min_std: V2's 0.1. clip: V2's 1e-6.
    Same interface as :class:`BoundedNormalActor`: samples under exploration RANDOM (or unset), the mode (loc)
    under DETERMINISTIC/MODE/MEAN (V2 evaluates with ``actor(feat).mode()``); features detached.
    """

    def __init__(self, net: nn.Module, min_std: float = 0.1, clip: float = 1e-6):
        super().__init__()
        self.net, self.min_std, self.clip = net, min_std, clip

    def dist(self, state: torch.Tensor, belief: torch.Tensor) -> TruncatedNormal:
        mean, std = on_features(self.net, state.detach(), belief.detach()).chunk(2, -1)
        return TruncatedNormal(torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std, -1.0, 1.0,
                               clip=self.clip)

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        dist = self.dist(state, belief)
        return dist.mode() if deterministic() else dist.rsample()


class OneHotCategorical:
    """Categorical over A actions with DreamerV3's 1% unimix, acting with one-hot vectors: rsample is the one-hot
    draw with straight-through gradients, mode the one-hot argmax; log_prob of a one-hot action; entropy.

    Shapes: logits ``[*N, A]`` (already mixed: log of (1 - u) softmax + u / A); actions ``[*N, A]``; log_prob and
    entropy ``[*N]``.
    """

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def _one_hot(self, index: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(index, self.logits.shape[-1]).to(self.logits.dtype)
        return onehot + (self.probs - self.probs.detach())  # forward: exactly one-hot

    def rsample(self) -> torch.Tensor:
        index = torch.multinomial(self.probs.detach().reshape(-1, self.logits.shape[-1]), 1)
        return self._one_hot(index.reshape(self.logits.shape[:-1]))

    def mode(self) -> torch.Tensor:
        return self._one_hot(self.logits.detach().argmax(-1))

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return (action * self.logits).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)


class OneHotActor(nn.Module):
    """(state, belief) -> one-hot action for discrete action spaces (DreamerV3: categorical policy with 1% unimix,
    trained by REINFORCE). ``net``: features -> ``[*N, A]`` logits. Same interface as :class:`BoundedNormalActor`."""

    def __init__(self, net: nn.Module, unimix: float = 0.01):
        super().__init__()
        self.net, self.unimix = net, unimix

    def dist(self, state: torch.Tensor, belief: torch.Tensor) -> OneHotCategorical:
        logits = on_features(self.net, state.detach(), belief.detach())
        probs = (1 - self.unimix) * torch.softmax(logits, -1) + self.unimix / logits.shape[-1]
        return OneHotCategorical(torch.log(probs))

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        dist = self.dist(state, belief)
        return dist.mode() if deterministic() else dist.rsample()
