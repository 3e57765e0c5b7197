"""Representation objectives of the world model (Dreamer, arXiv:1912.01603, Sec. 4 and Fig. 8).

Each objective returns its named loss terms from the world model's output; :class:`WorldModelLoss` adds
the reward and KL terms and scales them all:

- ``reconstruction`` (the default): -log p(o_t | s_t, h_t) from the decoder head (Eq. 10's J_O);
- ``contrastive``: the InfoNCE bound with a state model q(s_t | o_t) (Sec. 4, "contrastive estimation"):
  -[ln q(s_t | o_t) - ln sum_{o'} q(s_t | o')], each state scored against every observation of the batch,
  for any latent family (Gaussian: V1's; one-hot categoricals: V2/V3's, a decoder-free DreamerV3);
- ``reward``: no observation term (reward and KL only; no observation model).

Shapes: rows ``[*B, T]`` flattened to N = B*T where the contrastive bound needs the whole batch.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

from dreamer_trl import keys
from dreamer_trl.model.latent import GaussianLatent


def contrastive_log_scores(state: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``scores[i, j] = log N(state_i | mean_j, std_j)`` summed over S, for every pair: ``[N, S]`` x3 -> ``[N, N]``
    (:meth:`~dreamer_trl.model.latent.GaussianLatent.pairwise_log_prob`)."""
    return GaussianLatent(state.shape[-1]).pairwise_log_prob({"mean": mean, "std": std}, state)


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
        if world_model.state_model is None:
            raise ValueError("the contrastive objective needs a world model with a state model q(s_t | o_t)")
        embed = tensordict.get(keys.ENCODED_LATENTS)
        state = tensordict.get(keys.STATE)
        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (B, T, .) -> (N, .)
        q = {k: flat(v) for k, v in latent.params(world_model.state_model(embed)).items()}
        return {"contrast": info_nce(latent.pairwise_log_prob(q, flat(state)))}


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
