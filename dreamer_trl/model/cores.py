"""Recurrent cores: the deterministic part f of the RSSM, h_t = f(h_{t-1}, z_{t-1}, a_{t-1}).

Every core has the same interface, so :class:`~dreamer_trl.model.rssm.RSSM` takes any of them:
``belief_dim``, ``state_dim``, ``action_dim``; ``project_action(a)`` (what depends on the action alone,
computed for a whole sequence at once during filtering); ``core(belief, state, action_proj) -> belief'``;
and ``step(belief, state, action)`` for one imagination step (by default ``core(belief, state,
project_action(action))``).

- :class:`GRUCellCore`: Dreamer V1 / PlaNet (Hafner et al. 2019, arXiv:1811.04551, Sec. 3; official Dreamer
  ``RSSM.img_step``): h' = GRUCell(ELU(W [s, a] + b), h), Glorot-uniform input kernels, orthogonal recurrent kernel.
- :class:`BlockGRU`: the current official code (danijar/dreamerv3 ``dreamerv3/rssm.py``, ``RSSM._core``).
  h, z and a each pass a Linear -> Norm -> SiLU layer (width ``hidden``); these three vectors are given to
  every one of G blocks of h (concatenated with that block's slice of h); then block-diagonal layers
  (:class:`~dreamer_trl.model.layers.BlockLinear`) and the GRU gates, per block:

      r, c, u = split_3(BlockLinear([h_g, x]))         (per block g: its D/G reset, candidate, update)
      h'_g    = sigmoid(u - 1) * tanh(sigmoid(r) * c) + (1 - sigmoid(u - 1)) * h_g

  So block g of h' reads the other blocks of h only through the dense projection of the whole h and
  through the norm statistics of the hidden block layer, never through the recurrent weights.
- :class:`NormGRU`: the 2023 code (commit 84ecf19, ``nets.py``, ``RSSM.img_step`` / ``_gru``): one
  Linear -> Norm -> SiLU layer on concat(z, a), then a dense layer on concat(h, x) to the three gates,
  normalised together (no bias), with the same gate equations.

The two V3 cores scale actions to at most 1 in magnitude, a / max(1, |a|) with the divisor not differentiated
(current ``action /= sg(max(1, |a|))``; 2023 ``action_clip 1.0``).

DreamerV2 uses :class:`NormGRU` with LayerNorm on the gates only (``gate_norm="layer"``).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from dreamer_trl.model.layers import (
    OFFICIAL_STYLE,
    STYLE_2023,
    STYLE_V1,
    BlockLinear,
    NetStyle,
    activation,
    dense,
    linear,
    make_norm,
)


def squash_action(action: torch.Tensor) -> torch.Tensor:
    """a / max(1, |a|) per element, the divisor without gradient (official ``_core`` / ``action_clip``)."""
    return action / action.detach().abs().clamp(min=1.0)


def gru_gates(reset: torch.Tensor, cand: torch.Tensor, update: torch.Tensor, belief: torch.Tensor,
              update_bias: float = -1.0) -> torch.Tensor:
    """h' = u * tanh(sigmoid(r) * c) + (1 - u) * h with u = sigmoid(update + update_bias) (official GRU)."""
    u = torch.sigmoid(update + update_bias)
    return u * torch.tanh(torch.sigmoid(reset) * cand) + (1 - u) * belief


