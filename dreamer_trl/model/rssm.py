"""Recurrent state-space model (RSSM) of Dreamer V1 / PlaNet on plain tensors.

Hafner et al. 2019 (PlaNet, arXiv:1811.04551, Sec. 3) and 2020 (Dreamer, arXiv:1912.01603, Eq. 1):

    deterministic belief  h_t = f(h_{t-1}, s_{t-1}, a_{t-1})        (GRU, 200 units)
    prior                 p(s_t | h_t)
    posterior             q(s_t | h_t, o_t)

over any latent family of :mod:`dreamer_trl.model.latent` (V1: ``GaussianLatent``, N(mu, softplus(sigma) + 0.1)).

The time loops (:meth:`RSSM.observe`, :meth:`RSSM.imagine`) run on tensors inside one call; everything
that does not depend on the recurrence (the embedding and action projections, the prior head during
observation) is computed for all steps at once, outside the loop.

Shapes:
    B batch, T time, H horizon, S state (30), D belief (200), A action, E embedding.
    ``observe``: embed ``[B, T, E]``, prev_action ``[B, T, A]``, is_init ``[B, T, 1]`` ->
    "state", "belief", "prior_<param>", "posterior_<param>" ``[B, T, .]`` (Gaussian: mean, std).
    ``imagine``: state ``[N, S]``, belief ``[N, D]`` -> ``[N, H, S|D|A]``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.latent import GaussianLatent, LatentState
from dreamer_trl.model.networks import keras_init_


class RecurrentStateSpaceModel(nn.Module):
    """What every RSSM of the family shares: the zero start, filtering a sequence, rolling the prior forward.

    A subclass provides ``prior(belief)``, ``prior_step(state, belief, action, noise)``,
    ``posterior_step(belief, embed_proj)``, ``obs_embed`` (the embedding's share of the posterior's first
    layer), and the two parts of one belief update during filtering: ``_project_actions(actions)`` (what
    depends on the actions alone, computed for all steps at once) and ``_belief_step(state, belief,
    action_proj)``; and the attributes ``latent``, ``state_dim``, ``belief_dim``, ``action_dim``.
    """

    @property
    def feature_dim(self) -> int:
        return self.state_dim + self.belief_dim

    def initial(self, batch_shape: torch.Size | tuple, device=None, dtype=None) -> LatentState:
        """Zero state and belief, the start of every episode."""
        z = dict(device=device, dtype=dtype)
        return LatentState(torch.zeros(*batch_shape, self.state_dim, **z), torch.zeros(*batch_shape, self.belief_dim, **z))

    def observe_step(self, state, belief, prev_action, embed, is_init):
        """One filtering step as the acting policy uses it: :meth:`observe` on a length-1 sequence."""
        out = self.observe(embed.unsqueeze(-2), prev_action.unsqueeze(-2), is_init.unsqueeze(-2), state, belief)
        return out["state"].squeeze(-2), out["belief"].squeeze(-2)

    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_init: torch.Tensor,
                state: torch.Tensor | None = None, belief: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Filter a sequence: chain (s, h) across time, restart from zeros (and a zero action) where ``is_init``.

        Row t uses the action a_{t-1} that led to o_t (``prev_action``), as the official code does.
        Returns "state", "belief" and the prior's and posterior's parameters, "prior_<name>" and
        "posterior_<name>" (the prior computed for all t at once after the loop).
        """
        B, T = embed.shape[:-1], embed.shape[-2]
        assert prev_action.shape[:-1] == B and is_init.shape[:-1] == B, (embed.shape, prev_action.shape, is_init.shape)
        if (state is None) != (belief is None):
            raise ValueError("give both the carried state and belief, or neither (start from zeros)")
        if state is None:
            state, belief = self.initial(B[:-1], embed.device, embed.dtype)
        keep = (~is_init.bool()).to(embed.dtype)                                  # (B, T, 1)
        action_proj = self._project_actions(prev_action * keep)                   # (B, T, hidden)
        embed_proj = self.obs_embed(embed)                                        # (B, T, hidden)
        beliefs, states = [], []
        posterior: dict[str, list[torch.Tensor]] = {n: [] for n in self.latent.names}
        for t in range(T):
            k = keep[..., t, :]
            state, belief = state * k, belief * k
            belief = self._belief_step(state, belief, action_proj[..., t, :])
            params, state = self.posterior_step(belief, embed_proj[..., t, :])
            beliefs.append(belief)
            states.append(state)
            for n in self.latent.names:
                posterior[n].append(params[n])
        belief = torch.stack(beliefs, -2)                                         # (B, T, D)
        out = {"state": torch.stack(states, -2), "belief": belief}
        out.update({f"prior_{n}": v for n, v in self.prior(belief).items()})       # (B, T, S)
        out.update({f"posterior_{n}": torch.stack(v, -2) for n, v in posterior.items()})
        return out

    def imagine(self, state: torch.Tensor, belief: torch.Tensor,
                policy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], horizon: int) -> dict[str, torch.Tensor]:
        """Roll the prior forward ``horizon`` steps with actions from ``policy(state, belief)``.

        Returns the imagined s_1..s_H, h_1..h_H and a_0..a_{H-1}, each ``[N, H, .]``.
        Gradients flow through the sampled states into the actions (Dreamer, Sec. 4).
        """
        states, beliefs, actions = [], [], []
        for _ in range(horizon):
            action = policy(state, belief)
            _, state, belief = self.prior_step(state, belief, action)
            states.append(state)
            beliefs.append(belief)
            actions.append(action)
        return {"state": torch.stack(states, -2), "belief": torch.stack(beliefs, -2), "action": torch.stack(actions, -2)}


