"""The behaviour objectives: the actor's (Dreamer Eq. 7) and the value model's (Eq. 8), as TorchRL LossModules.

``ActorLoss`` imagines from every posterior state of the batch, scores the rollout with a value estimate
of :mod:`dreamer_trl.objectives.value_estimates` and returns the imagined states and targets for
``ValueLoss``. With V_R (``RewardSum``) there is no value model and no ``ValueLoss``.

Shapes: B batch, T time, N = B*T imagination starts, H horizon; targets ``[N, H-1, 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.latent import LatentState
from dreamer_trl.objectives.value_estimates import LambdaReturn


def discount_weights(length: int, gamma: float, device=None) -> torch.Tensor:
    """Cumulative discount [1, gamma, gamma^2, ...] as ``[length, 1]``, weighting imagined steps."""
    return (gamma ** torch.arange(length, device=device, dtype=torch.float32)).unsqueeze(-1)


class ActorLoss(LossModule):
    """-E[sum_t gamma^t V(s_t)] over imagined trajectories (Dreamer Eq. 7, official ``_train``).

    Imagines ``horizon`` steps from every posterior state of the batch (stop-gradient starts) with the
    fast rollout over the imagination env's prior. Rewards and bootstrap values are the heads' point
    predictions. The value estimate V (default V_lambda, Eq. 6) is computed for the imagined states
    s_1..s_{H-1}; s_H only bootstraps. Gradients flow through the dynamics into the actions; apply them to
    the actor's parameters only (``backward(inputs=...)``). Returns the imagined states, the targets
    ("lambda_target", whatever the estimate) and "discount" (detached) for :class:`ValueLoss`.

    Args:
        actor: "state", "belief" -> "action" (:func:`~dreamer_trl.behavior.make_actor`).
        value: the value model, or None with an estimate that needs none (V_R).
        imagination_env: the :class:`~dreamer_trl.imagination.ImaginationEnv` (its RSSM and reward head).
        horizon, gamma: H and the discount (V1: 15, 0.99).
        lmbda: lambda of the default estimate V_lambda (ignored when ``value_estimate`` is given).
        value_estimate: an estimate of :mod:`~dreamer_trl.objectives.value_estimates`.
        share_value: put the value predictions v(s_1..s_{H-1}) with their graph into the returned data, so
            :class:`ValueLoss` reuses them instead of a second forward pass over the same states (same
            numbers, as the official code evaluates the value head once on ``imag_feat``).
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
        with set_exploration_type(ExplorationType.RANDOM):
            roll = self.rssm.imagine(state, belief, self.actor.module, self.horizon)              # (N, H, .)
        states, beliefs = roll[keys.STATE], roll[keys.BELIEF]                                     # s_1..s_H
        if self.start_targets:                                                                     # s_0..s_H
            states, beliefs = torch.cat([state[:, None], states], 1), torch.cat([belief[:, None], beliefs], 1)
        reward = self.reward_head(states, beliefs)                                                 # (N, L, 1)
        value = self.value.module(states, beliefs) if self.estimate.needs_value else None          # (N, L, 1)
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
            data.set(k.value, value[:, :-1])  # with its graph, for ValueLoss
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
