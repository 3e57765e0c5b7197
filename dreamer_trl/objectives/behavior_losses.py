"""The behaviour objectives: the actor's (Dreamer Eq. 7) and the value model's (Eq. 8), as TorchRL LossModules.

``ActorLoss`` imagines from every posterior state of the batch, scores the rollout with a value estimate
of :mod:`dreamer_trl.objectives.value_estimates` and returns the imagined states and targets for
``ValueLoss``. With V_R (``RewardSum``) there is no value model and no ``ValueLoss``.

Each loss's gradient reaches only its own parameters, so a plain ``loss.backward()`` followed by per-module
optimizers (a TorchRL-style loop) trains each network on its own objective: ``ActorLoss`` imagines with the
world model's and the value's parameters held out (gradients flow through them into the actions, never into
them, as TorchRL's ``hold_out_net``), and ``ValueLoss`` reaches the value's parameters only.

Shapes: B batch, T time, N = B*T imagination starts, H horizon; targets ``[N, H-1, 1]``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.model.latent import LatentState
from dreamer_trl.objectives.value_estimates import LambdaReturn


@contextlib.contextmanager
def held_out(*modules):
    """Parameters of ``modules`` do not require grad inside the block (restored after): computations through
    them still pass gradients to their inputs, but none reaches the parameters."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _InnerGraph:
    """A value pass on leaf copies of the states: ``value``, ``inputs`` (those leaves), ``params``."""

    def __init__(self, value, inputs, params):
        self.value, self.inputs, self.params = value, inputs, params


class _ToInputs(torch.autograd.Function):
    """The inner graph's value; its gradient goes to the states only."""

    @staticmethod
    def forward(ctx, inner: _InnerGraph, *inputs):
        ctx.inner = inner
        return inner.value.detach()

    @staticmethod
    def backward(ctx, grad):
        leaves = ctx.inner.inputs
        return (None, *torch.autograd.grad(ctx.inner.value, leaves, grad, retain_graph=True))


class _ToParams(torch.autograd.Function):
    """The inner graph's value; its gradient goes to the value's parameters only."""

    @staticmethod
    def forward(ctx, inner: _InnerGraph, *params):
        ctx.inner = inner
        return inner.value.detach()

    @staticmethod
    def backward(ctx, grad):
        return (None, *torch.autograd.grad(ctx.inner.value, ctx.inner.params, grad, retain_graph=True,
                                           allow_unused=True))


