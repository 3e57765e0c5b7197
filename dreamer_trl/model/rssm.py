"""The recurrent state-space model (RSSM) of the whole family, on plain tensors, over any core and latent.

PlaNet (Hafner et al. 2019, arXiv:1811.04551, Sec. 3), Dreamer (2020, arXiv:1912.01603, Eq. 1), DreamerV2
(arXiv:2010.02193, Eq. 1) and DreamerV3 (arXiv:2301.04104, Eq. 3) share one model:

    sequence model   h_t = f(h_{t-1}, s_{t-1}, a_{t-1})        (a recurrent core, :mod:`dreamer_trl.model.cores`)
    prior            p(s_t | h_t)                              (``img_layers`` hidden layers on h_t)
    posterior        q(s_t | h_t, e_t)                         (``obs_layers`` hidden layers on [h_t, e_t])

over any latent family of :mod:`dreamer_trl.model.latent` (Gaussian for V1 / PlaNet, one-hot categoricals for
V2 / V3). The variants differ only in their parts: the core (V1's GRU cell, V2 / V3 2023's normalised GRU,
V3's block GRU), the latent, the layer style (:class:`~dreamer_trl.model.layers.NetStyle`: norm, activation,
initialisation) and the numbers of layers (V1: 1 and 1; V3 current: 2 and 1).

The time loops (:meth:`RSSM.observe`, :meth:`RSSM.imagine`) run on tensors inside one call; everything that
does not depend on the recurrence (the actions' share of the core's input layer, the embedding's share of the
posterior's first layer, the prior during observation) is computed for all steps at once, outside the loop.
The state starts from zeros at every ``is_init`` (the 2023 V3 code learned its initial h instead).

Shapes:
    B batch, T time, H horizon, S state, D belief, A action, E embedding.
    ``observe``: embed ``[B, T, E]``, prev_action ``[B, T, A]``, is_init ``[B, T, 1]`` -> "state",
    "belief", "prior_<param>", "posterior_<param>" ``[B, T, .]``.
    ``imagine``: state ``[N, S]``, belief ``[N, D]`` -> ``[N, H, S|D|A]``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dreamer_trl.model.cores import GRUCellCore
from dreamer_trl.model.latent import GaussianLatent, LatentState
from dreamer_trl.model.layers import (
    OFFICIAL_STYLE,
    STYLE_V1,
    NetStyle,
    activation,
    dense,
    init_weight_,
    linear,
    make_norm,
)

INITIALS = ("zeros", "learned")


class RSSM(nn.Module):
    """The RSSM: a recurrent core with the prior and posterior networks, over a latent family.

    Args:
        core: a core of :mod:`~dreamer_trl.model.cores` (sets D, S and A; S must equal ``latent.sample_dim``).
        latent: the latent distribution family (``params``, ``sample``, ``names``, ``param_dim``, ``sample_dim``).
        embed_dim: E.
        hidden: width of the prior and posterior layers (V1 200; V3 ``hidden``; 2023 ``units``).
        img_layers, obs_layers: hidden layers of the prior and of the posterior (V1 1 and 1; V3 current 2 and 1).
        style: as the networks' (:class:`~dreamer_trl.model.layers.NetStyle`).
        outscale: on the latent's output layers (official V3 ``rssm.outscale`` 1).

    The posterior's first layer is one linear layer on concat(h_t, e_t) in every official code; here it is
    split in two (``obs_belief``, ``obs_embed``), initialised as the joint layer, so the e_t part runs once
    for the whole sequence.
    """

    def __init__(self, core: nn.Module, latent, embed_dim: int, hidden: int, img_layers: int = 2,
                 obs_layers: int = 1, style: NetStyle = OFFICIAL_STYLE, outscale: float = 1.0,
                 initial: str = "zeros"):
        super().__init__()
        if initial not in INITIALS:
            raise ValueError(f"initial must be one of {', '.join(INITIALS)}, got {initial!r}")
        if core.state_dim != latent.sample_dim:
            raise ValueError(f"the core's state_dim {core.state_dim} must equal the latent's sample_dim {latent.sample_dim}")
        if obs_layers < 1:
            raise ValueError("obs_layers must be at least 1 (the posterior reads the embedding there)")
        self.core, self.latent = core, latent
        self.state_dim, self.belief_dim, self.action_dim = core.state_dim, core.belief_dim, core.action_dim
        D = self.belief_dim
        prior: list[nn.Module] = []
        width = D
        for _ in range(img_layers):
            prior.append(dense(width, hidden, style))
            width = hidden
        prior.append(linear(width, latent.param_dim, style, outscale=outscale))
        self.img_out = nn.Sequential(*prior)
        bias = style.bias or style.norm == "none"
        self.obs_belief = nn.Linear(D, hidden, bias=False)
        self.obs_embed = nn.Linear(embed_dim, hidden, bias=bias)
        joint = init_weight_(torch.empty(hidden, D + embed_dim), "linear", style)
        with torch.no_grad():
            self.obs_belief.weight.copy_(joint[:, :D])
            self.obs_embed.weight.copy_(joint[:, D:])
            if bias:
                self.obs_embed.bias.zero_()
        post: list[nn.Module] = [make_norm(hidden, style), activation(style)]
        post += [dense(hidden, hidden, style) for _ in range(obs_layers - 1)]
        post.append(linear(hidden, latent.param_dim, style, outscale=outscale))
        self.obs_out = nn.Sequential(*post)
        # DreamerV3 2023 (423291a nets.py RSSM.initial, 'learned'): h_0 = tanh(w), s_0 = the prior's mode at h_0
        self.initial_belief = nn.Parameter(torch.zeros(D)) if initial == "learned" else None

    @property
    def feature_dim(self) -> int:
        return self.state_dim + self.belief_dim

    def initial(self, batch_shape: torch.Size | tuple, device=None, dtype=None) -> LatentState:
        """The start of every episode: zero state and belief, or (``initial="learned"``) h_0 = tanh(w) with the
        learned w and s_0 the prior's mode at h_0."""
        z = dict(device=device, dtype=dtype)
        if self.initial_belief is None:
            return LatentState(torch.zeros(*batch_shape, self.state_dim, **z),
                               torch.zeros(*batch_shape, self.belief_dim, **z))
        belief = torch.tanh(self.initial_belief).to(**{k: v for k, v in z.items() if v is not None})
        state = self.latent.mode(self.prior(belief)).detach()  # the official mode (an argmax) carries no gradient
        return LatentState(state.expand(*batch_shape, -1), belief.expand(*batch_shape, -1))

    def prior(self, belief: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameters of p(s_t | h_t)."""
        return self.latent.params(self.img_out(belief))

    def prior_step(self, state: torch.Tensor, belief: torch.Tensor, action: torch.Tensor,
                   noise: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One imagination step: h' = f(h, s, a), s' ~ p(s' | h'). Returns (prior params, s', h').

        The same function drives :class:`~dreamer_trl.behavior.imagination.ImaginationEnv` and :meth:`imagine`.
        ``noise`` (the latent's standard noise, ``[*N, S]``) replaces the sampled one when given.
        """
        belief = self.core.step(belief, state, action)
        params = self.prior(belief)
        return params, self.latent.sample(params, noise), belief

    def posterior_step(self, belief: torch.Tensor, embed_proj: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """q(s_t | h_t, e_t) from the belief and the projected embedding ``obs_embed(e_t)``: (params, s_t)."""
        params = self.latent.params(self.obs_out(self.obs_belief(belief) + embed_proj))
        return params, self.latent.sample(params)

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
        action_proj = self.core.project_action(prev_action * keep)                # (B, T, hidden)
        embed_proj = self.obs_embed(embed)                                        # (B, T, hidden)
        start = None if self.initial_belief is None else self.initial((), embed.device, embed.dtype)
        beliefs, states = [], []
        posterior: dict[str, list[torch.Tensor]] = {n: [] for n in self.latent.names}
        for t in range(T):
            k = keep[..., t, :]
            state, belief = state * k, belief * k
            if start is not None:  # a reset starts from the learned h_0, s_0 (2023 obs_step: x + mask(initial))
                state, belief = state + (1 - k) * start.state, belief + (1 - k) * start.belief
            belief = self.core(belief, state, action_proj[..., t, :])
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


def gru_cell_rssm(action_dim: int, embed_dim: int, state_dim: int = 30, belief_dim: int = 200, hidden_dim: int = 200,
                  min_std: float = 0.1, latent=None) -> RSSM:
    """The RSSM of Dreamer V1 and PlaNet (official Dreamer ``RSSM``): :class:`~dreamer_trl.model.cores.GRUCellCore`,
    one ELU layer in the prior and in the posterior, Keras's initialisation, a Gaussian latent
    N(mean, softplus(std) + ``min_std``) unless ``latent`` is given (V1: S 30, D 200, hidden 200)."""
    latent = latent or GaussianLatent(state_dim, min_std)
    core = GRUCellCore(belief_dim, latent.sample_dim, action_dim, hidden_dim, STYLE_V1)
    return RSSM(core, latent, embed_dim, hidden_dim, img_layers=1, obs_layers=1, style=STYLE_V1)
