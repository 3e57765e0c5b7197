"""PlaNet's behaviour: online planning with the cross-entropy method (CEM) in the learned latent space.

Hafner et al., "Learning Latent Dynamics for Planning from Pixels", ICML 2019 (arXiv:1811.04551), Sec. 2
and Algorithm 2. At every agent step, from the filtered latent (s_t, h_t):

    q(a_{t:t+H}) = N(mu, diag(sigma^2))         time-dependent diagonal Gaussian, N(0, I) at each agent step
    repeat I times:
        a^(j) ~ q, clipped to the action bounds                         J candidates per environment
        s^(j)_{t+1:t+H} ~ prod_tau p(s_tau | s_{tau-1}, a^(j)_{tau-1})    the RSSM prior (sampled states)
        R^(j) = sum_{tau=1..H} gamma^(tau-1) E[r(s^(j)_{t+tau})]       the reward head's means
                [+ gamma^H v(s^(j)_{t+H}) with a value bootstrap]
        mu, sigma <- mean and std of the K candidates with the highest R   (std as the official code:
                                                                          sqrt(population variance))
    act with mu_0.

PlaNet's values: H 12, J 1000, K 100, I 10, gamma 1 (the plain sum of rewards). ``warm_start`` starts the
mean from the previous step's plan shifted by one step (the std still starts at 1), a common option that
PlaNet does not use.

Everything runs on plain tensors, batched over environments and candidates: each imagined step is one
:meth:`RSSM.prior_step` call on ``[N * J]`` rows, the reward head scores all ``[N * J * H]`` imagined
states in one call, and the refit is a ``topk`` + ``gather``. There is no per-candidate Python loop.

Random numbers: candidates and prior samples come from the planner's own ``torch.Generator`` when
``seed`` is given (deterministic whatever else draws from the global stream), else from torch's global
random stream (``torch.manual_seed`` reproduces the plans, and the training checkpoint, which saves that
stream, resumes exactly).

:func:`make_planner` wraps the planner as a behaviour (a TensorDictModule "state", "belief", "is_init" ->
"action"), so :func:`~dreamer_trl.behavior.policy.make_policy` puts the filter before it and the exploration noise
after it, exactly as for the actor: the same keys drive a TorchRL collector.

Shapes: N environments, J candidates, K elites, H horizon, A action, S state, D belief.
    ``plan``: state ``[*N, S]``, belief ``[*N, D]`` -> action ``[*N, A]``; the per-iteration
    mean elite returns in ``last_elite_returns`` ``[I, *N]``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from dreamer_trl import keys


class LatentCEMPlanner(nn.Module):
    """CEM over action sequences, scored by imagined rollouts of the RSSM prior (PlaNet Algorithm 2).

    Args:
        rssm: has ``prior_step(state, belief, action, noise) -> (params, state, belief)`` and ``state_dim``
            (:class:`~dreamer_trl.model.rssm.RSSM`).
        reward_head: ``(state, belief) -> raw`` with ``pred(raw)`` the mean reward ``[*, 1]``
            (:class:`~dreamer_trl.model.heads.NormalHead`).
        action_dim: A.
        horizon, candidates, top_k, iterations: H, J, K, I (PlaNet: 12, 1000, 100, 10).
        action_low, action_high: bounds the candidates are clipped to (scalars or ``[A]`` tensors).
        discount: gamma of the imagined return (PlaNet: 1, the plain sum).
        value: optional ``(state, belief) -> v`` ``[*, 1]`` added at the horizon (bootstrap), e.g. the
            module of :func:`~dreamer_trl.behavior.actors.make_value`.
        warm_start: start each step's mean from the previous plan shifted by one step (reset where
            "is_init"); the planner then keeps that plan between calls.
        seed: seed of the planner's own generator; None: the global random stream.
    """

    def __init__(self, rssm: nn.Module, reward_head: nn.Module, action_dim: int, horizon: int = 12,
                 candidates: int = 1000, top_k: int = 100, iterations: int = 10, action_low=-1.0,
                 action_high=1.0, discount: float = 1.0, value: nn.Module | None = None, warm_start: bool = False,
                 seed: int | None = None):
        super().__init__()
        if not 1 <= top_k <= candidates:
            raise ValueError(f"top_k must be in [1, candidates = {candidates}], got {top_k}")
        if horizon < 1 or iterations < 1:
            raise ValueError(f"horizon and iterations must be >= 1, got {horizon} and {iterations}")
        self.rssm, self.reward_head, self.value = rssm, reward_head, value
        self.action_dim, self.horizon, self.candidates = action_dim, horizon, candidates
        self.top_k, self.iterations, self.discount, self.warm_start = top_k, iterations, discount, warm_start
        self.register_buffer("action_low", torch.as_tensor(action_low, dtype=torch.float32).expand(action_dim).clone(),
                             persistent=False)
        self.register_buffer("action_high", torch.as_tensor(action_high, dtype=torch.float32).expand(action_dim).clone(),
                             persistent=False)
        self.seed, self._generator = seed, None
        self._plan: torch.Tensor | None = None    # previous plan's mean [n, H, A] (warm start)
        self.last_elite_returns: torch.Tensor | None = None
        self.timings: dict[str, float] | None = None  # set to {} to accumulate seconds per part

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The planner's generator on ``device`` (created from ``seed`` on first use), or None (global stream)."""
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device).manual_seed(self.seed)
        return self._generator

    @contextmanager
    def _timed(self, part: str):
        if self.timings is None:
            yield
            return
        start = time.perf_counter()
        yield
        self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - start

    def rollout(self, state: torch.Tensor, belief: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Imagine ``actions`` ``[M, H, A]`` from (s, h) ``[M, S|D]``: one prior call per step, all M rows.

        Returns the imagined s_{1..H}, h_{1..H} ``[M, H, S|D]``.
        """
        states, beliefs = [], []
        for t in range(actions.shape[1]):
            noise = torch.randn(state.shape, generator=generator, device=state.device, dtype=state.dtype)
            _, state, belief = self.rssm.prior_step(state, belief, actions[:, t], noise)
            states.append(state)
            beliefs.append(belief)
        return torch.stack(states, 1), torch.stack(beliefs, 1)

    def score(self, states: torch.Tensor, beliefs: torch.Tensor) -> torch.Tensor:
        """Imagined returns ``[M]`` of rollouts ``[M, H, S|D]``: discounted reward means (+ value at H)."""
        rewards = self.reward_head.pred(self.reward_head(states, beliefs)).squeeze(-1)        # (M, H)
        weights = self.discount ** torch.arange(rewards.shape[1], device=rewards.device, dtype=rewards.dtype)
        returns = (rewards * weights).sum(-1)
        if self.value is not None:
            last = self.value(states[:, -1], beliefs[:, -1]).squeeze(-1)
            returns = returns + self.discount ** rewards.shape[1] * last
        return returns

    def initial_mean(self, n: int, is_init: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """Zeros ``[n, H, A]``, or with ``warm_start`` the last plan shifted by one step (zeros where is_init)."""
        zeros = like.new_zeros(n, self.horizon, self.action_dim)
        if not self.warm_start or self._plan is None or self._plan.shape != zeros.shape:
            return zeros
        shifted = torch.cat([self._plan[:, 1:], zeros[:, :1]], 1)
        if is_init is None:
            return shifted
        return torch.where(is_init.reshape(n, 1, 1).bool(), zeros, shifted)

    @torch.no_grad()
    def plan(self, state: torch.Tensor, belief: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        """The first action of the CEM plan from each latent: ``[*N, S]``, ``[*N, D]`` -> ``[*N, A]``."""
        batch = state.shape[:-1]
        state, belief = state.reshape(-1, state.shape[-1]), belief.reshape(-1, belief.shape[-1])
        n, J, K, H, A = state.shape[0], self.candidates, self.top_k, self.horizon, self.action_dim
        generator = self.generator(state.device)
        mean = self.initial_mean(n, is_init, state)                                     # (n, H, A)
        std = torch.ones_like(mean)
        start_state = state.repeat_interleave(J, 0)                                     # (n * J, S)
        start_belief = belief.repeat_interleave(J, 0)                                   # (n * J, D)
        low, high = self.action_low.to(state), self.action_high.to(state)
        elite_returns = []
        for _ in range(self.iterations):
            with self._timed("rollout"):
                eps = torch.randn((n, J, H, A), generator=generator, device=state.device, dtype=state.dtype)
                actions = torch.clamp(mean[:, None] + std[:, None] * eps, low, high)     # (n, J, H, A)
                states, beliefs = self.rollout(start_state, start_belief, actions.reshape(n * J, H, A), generator)
            with self._timed("score"):
                returns = self.score(states, beliefs).reshape(n, J)                     # (n, J)
            with self._timed("refit"):
                top, index = returns.topk(K, dim=1)                                     # (n, K)
                elites = actions.gather(1, index[:, :, None, None].expand(n, K, H, A))  # (n, K, H, A)
                mean = elites.mean(1)
                std = (elites.var(1, unbiased=False) + 1e-6).sqrt()
                elite_returns.append(top.mean(1))
        self.last_elite_returns = torch.stack(elite_returns).reshape(self.iterations, *batch)
        if self.warm_start:
            self._plan = mean
        return mean[:, 0].reshape(*batch, A)

    def forward(self, state: torch.Tensor, belief: torch.Tensor, is_init: torch.Tensor | None = None) -> torch.Tensor:
        return self.plan(state, belief, is_init)


def make_planner(world_model, action_spec=None, *, horizon: int = 12, candidates: int = 1000, top_k: int = 100,
                 iterations: int = 10, discount: float = 1.0, value: nn.Module | None = None,
                 warm_start: bool = False, seed: int | None = None) -> TensorDictModule:
    """PlaNet's planner on a :class:`~dreamer_trl.model.world_model.DreamerWorldModel` as a behaviour:
    "state", "belief", "is_init" -> "action", with candidates clipped to ``action_spec``'s bounds
    (default [-1, 1]). ``value`` is a module ``(state, belief) -> v`` or a TensorDictModule around one.
    Pass the result to :func:`~dreamer_trl.behavior.policy.make_policy` as the behaviour."""
    rssm = world_model.rssm
    low, high = -1.0, 1.0
    if action_spec is not None:
        space = action_spec.space
        low, high = space.low.reshape(-1, rssm.action_dim)[0], space.high.reshape(-1, rssm.action_dim)[0]
    if isinstance(value, TensorDictModule):
        value = value.module
    planner = LatentCEMPlanner(rssm, world_model.reward_head, rssm.action_dim, horizon, candidates, top_k, iterations,
                               low, high, discount, value, warm_start, seed)
    return TensorDictModule(planner, in_keys=[keys.STATE, keys.BELIEF, keys.IS_INIT], out_keys=[keys.ACTION])
