"""The KL terms of the world-model loss, for any latent family of :mod:`dreamer_trl.model.latent`.

q = posterior, p = prior, sg = stop-gradient, KL summed over the latent and averaged over the ``[B, T]`` rows.

- V1 (Dreamer, arXiv:1912.01603, Eq. 10; official ``free_nats``): max(free, mean KL[q || p]) — the clamp acts
  on the batch mean. :func:`free_nats_kl`, :class:`FreeNatsKL` (term "kl").
- V2 KL balancing (DreamerV2, arXiv:2010.02193, Algorithm 2; official ``nets.RSSM.kl_loss``):

      alpha * max(free, mean KL[sg(q) || p]) + (1 - alpha) * max(free, mean KL[q || sg(p)]),   alpha = 0.8

  The prior is trained toward the posterior at alpha, the posterior toward the prior at 1 - alpha; both
  values are the same number, only the gradients differ. The official config ``kl.free_avg: True`` clamps
  each side's batch mean (``free_avg: False``: each element, then the mean). At balance 0.5 the official
  code instead takes the plain KL[q || p] (full gradient to both) clamped per element, whatever
  ``free_avg``; this follows it. :func:`balanced_kl`, :class:`BalancedKL` (term "kl").
- V3 (DreamerV3, arXiv:2301.04104, "World model learning": L_dyn and L_rep with free bits; official
  ``rssm.RSSM.loss``):

      dyn = mean max(free, KL[sg(q) || p])       rep = mean max(free, KL[q || sg(p)])      free = 1 nat

  returned as two named terms so each gets its own scale (current official 1.0 / 0.1; 2023 paper 0.5 / 0.1).
  The official code (both the 2023 ``nets.RSSM.dyn_loss/rep_loss`` and the current ``rssm.RSSM.loss``)
  clamps each ``[B, T]`` element before the loss is averaged, so a row below the threshold contributes no
  gradient while the others still do. :func:`dyn_rep_kl`, :class:`DynRepKL` (terms "dyn", "rep").

The term classes share one call, ``terms(latent, posterior, prior) -> {name: scalar}``, and list their names
in ``.terms`` so :class:`~dreamer_trl.objectives.world_model_loss.WorldModelLoss` can check them against its scales.
"""
from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


def stop_gradient(params: Params) -> Params:
    """sg(.) of a distribution: every parameter detached."""
    return {k: v.detach() for k, v in params.items()}


def free_nats_kl(kl: torch.Tensor, free: float) -> torch.Tensor:
    """max(free, mean KL): V1's clamp on the batch mean, as the official code does (Dreamer Eq. 10 with free nats).

    Clamping each element instead (TorchRL's default) zeroes the KL gradient while most elements are
    below the threshold, e.g. at initialisation.
    """
    return kl.mean().clamp_min(free)


def _clamped_mean(kl: torch.Tensor, free: float, per_element: bool) -> torch.Tensor:
    return kl.clamp_min(free).mean() if per_element else kl.mean().clamp_min(free)


def balanced_kl(latent, posterior: Params, prior: Params, balance: float = 0.8, free: float = 0.0,
                free_avg: bool = True) -> torch.Tensor:
    """DreamerV2 KL balancing: balance * max(free, KL[sg(q)||p]) + (1 - balance) * max(free, KL[q||sg(p)]).

    Args:
        latent: the latent family (its ``kl(q, p)`` returns ``[B, T]``).
        posterior, prior: parameter dicts of q and p.
        balance: alpha, the prior's share (V2: 0.8).
        free: free nats (V2 default 0, dmc 1.0).
        free_avg: clamp the batch mean of each side (V2 default True) rather than each element.

    At ``balance == 0.5`` the official code's special case: mean max(free, KL[q || p]) per element.
    """
    if balance == 0.5:  # the official special case: no stop-gradients, per-element clamp
        return latent.kl(posterior, prior).clamp_min(free).mean()
    prior_side = latent.kl(stop_gradient(posterior), prior)      # trains the prior
    posterior_side = latent.kl(posterior, stop_gradient(prior))  # trains the posterior
    per_element = not free_avg
    return (balance * _clamped_mean(prior_side, free, per_element)
            + (1 - balance) * _clamped_mean(posterior_side, free, per_element))


def dyn_rep_kl(latent, posterior: Params, prior: Params, free: float = 1.0) -> dict[str, torch.Tensor]:
    """DreamerV3: {"dyn": mean max(free, KL[sg(q)||p]), "rep": mean max(free, KL[q||sg(p)])}, clamped per row.

    "dyn" trains only the prior (dynamics predictor), "rep" only the posterior (representation).
    """
    dyn = latent.kl(stop_gradient(posterior), prior)
    rep = latent.kl(posterior, stop_gradient(prior))
    return {"dyn": dyn.clamp_min(free).mean(), "rep": rep.clamp_min(free).mean()}


class FreeNatsKL:
    """V1: {"kl": max(free, mean KL[q || p])} (Dreamer free nats 3)."""

    terms = ("kl",)

    def __init__(self, free: float = 3.0):
        self.free = free

    def __call__(self, latent, posterior: Params, prior: Params) -> dict[str, torch.Tensor]:
        return {"kl": free_nats_kl(latent.kl(posterior, prior), self.free)}


class BalancedKL:
    """V2: {"kl": :func:`balanced_kl`} (official dmc: balance 0.8, free 1.0, free_avg True)."""

    terms = ("kl",)

    def __init__(self, balance: float = 0.8, free: float = 0.0, free_avg: bool = True):
        if not 0.0 <= balance <= 1.0:
            raise ValueError(f"KL balance must be in [0, 1], got {balance}")
        self.balance, self.free, self.free_avg = balance, free, free_avg

    def __call__(self, latent, posterior: Params, prior: Params) -> dict[str, torch.Tensor]:
        return {"kl": balanced_kl(latent, posterior, prior, self.balance, self.free, self.free_avg)}


class DynRepKL:
    """V3: {"dyn", "rep"} of :func:`dyn_rep_kl` (free 1 nat); scale them as named terms."""

    terms = ("dyn", "rep")

    def __init__(self, free: float = 1.0):
        self.free = free

    def __call__(self, latent, posterior: Params, prior: Params) -> dict[str, torch.Tensor]:
        return dyn_rep_kl(latent, posterior, prior, self.free)
