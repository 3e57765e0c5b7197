"""The value model's / critic's objective for the whole family, on the data :class:`~dreamer_trl.objectives.actor_loss.ActorLoss` hands on.

- Dreamer V1 (arXiv:1912.01603, Eq. 8): E[sum_t gamma^t 1/2 (v(s_t) - sg(V(s_t)))^2], the regression of the
  unit Gaussian's mean on the targets (``regression="squared"``), on stop-gradient imagined states.
- DreamerV2 (arXiv:2010.02193, Eq. 5) and DreamerV3 (arXiv:2301.04104, Eq. 10): -log p_v(sg(R_t) | s_t) with
  the head's likelihood (unit Gaussian for V2, two-hot for V3; ``regression="nll"``) weighted by the
  cumulative continue probabilities w_t, plus ``slow_reg`` times -log p_v(sg(v_slow(s_t)) | s_t), the
  regulariser toward the slow critic (V3).
- Replay critic (V3 current code, scale 0.3): the same loss on the replayed posterior states, with
  lambda-returns along the real sequence bootstrapped by the imagined returns R_0 of each start.

The imagined part reaches the critic's parameters only (it runs on detached states, or reuses the actor
loss's shared pass, whose graph goes to the critic's parameters only). The replay part, with ``replay_grad``,
also reaches the world model through the posterior states when the world-model loss hands them on with
their graph (V3 current ``repval_grad``; ``WorldModelLoss(keep_graph=True)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.objectives.actor_loss import IMAGINED, REPLAY, START_RETURN, WEIGHT
from dreamer_trl.objectives.value_estimates import lambda_return

REGRESSIONS = ("squared", "nll")


def replay_lambda_return(reward: torch.Tensor, boot: torch.Tensor, live: torch.Tensor, lmbda: float,
                         is_init: torch.Tensor | None = None) -> torch.Tensor:
    """Lambda-returns along a replayed sequence, bootstrapped by imagined returns (V3 current code, repl_loss).

    R_t = r_{t+1} + live_{t+1} ((1 - lambda) b_{t+1} + lambda R_{t+1}),  R_{T-1} = b_{T-1}

    where b_t is the imagined lambda-return from the replayed state t and live_t the discount into row t
    (gamma, times 0 after a terminal). With ``is_init`` (bool ``[..., T, 1]``), a row whose next row starts a
    new episode (a window along an env's stream) ends its episode's sequence as the last row does:
    R_t = b_t, so no return reaches across the reset. Args ``[..., T, 1]``; returns ``[..., T - 1, 1]`` for
    rows 0..T-2.
    """
    stop = None if is_init is None else is_init[..., 1:, :].bool()
    return lambda_return(reward[..., 1:, :], boot[..., :-1, :], boot[..., -1, :], live[..., 1:, :], lmbda, stop)


class CriticLoss(LossModule):
    """The value / critic loss on imagined states and, with ``replay_scale`` > 0, on the replayed states.

    Args:
        value: the value head TensorDictModule (raw output; ``module.pred(raw)``, and ``module.nll(raw, target)``
            for ``regression="nll"``).
        slow_value: the slow critic (an EMA copy, updated by a hook), or None (no regulariser).
        regression: "squared": 1/2 (pred(raw) - target)^2 (V1 Eq. 8, the unit Gaussian's mean without its
            constant); "nll": the head's negative log-likelihood (V2, V3).
        slow_reg: weight of the regulariser toward the slow critic's prediction (V3: 1; 0: none).
        replay_scale: weight of the replay term (V3 current code: 0.3; 0: off).
        gamma, lmbda: the discount and lambda of the replay returns.
        replay_grad: the replay term's gradient also reaches the world model through the posterior states
            (V3 current ``repval_grad``) when they carry a graph; the phase's parameters decide what is updated.

    Reads the data of :class:`~dreamer_trl.objectives.actor_loss.ActorLoss` (its docstring): "imagined"
    (``state``, ``belief``, ``lambda_target``, "weight", optionally ``state_value`` with a graph), and for the
    replay term "start_return" and "replay". Returns ``loss_value`` (and ``loss_replay_value``) and the
    "imagined" data.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the loss.

        Attributes:
            state, belief: the imagined (and replayed) states.
            value: the value head's output key (shared predictions, used when they carry a graph).
            lambda_target: the regression targets; weight: the step weights w_t.
            next_reward: the real reward ``("next", "reward")`` (replay term).
            terminated: the real terminal flags (replay term; missing: never).
            is_init: episode-start flags (replay term; missing: none mid-window).
        """

        state: NestedKey = keys.STATE
        belief: NestedKey = keys.BELIEF
        value: NestedKey = keys.STATE_VALUE
        lambda_target: NestedKey = keys.LAMBDA_TARGET
        weight: NestedKey = WEIGHT
        next_reward: NestedKey = keys.NEXT_REWARD
        terminated: NestedKey = ("next", keys.TERMINATED)
        is_init: NestedKey = keys.IS_INIT

    default_keys = _AcceptedKeys

    def __init__(self, value: TensorDictModule, slow_value: TensorDictModule | None = None, *,
                 regression: str = "nll", slow_reg: float = 1.0, replay_scale: float = 0.0, gamma: float = 0.99,
                 lmbda: float = 0.95, replay_grad: bool = True):
        super().__init__()
        if regression not in REGRESSIONS:
            raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")
        self.value, self.regression = value, regression
        self.__dict__["slow_value"] = slow_value  # updated by a hook, not by this loss's optimizer
        self.slow_reg, self.replay_scale, self.gamma, self.lmbda = slow_reg, replay_scale, gamma, lmbda
        self.replay_grad = replay_grad

    @property
    def discount(self) -> float:
        return self.gamma

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _fit(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-row regression loss ``[*N]`` of the head's raw output on a (detached) target ``[*N, 1]``."""
        head = self.value.module
        if self.regression == "nll":
            return head.nll(raw, target.detach())
        return (0.5 * (head.pred(raw) - target.detach()) ** 2).squeeze(-1)

    def _critic_loss(self, state, belief, target, raw=None) -> torch.Tensor:
        head = self.value.module
        raw = head(state, belief) if raw is None else raw
        loss = self._fit(raw, target)
        if self.slow_value is not None and self.slow_reg:
            with torch.no_grad():
                slow = self.slow_value.module.pred(self.slow_value.module(state.detach(), belief.detach()))
            loss = loss + self.slow_reg * self._fit(raw, slow)
        return loss                                                                                 # (*N)

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDictBase]:
        k = self.tensor_keys
        imagined = tensordict.get(IMAGINED)
        shared = imagined.get(k.value, None)
        if shared is not None and not shared.requires_grad:
            shared = None
        state, belief = imagined.get(k.state).detach(), imagined.get(k.belief).detach()
        per_row = self._critic_loss(state, belief, imagined.get(k.lambda_target), shared)          # (N, K)
        loss = TensorDict(loss_value=(imagined.get(k.weight).squeeze(-1) * per_row).mean())
        if self.replay_scale:
            loss.set("loss_replay_value", self.replay_scale * self._replay_loss(tensordict))
        return loss, imagined

    def _replay_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        k = self.tensor_keys
        replay = tensordict.get(REPLAY)
        state, belief = replay.get(k.state), replay.get(k.belief)                                   # (B, T, .)
        if not self.replay_grad:
            state, belief = state.detach(), belief.detach()
        batch = state.shape[:-1]
        boot = tensordict.get(START_RETURN).reshape(*batch, 1)                                      # (B, T, 1)
        reward = torch.zeros_like(boot)                                                              # r into row t
        reward[..., 1:, :] = replay.get(k.next_reward)[..., :-1, :]
        term = replay.get(k.terminated, None)
        live = torch.full_like(boot, self.gamma)
        if term is not None:
            live[..., 1:, :] = live[..., 1:, :] * (~term[..., :-1, :].bool()).to(boot.dtype)
        is_init = replay.get(k.is_init, None)  # mid-window episode starts: windows along an env's stream
        returns = replay_lambda_return(reward, boot, live, self.lmbda, is_init)                    # (B, T-1, 1)
        nll = self._critic_loss(state[..., :-1, :], belief[..., :-1, :], returns)                  # (B, T-1)
        if is_init is not None:  # a row before a reset has no return of its own (R = b), as the last row
            nll = torch.where(is_init[..., 1:, :].bool().squeeze(-1), torch.zeros_like(nll), nll)
        return nll.mean()