def split_value(value_fn, state: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the value head, v(s, h), as two tensors equal in value that route gradients apart: the first
    to the states only (the actor's objective, Eq. 7), the second to the value's parameters only (the value
    regression, Eq. 8, on stop-gradient states). Saves the second forward pass that detaching would cost, and
    keeps a plain ``backward()`` of each loss on its own parameters, in either order.

    ``value_fn`` is an ``nn.Module`` taking (state, belief); the states must require grad.
    """
    params = [p for p in value_fn.parameters() if p.requires_grad]
    with torch.enable_grad():
        leaves = [state.detach().requires_grad_(), belief.detach().requires_grad_()]
        inner = _InnerGraph(value_fn(*leaves), leaves, params)
    return _ToInputs.apply(inner, state, belief), _ToParams.apply(inner, *params)


def discount_weights(length: int, gamma: float, device=None) -> torch.Tensor:
    """Cumulative discount [1, gamma, gamma^2, ...] as ``[length, 1]``, weighting imagined steps."""
    return (gamma ** torch.arange(length, device=device, dtype=torch.float32)).unsqueeze(-1)


class ActorLoss(LossModule):
    """-E[sum_t gamma^t V(s_t)] over imagined trajectories (Dreamer Eq. 7, official ``_train``).

    Imagines ``horizon`` steps from every posterior state of the batch (stop-gradient starts) with the
    fast rollout over the imagination env's prior. Rewards and bootstrap values are the heads' point
    predictions. The value estimate V (default V_lambda, Eq. 6) is computed for the imagined states
    s_1..s_{H-1}; s_H only bootstraps. Gradients flow through the dynamics and the value into the actions, and
    reach the actor's parameters only (the world model and the value are held out). Returns the imagined
    states, the targets ("lambda_target", whatever the estimate) and "discount" (detached) for :class:`ValueLoss`.

    Args:
        actor: "state", "belief" -> "action" (:func:`~dreamer_trl.behavior.actors.make_actor`).
        value: the value model, or None with an estimate that needs none (V_R).
        imagination_env: the :class:`~dreamer_trl.behavior.imagination.ImaginationEnv` (its RSSM and reward head).
        horizon, gamma: H and the discount (V1: 15, 0.99).
        lmbda: lambda of the default estimate V_lambda (ignored when ``value_estimate`` is given).
        value_estimate: an estimate of :mod:`~dreamer_trl.objectives.value_estimates`.
        share_value: put the value predictions v(s_1..s_{H-1}) with their graph into the returned data, so
            :class:`ValueLoss` reuses them instead of a second forward pass over the same states (same
            numbers, as the official code evaluates the value head once on ``imag_feat``). The shared
            predictions' graph reaches the value's parameters only (:func:`split_value`).
        sample_heads: score with imagined rewards and values drawn from N(mean, 1) instead of the heads'
            means (TorchRL 0.14.1's choice; off: the official code's).
        start_targets: TorchRL's alignment instead of the official one: targets for s_0..s_{H-1} (the start
            state included, so the value also trains on it), each from the NEXT state's reward,
            V(s_t) = r(s_{t+1}) + gamma (...); off: targets for s_1..s_{H-1}, V(s_t) = r(s_t) + gamma (...).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            state, belief: the posterior start states.
            reward: the imagination env's reward key; value: the value head's output key.
            lambda_target: where the value estimate is written in the returned data.
        """

        state: NestedKey = keys.STATE
        belief: NestedKey = keys.BELIEF
        reward: NestedKey = keys.REWARD
        value: NestedKey = keys.STATE_VALUE
        lambda_target: NestedKey = keys.LAMBDA_TARGET

    default_keys = _AcceptedKeys

    def __init__(self, actor: TensorDictModule, value: TensorDictModule | None, imagination_env, *,
                 horizon: int = 15, gamma: float = 0.99, lmbda: float = 0.95, value_estimate=None,
                 share_value: bool = False, sample_heads: bool = False, start_targets: bool = False):
        super().__init__()
        if horizon < 2:
            raise ValueError(f"horizon must be >= 2, got {horizon}")
        self.estimate = value_estimate or LambdaReturn(lmbda)
        if self.estimate.needs_value and value is None:
            raise ValueError(f"the value estimate {type(self.estimate).__name__} needs a value model")
        self.actor, self.value = actor, value
        self.share_value = share_value and value is not None and self.estimate.needs_value
        self.__dict__["imagination_env"] = imagination_env
        model = imagination_env.world_model
        self.rssm = model.get_transition_model_operator().module.rssm
        self.reward_head = model.get_reward_operator().module
        self.horizon, self.gamma, self.lmbda = horizon, gamma, lmbda
        self.sample_heads, self.start_targets = sample_heads, start_targets

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        k = self.tensor_keys
        state, belief = LatentState.from_tensordict(tensordict, k.state, k.belief).detach().flatten()  # (N, S|D)
        # LossModule.forward runs under DETERMINISTIC exploration; imagination samples actions (rsample).
        with set_exploration_type(ExplorationType.RANDOM), held_out(self.rssm, self.reward_head):
            roll = self.rssm.imagine(state, belief, self.actor.module, self.horizon)              # (N, H, .)
            states, beliefs = roll[keys.STATE], roll[keys.BELIEF]                                 # s_1..s_H
            if self.start_targets:                                                                 # s_0..s_H
                states, beliefs = torch.cat([state[:, None], states], 1), torch.cat([belief[:, None], beliefs], 1)
            reward = self.reward_head(states, beliefs)                                             # (N, L, 1)
        value = trained_value = None
        if self.share_value:
            value, trained_value = split_value(self.value.module, states, beliefs)                # (N, L, 1)
        elif self.estimate.needs_value:
            with held_out(self.value):
                value = self.value.module(states, beliefs)                                         # (N, L, 1)
        if self.start_targets:  # the reward of step t is the next state's; the last entry is never used
            reward = torch.cat([reward[:, 1:], torch.zeros_like(reward[:, :1])], 1)
        scored_reward, scored_value = reward, value
        if self.sample_heads:
            scored_reward = reward + torch.randn_like(reward)
            scored_value = None if value is None else value + torch.randn_like(value)
        returns = self.estimate(scored_reward, scored_value, self.gamma)                           # (N, L-1, 1)
        steps = returns.shape[-2]
        discount = discount_weights(steps, self.gamma, returns.device)                             # (L-1, 1)
        imagined = reward[:, :-1] if self.start_targets else reward  # without the padding entry
        loss = TensorDict(loss_actor=-(discount * returns).mean(), imagined_reward=imagined.mean().detach())
        n = state.shape[0]
        actions = roll[keys.ACTION] if self.start_targets else roll[keys.ACTION][:, :-1]
        data = TensorDict(
            {k.state: states[:, :-1], k.belief: beliefs[:, :-1], keys.ACTION: actions, k.reward: reward[:, :-1],
             k.lambda_target: returns, "discount": discount.expand(n, -1, -1)},
            batch_size=[n, steps],
        ).detach()
        if self.share_value:
            data.set(k.value, trained_value[:, :-1])  # with its graph to the value's parameters, for ValueLoss
        return loss, data


class ValueLoss(LossModule):
    """E[sum_t gamma^t 1/2 (v(s_t) - V(s_t))^2] on stop-gradient imagined states (Dreamer Eq. 8).

    If the input already holds the value predictions with a graph (``ActorLoss(share_value=True)``),
    they are used as they are; otherwise the value head runs on the detached states.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the loss.

        Attributes:
            value: the value head's output key; lambda_target: the regression target.
        """

        value: NestedKey = keys.STATE_VALUE
        lambda_target: NestedKey = keys.LAMBDA_TARGET

    default_keys = _AcceptedKeys

    def __init__(self, value: TensorDictModule, *, gamma: float = 0.99):
        super().__init__()
        self.value, self.gamma = value, gamma

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDictBase]:
        k = self.tensor_keys
        shared = tensordict.get(k.value, None)
        if shared is not None and shared.requires_grad:
            data = tensordict.select(k.value, k.lambda_target)
        else:
            data = self.value(tensordict.select(*self.value.in_keys, k.lambda_target).detach())
        target = data.get(k.lambda_target).detach()
        discount = discount_weights(target.shape[-2], self.gamma, target.device)
        loss = (discount * 0.5 * (data.get(k.value) - target) ** 2).mean()
        return TensorDict(loss_value=loss), data