class BlockGRU(nn.Module):
    """The current official recurrent core with G blocks (see the module docstring).

    Args:
        belief_dim, state_dim, action_dim: D, S (the flat sample width of the latent), A.
        hidden: width of the three input layers (official ``hidden``).
        blocks: G; D must be divisible by it (official 8 at every size).
        layers: block-diagonal hidden layers before the gates (official ``dynlayers`` 1).
        style: norm, activation, biases and initialisation (:class:`~dreamer_trl.model.layers.NetStyle`).
        update_bias: added to the update gate's input (official -1).

    Call ``core(belief, state, core.project_action(action))``: ``project_action`` holds the part that
    depends on the action alone, so a sequence's actions can be projected at once.
    """

    def __init__(self, belief_dim: int, state_dim: int, action_dim: int, hidden: int, blocks: int = 8,
                 layers: int = 1, style: NetStyle = OFFICIAL_STYLE, update_bias: float = -1.0):
        super().__init__()
        if belief_dim % blocks:
            raise ValueError(f"belief_dim {belief_dim} must be divisible by blocks {blocks}")
        self.belief_dim, self.state_dim, self.action_dim = belief_dim, state_dim, action_dim
        self.hidden, self.blocks, self.update_bias = hidden, blocks, update_bias
        self.in_belief = dense(belief_dim, hidden, style)
        self.in_state = dense(state_dim, hidden, style)
        self.in_action = dense(action_dim, hidden, style)
        bias = style.bias or style.norm == "none"
        mods: list[nn.Module] = []
        width = belief_dim + 3 * hidden * blocks
        for _ in range(layers):
            mods += [BlockLinear(width, belief_dim, blocks, style, bias), make_norm(belief_dim, style), activation(style)]
            width = belief_dim
        self.hidden_layers = nn.Sequential(*mods)
        self.gates = BlockLinear(width, 3 * belief_dim, blocks, style)

    def project_action(self, action: torch.Tensor) -> torch.Tensor:
        """The action's input layer, SiLU(norm(W a' + b)) with a' = a / max(1, |a|): ``[*N, A] -> [*N, hidden]``."""
        return self.in_action(squash_action(action))

    def _first_layer(self, belief: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The first block layer on concat_g(h_g, x) without building that input: the shared x (the same for
        every block) meets its rows of each block's weight in one dense product, each h_g its own rows (a
        batched product written into the same [N, G, o] result). ``[N, D]``, ``[N, 3 hidden]`` -> ``[N, G * o]``."""
        lin, g, d = self.hidden_layers[0], self.blocks, self.belief_dim // self.blocks
        w_h, w_x = lin.weight[:, :d], lin.weight[:, d:]                                      # (G, d, o), (G, 3h, o)
        y = x @ w_x.transpose(0, 1).reshape(x.shape[-1], -1)                                # (N, G * o)
        if lin.bias is not None:
            y = y + lin.bias.to(y.dtype)
        y_blocks = y.view(y.shape[0], g, -1).transpose(0, 1)                                # (G, N, o) view
        y_blocks.baddbmm_(belief.view(-1, g, d).transpose(0, 1), w_h)
        return y

    def _gates(self, x: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        """Block-diagonal gate layer and the GRU update, computed block-major ([G, N, .], where the gate slices
        are contiguous rows) with one transpose in and one out. ``[N, D]`` -> h' ``[N, D]``."""
        gates, g, d = self.gates, self.blocks, self.belief_dim // self.blocks
        out = torch.bmm(x.view(x.shape[0], g, -1).transpose(0, 1), gates.weight)            # (G, N, 3d)
        if gates.bias is not None:
            out = out + gates.bias.to(out.dtype).view(g, 1, 3 * d)
        reset, cand, update = out.split(d, -1)                                              # (G, N, d) each
        h = belief.view(belief.shape[0], g, d).transpose(0, 1)                              # (G, N, d) view
        new = torch.lerp(h, torch.tanh(torch.sigmoid(reset) * cand), torch.sigmoid(update + self.update_bias))
        return new.transpose(0, 1).reshape(belief.shape)

    def forward(self, belief: torch.Tensor, state: torch.Tensor, action_proj: torch.Tensor) -> torch.Tensor:
        g, d = self.blocks, self.belief_dim // self.blocks
        lead = belief.shape[:-1]
        belief, state, action_proj = (t.reshape(-1, t.shape[-1]) for t in (belief, state, action_proj))
        x = torch.cat([self.in_belief(belief), self.in_state(state), action_proj], -1)       # (N, 3 hidden)
        if len(self.hidden_layers):
            x = self.hidden_layers[1:](self._first_layer(belief, x))                        # (N, D)
        else:
            x = torch.cat([belief.unflatten(-1, (g, d)), x.unsqueeze(-2).expand(*x.shape[:-1], g, x.shape[-1])], -1)
            x = x.flatten(-2)
        return self._gates(x, belief).reshape(*lead, self.belief_dim)

    def step(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One imagination step: ``core(belief, state, project_action(action))``."""
        return self(belief, state, self.project_action(action))


class NormGRU(nn.Module):
    """The 2023 official recurrent core: x = SiLU(norm(W [z, a'])); gates = norm(W_g [h, x]) (no bias).

    Args as :class:`BlockGRU` (no blocks); default style :data:`~dreamer_trl.model.layers.STYLE_2023`.
    ``gate_norm`` overrides the style's norm on the gates only (DreamerV2: "layer" there, none elsewhere).
    """

    def __init__(self, belief_dim: int, state_dim: int, action_dim: int, hidden: int,
                 style: NetStyle = STYLE_2023, update_bias: float = -1.0, gate_norm: str | None = None):
        super().__init__()
        self.belief_dim, self.state_dim, self.action_dim = belief_dim, state_dim, action_dim
        self.update_bias = update_bias
        bias = style.bias or style.norm == "none"
        self.img_in = linear(state_dim + action_dim, hidden, style, bias)
        self.img_in_norm = nn.Sequential(make_norm(hidden, style), activation(style))
        self.gru = linear(belief_dim + hidden, 3 * belief_dim, style, bias)
        gate_style = style if gate_norm is None else dataclasses.replace(style, norm=gate_norm)
        self.gru_norm = make_norm(3 * belief_dim, gate_style)  # V2: LayerNorm here, no norm on the input layer

    def project_action(self, action: torch.Tensor) -> torch.Tensor:
        """The action's share of the input layer, W_a a' (+ bias): ``[*N, A] -> [*N, hidden]``."""
        w_a = self.img_in.weight[:, self.state_dim :]
        return F.linear(squash_action(action), w_a, self.img_in.bias)

    def forward(self, belief: torch.Tensor, state: torch.Tensor, action_proj: torch.Tensor) -> torch.Tensor:
        x = self.img_in_norm(F.linear(state, self.img_in.weight[:, : self.state_dim]) + action_proj)
        reset, cand, update = self.gru_norm(self.gru(torch.cat([belief, x], -1))).chunk(3, -1)
        return gru_gates(reset, cand, update, belief, self.update_bias)

    def step(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One imagination step: ``core(belief, state, project_action(action))``."""
        return self(belief, state, self.project_action(action))


class GRUCellCore(nn.Module):
    """Dreamer V1 / PlaNet's core: x = ELU(W [s, a] + b), h' = GRUCell(x, h) (official ``RSSM.img_step``).

    Args as :class:`NormGRU`; ``style`` sets the input layer's initialisation (V1: Glorot-uniform, zero bias).
    The GRU cell gets Keras's GRU initialisation: Glorot-uniform input kernel, orthogonal recurrent kernel,
    zero biases. Actions are not rescaled.
    """

    def __init__(self, belief_dim: int, state_dim: int, action_dim: int, hidden: int, style: NetStyle = STYLE_V1):
        super().__init__()
        self.belief_dim, self.state_dim, self.action_dim = belief_dim, state_dim, action_dim
        self.img_in = linear(state_dim + action_dim, hidden, style)
        self.act = activation(style)
        self.gru = nn.GRUCell(hidden, belief_dim)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.gru.weight_ih)
            nn.init.orthogonal_(self.gru.weight_hh)
            self.gru.bias_ih.zero_()
            self.gru.bias_hh.zero_()

    def project_action(self, action: torch.Tensor) -> torch.Tensor:
        """The action's share of the input layer, W_a a + b: ``[*N, A] -> [*N, hidden]``."""
        return F.linear(action, self.img_in.weight[:, self.state_dim :], self.img_in.bias)

    def forward(self, belief: torch.Tensor, state: torch.Tensor, action_proj: torch.Tensor) -> torch.Tensor:
        """h' = GRU(ELU(W_s s + W_a a + b), h) with the action part precomputed (filtering)."""
        return self.gru(self.act(F.linear(state, self.img_in.weight[:, : self.state_dim]) + action_proj), belief)

    def step(self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One imagination step with the input layer applied to [s, a] in one product."""
        return self.gru(self.act(self.img_in(torch.cat([state, action], -1))), belief)
