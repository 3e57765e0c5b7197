"""Value estimates of imagined trajectories, one family with one signature (Dreamer, arXiv:1912.01603, Eq. 4-6).

Imagination from a start state s_t yields states s_{t+1} .. s_{t+H} with rewards r and values v. Each
estimate maps ``(reward, value, discount)`` of all H imagined states to targets for the first H - 1 of
them (the last state only bootstraps), ``[*N, H - 1, 1]``:

- :class:`RewardSum`, V_R (Eq. 4): sum of the imagined rewards from s_tau to the horizon, no value
  model (``needs_value`` False: no value network is trained);
- :class:`NStepReturn`, V_N^k (Eq. 5): k discounted rewards, then the value bootstrap,
  ``sum_{n=tau}^{h-1} gamma^{n-tau} r_n + gamma^{h-tau} v(s_h)`` with h = min(tau + k, t + H);
- :class:`LambdaReturn`, V_lambda (Eq. 6, the default): the exponentially weighted mix of V_N^n,
  computed by its recursion V_tau = r_tau + gamma ((1 - lambda) v_{tau+1} + lambda V_{tau+1}), V_H = v_H.

``discount`` is gamma (a float) or per-step discounts ``[*N, H - 1, 1]`` (gamma times a learned
continue probability, DreamerV2/V3), the discount applied between step tau and tau + 1. V_R is undiscounted
(Eq. 4), so :class:`RewardSum` takes no discount (``uses_discount`` False: callers pass None; any discount
other than 1 is refused rather than ignored).

The classes need H >= 2 imagined states (one target at least); H = 1 is refused with a ValueError naming the
horizon. The functions below work on T target rows and give an empty ``[..., 0, 1]`` for T = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _at(discount, t: int):
    return discount[..., t, :] if torch.is_tensor(discount) and discount.dim() > 0 else discount


def lambda_return(reward: torch.Tensor, value: torch.Tensor, bootstrap: torch.Tensor,
                  gamma, lmbda: float, stop: torch.Tensor | None = None) -> torch.Tensor:
    """V_lambda of Dreamer Eq. 6, computed backwards along dim -2.

    V_t = r_t + gamma_t * ((1 - lambda) * v_{t+1} + lambda * V_{t+1}), with V_T = v_T = ``bootstrap``.

    Args:
        reward: r_t ``[..., T, 1]`` (reward of imagined state t); value: v_t ``[..., T, 1]``;
        bootstrap: v_T ``[..., 1]``; gamma: a float or per-step discounts ``[..., T, 1]``;
        stop: optional bool ``[..., T, 1]``: where set, V_t = v_t (the sequence does not go on after step t,
            e.g. a replayed window whose next row starts a new episode); None: never.
    """
    next_values = torch.cat([value[..., 1:, :], bootstrap.unsqueeze(-2)], -2)
    inputs = reward + gamma * (1 - lmbda) * next_values
    returns, agg = [], bootstrap
    for t in reversed(range(reward.shape[-2])):
        agg = inputs[..., t, :] + _at(gamma, t) * lmbda * agg
        if stop is not None:
            agg = torch.where(stop[..., t, :], value[..., t, :], agg)
        returns.append(agg)
    return torch.stack(returns[::-1], -2) if returns else inputs  # T = 0: no targets, [..., 0, 1]


def nstep_return(reward: torch.Tensor, value: torch.Tensor, bootstrap: torch.Tensor, gamma, k: int) -> torch.Tensor:
    """V_N^k of Dreamer Eq. 5 for every step: k rewards then the value, truncated at the horizon.

    Applies V^j_tau = r_tau + gamma_tau V^{j-1}_{tau+1} k times from V^0 = v (the value at the horizon
    stays v_H), so step tau sums min(k, T - tau) rewards before bootstrapping.
    Args as :func:`lambda_return`; ``k >= 1``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    next_values = torch.cat([value[..., 1:, :], bootstrap.unsqueeze(-2)], -2)     # v_{tau+1}
    estimate = next_values                                                           # V^0_{tau+1}
    for _ in range(k):
        current = reward + gamma * estimate                                          # V^j_tau
        estimate = torch.cat([current[..., 1:, :], bootstrap.unsqueeze(-2)], -2)     # V^j_{tau+1}
    return current


def reward_sum(reward: torch.Tensor) -> torch.Tensor:
    """V_R of Dreamer Eq. 4: sum_{n=tau}^{t+H} r_n over all H imagined rewards ``[..., H, 1]``, for tau < t+H."""
    return reward.flip(-2).cumsum(-2).flip(-2)[..., :-1, :]


def _check_horizon(estimate, reward: torch.Tensor) -> None:
    """Refuse fewer than 2 imagined states: the targets are for the first H - 1, the last only bootstraps."""
    if reward.dim() < 2 or reward.shape[-2] < 2:
        got = reward.shape[-2] if reward.dim() >= 2 else "no time dim"
        raise ValueError(f"{type(estimate).__name__} needs a horizon of at least 2 imagined states along dim -2 "
                         f"(targets for the first H - 1; the last state only bootstraps), got horizon {got}")


@dataclass
class LambdaReturn:
    """V_lambda (Eq. 6); ``lmbda`` 0.95 in the paper."""

    lmbda: float = 0.95
    needs_value = True
    uses_discount = True

    def __call__(self, reward, value, discount):
        _check_horizon(self, reward)
        return lambda_return(reward[..., :-1, :], value[..., :-1, :], value[..., -1, :], discount, self.lmbda)


@dataclass
class NStepReturn:
    """V_N^k (Eq. 5)."""

    k: int = 5
    needs_value = True
    uses_discount = True

    def __call__(self, reward, value, discount):
        _check_horizon(self, reward)
        return nstep_return(reward[..., :-1, :], value[..., :-1, :], value[..., -1, :], discount, self.k)


@dataclass
class RewardSum:
    """V_R (Eq. 4): the undiscounted sum of imagined rewards; no value network is trained.

    ``value`` and ``discount`` are accepted for the family's one signature; ``discount`` must be None or 1
    (a number or a tensor of ones): Eq. 4 has no discount to apply, so another one is refused, not ignored.
    """

    needs_value = False
    uses_discount = False

    def __call__(self, reward, value=None, discount=None):
        _check_horizon(self, reward)
        if discount is not None:
            ones = bool((discount == 1).all()) if torch.is_tensor(discount) else discount == 1
            if not ones:
                shown = f"a tensor of shape {tuple(discount.shape)}" if torch.is_tensor(discount) else repr(discount)
                raise ValueError(f"RewardSum (V_R, Dreamer Eq. 4) is the undiscounted sum of imagined rewards: "
                                 f"discount must be None or 1, got {shown}")
        return reward_sum(reward)


def make_value_estimate(name: str, lmbda: float = 0.95, k: int = 5):
    """"lambda" -> V_lambda, "nstep" -> V_N^k, "reward" -> V_R."""
    table = {"lambda": lambda: LambdaReturn(lmbda), "nstep": lambda: NStepReturn(k), "reward": RewardSum}
    if name not in table:
        raise ValueError(f"value_estimate must be one of {sorted(table)}, got {name!r}")
    return table[name]()