class RSSM(RecurrentStateSpaceModel):
    """RSSM with a GRU belief (official Dreamer V1 ``RSSM``: img_step / obs_step).

    Args:
        action_dim, embed_dim: A and E.
        state_dim, belief_dim, hidden_dim: S, D and the hidden width (V1: 30, 200, 200).
        min_std: the Gaussian latent's minimum std, used when ``latent`` is None.
        latent: the latent distribution family (default ``GaussianLatent(state_dim, min_std)``).
    """

    def __init__(self, action_dim: int, embed_dim: int, state_dim: int = 30, belief_dim: int = 200,
                 hidden_dim: int = 200, min_std: float = 0.1, latent=None):
        super().__init__()
        self.latent = latent or GaussianLatent(state_dim, min_std)
        self.state_dim, self.belief_dim, self.action_dim = self.latent.sample_dim, belief_dim, action_dim
        # The official code's initialisation (:func:`~dreamer_trl.model.networks.keras_init_`), each layer as it is
        # built. The posterior's first layer is one Dense on concat(h_t, e_t) there; its two halves here share
        # the Glorot bound of the joint layer (fan_in = D + E).
        self.img_in = keras_init_(nn.Linear(self.state_dim + action_dim, hidden_dim))
        self.gru = keras_init_(nn.GRUCell(hidden_dim, belief_dim))
        self.img_out = nn.Sequential(keras_init_(nn.Linear(belief_dim, hidden_dim)), nn.ELU(),
                                     keras_init_(nn.Linear(hidden_dim, self.latent.param_dim)))
        # Posterior first layer acts on concat(h_t, e_t); split so the e_t part runs once for all t.
        self.obs_belief = nn.Linear(belief_dim, hidden_dim, bias=False)
        self.obs_embed = nn.Linear(embed_dim, hidden_dim)
        joint = torch.empty(hidden_dim, belief_dim + embed_dim)
        nn.init.xavier_uniform_(joint)
        with torch.no_grad():
            self.obs_belief.weight.copy_(joint[:, :belief_dim])
            self.obs_embed.weight.copy_(joint[:, belief_dim:])
            self.obs_embed.bias.zero_()
        self.obs_out = keras_init_(nn.Linear(hidden_dim, self.latent.param_dim))

    def _gru(self, x: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.gru(F.elu(x), belief)

    def _project_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """The actions' share of the input layer, W_a a + b, for all steps at once (filtering)."""
        return F.linear(actions, self.img_in.weight[:, self.state_dim :], self.img_in.bias)

    def _belief_step(self, state: torch.Tensor, belief: torch.Tensor, action_proj: torch.Tensor) -> torch.Tensor:
        """h' = GRU(ELU(W_s s + W_a a + b), h) with the action part precomputed (filtering)."""
        return self._gru(F.linear(state, self.img_in.weight[:, : self.state_dim]) + action_proj, belief)

    def prior(self, belief: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameters of p(s_t | h_t)."""
        return self.latent.params(self.img_out(belief))

    def prior_step(self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor,
                   noise: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One imagination step: h' = f(h, s, a), s' ~ p(s' | h'). Returns (prior params, s', h').

        The same function drives :class:`~dreamer_trl.behavior.imagination.ImaginationEnv` and :meth:`imagine`.
        ``noise`` (standard normal, ``[*N, S]``) replaces the sampled epsilon when given.
        """
        belief = self._gru(self.img_in(torch.cat([state, action], -1)), belief)
        params = self.prior(belief)
        return params, self.latent.sample(params, noise), belief

    def posterior_step(self, belief: torch.Tensor, embed_proj: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """q(s_t | h_t, o_t) from the belief and the projected embedding ``obs_embed(e_t)``: (params, s_t)."""
        params = self.latent.params(self.obs_out(F.elu(self.obs_belief(belief) + embed_proj)))
        return params, self.latent.sample(params)
