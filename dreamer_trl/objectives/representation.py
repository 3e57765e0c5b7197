"""Representation objectives of the world model (Dreamer, arXiv:1912.01603, Sec. 4 and Fig. 8).

Each objective returns its named loss terms from the world model's output; :class:`WorldModelLoss` adds
the reward and KL terms and scales them all:

- ``reconstruction`` (the default): -log p(o_t | s_t, h_t) from the decoder head (Eq. 10's J_O);
- ``contrastive``: the InfoNCE bound with a state model q(s_t | o_t) (Sec. 4, "contrastive estimation"):
  -[ln q(s_t | o_t) - ln sum_{o'} q(s_t | o')], each state scored against every observation of the batch;
- ``reward``: no observation term (reward and KL only; no observation model).

Shapes: rows ``[*B, T]`` flattened to N = B*T where the contrastive bound needs the whole batch.
"""
from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase

from dreamer_trl import keys
from dreamer_trl.model.latent import GaussianLatent


def contrastive_log_scores(state: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``scores[i, j] = log N(state_i | mean_j, std_j)`` summed over S, for every pair: ``[N, S]`` x3 -> ``[N, N]``.

    Expanded into matrix products so memory is O(N^2), not O(N^2 S):
    sum_s -(x_is - m_js)^2 / (2 v_js) - log std_js - 1/2 log 2 pi, with v = std^2.
    """
    inv_var = std.pow(-2)                                                          # (N, S)
    quad = state.pow(2) @ inv_var.T - 2 * state @ (mean * inv_var).T + (mean.pow(2) * inv_var).sum(-1)
    log_norm = torch.log(std).sum(-1) + 0.5 * state.shape[-1] * math.log(2 * math.pi)           # (N,)
    return -0.5 * quad - log_norm                                                  # (N, N)


def info_nce(scores: torch.Tensor) -> torch.Tensor:
    """Mean over rows i of -(scores[i, i] - logsumexp_j scores[i, j]): the InfoNCE bound as a loss."""
    return (torch.logsumexp(scores, -1) - scores.diagonal()).mean()


class Reconstruction:
    """-log p(o | s, h): the decoder head's NLL, averaged over rows (term "reco")."""

    terms = ("reco",)

    def __call__(self, world_model, tensordict: TensorDictBase, target: torch.Tensor,
                 reco_key: str | None = None) -> dict[str, torch.Tensor]:
        decoder = world_model.decoder
        if decoder is None:
            raise ValueError("the reconstruction objective needs a world model with a decoder")
        reco_key = reco_key or world_model.reco_key
        reco = tensordict.get(reco_key, None)
        if reco is None:
            raise KeyError(f"reconstruction objective: no {reco_key!r} in the world model's output")
        return {"reco": decoder.mean_nll(reco, target)}


class Contrastive:
    """InfoNCE with the state model q(s_t | o_t) on the observation embedding (term "contrast")."""

    terms = ("contrast",)

    def __call__(self, world_model, tensordict: TensorDictBase, target: torch.Tensor,
                 reco_key: str | None = None) -> dict[str, torch.Tensor]:
        latent = world_model.rssm.latent
        if world_model.state_model is None or not isinstance(latent, GaussianLatent):
            raise ValueError("the contrastive objective needs a world model with a state model and Gaussian latents")
        embed = tensordict.get(keys.ENCODED_LATENTS)
        state = tensordict.get(keys.STATE)
        q = latent.params(world_model.state_model(embed))
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (B, T, S) -> (N, S)
        return {"contrast": info_nce(contrastive_log_scores(flat(state), flat(q["mean"]), flat(q["std"])))}


class RewardOnly:
    """No observation term: the representation learns from the reward and KL terms only."""

    terms = ()

    def __call__(self, world_model, tensordict: TensorDictBase, target: torch.Tensor,
                 reco_key: str | None = None) -> dict[str, torch.Tensor]:
        return {}


REPRESENTATIONS = {"reconstruction": Reconstruction, "contrastive": Contrastive, "reward": RewardOnly}


def make_representation(name: str):
    if name not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}, got {name!r}")
    return REPRESENTATIONS[name]()
