"""Behaviours: what maps a latent state (s_t, h_t) to an action, and the value model.

A behaviour is any TensorDictModule reading "state", "belief" and writing "action"; the acting policy
(:func:`~dreamer_trl.policy.make_policy`) puts it after the filter, and imagination calls its module on
tensors. Dreamer's behaviour is the actor; PlaNet's planner is another.

- :func:`make_actor`: tanh-Gaussian actor (Dreamer V1). It samples under exploration type RANDOM or unset,
  and acts with the mode ``tanh(mean)`` under DETERMINISTIC/MODE/MEAN. Its input features are detached
  (imagination starts are stop-gradient, and the actor's own gradient comes through the actions).
  ``actor.module.dist(state, belief)`` gives the distribution (sample, mode, log_prob, entropy).
- :func:`make_value`: "state", "belief" -> "state_value", the mean of N(v, 1).

Shapes: "state" ``[*N, S]``, "belief" ``[*N, D]``, "action" ``[*N, A]``, "state_value" ``[*N, 1]``.
"""
from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, exploration_type

from dreamer_trl import keys
from dreamer_trl.config import ModelConfig
from dreamer_trl.heads import NormalHead
from dreamer_trl.latent import features
from dreamer_trl.networks import ScalarHead, TanhNormal, TanhNormalActor


def deterministic() -> bool:
    """True under the exploration types that ask for the mode (evaluation)."""
    return exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)


class ActorFromFeatures(nn.Module):
    """(state, belief) -> action; stop-gradient on the features (official ``_imagine_ahead``)."""

    def __init__(self, net: TanhNormalActor):
        super().__init__()
        self.net = net

    def dist(self, state: torch.Tensor, belief: torch.Tensor) -> TanhNormal:
        return self.net.dist(features(state, belief).detach())

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.net(features(state, belief).detach(), deterministic=deterministic())


def make_actor(feature_dim: int, action_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """Dreamer V1 action model (4x400 ELU, mean scale 5 (``cfg.actor_mean_scale``), init std 5) as a TensorDictModule."""
    cfg = cfg or ModelConfig()
    net = TanhNormalActor(feature_dim, action_dim, cfg.mlp_hidden, cfg.actor_layers, mean_scale=cfg.actor_mean_scale)
    return TensorDictModule(ActorFromFeatures(net), in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.ACTION])


def make_value(feature_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """Dreamer V1 value model (3x400 ELU, the mean of N(v, 1)) as a TensorDictModule writing "state_value"."""
    cfg = cfg or ModelConfig()
    head = NormalHead(ScalarHead(feature_dim, cfg.mlp_hidden, cfg.value_layers))
    return TensorDictModule(head, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.STATE_VALUE])
