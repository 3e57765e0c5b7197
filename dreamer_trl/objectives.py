"""Dreamer V1 objectives as TorchRL LossModules (Hafner et al. 2020, arXiv:1912.01603).

Like TorchRL's Dreamer losses, each ``forward`` returns ``(loss TensorDict, data)`` so the three chain:
``WorldModelLoss`` -> posterior states -> ``ActorLoss`` -> imagined states and V_lambda -> ``ValueLoss``.
Keys are renamable with ``set_keys``; outputs are ``loss_*`` scalars (plus diagnostics).

Shapes: B batch, T time, N = B*T imagination starts, H horizon; targets ``[N, H-1, 1]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import WorldModelWrapper
from torchrl.objectives import LossModule

from dreamer_trl import keys
from dreamer_trl.imagination import ImaginationEnv
from dreamer_trl.networks import preprocess_pixels

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_kl(mean_q, std_q, mean_p, std_p) -> torch.Tensor:
    """KL(N(mean_q, std_q) || N(mean_p, std_p)) summed over the last dim (diagonal Gaussians)."""
    kl = torch.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5
    return kl.sum(-1)


def free_nats_kl(kl: torch.Tensor, free_nats: float) -> torch.Tensor:
    """max(mean KL, free_nats): the clamp acts on the batch mean, as the official code does.

    Clamping each element instead (TorchRL's default) zeroes the KL gradient while most elements are
    below the threshold, e.g. at initialisation.
    """
    return kl.mean().clamp_min(free_nats)


def lambda_return(reward: torch.Tensor, value: torch.Tensor, bootstrap: torch.Tensor,
                  gamma: float, lmbda: float) -> torch.Tensor:
    """V_lambda of Dreamer Eq. 6, computed backwards along dim -2.

    V_t = r_t + gamma * ((1 - lambda) * v_{t+1} + lambda * V_{t+1}), with V_T = v_T = ``bootstrap``.

    Args:
        reward: r_t ``[..., T, 1]`` (reward of imagined state t); value: v_t ``[..., T, 1]``;
        bootstrap: v_T ``[..., 1]``.
    """
    next_values = torch.cat([value[..., 1:, :], bootstrap.unsqueeze(-2)], -2)
    inputs = reward + gamma * (1 - lmbda) * next_values
    returns, agg = [], bootstrap
    for t in reversed(range(reward.shape[-2])):
        agg = inputs[..., t, :] + gamma * lmbda * agg
        returns.append(agg)
    return torch.stack(returns[::-1], -2)


def discount_weights(length: int, gamma: float, device=None) -> torch.Tensor:
    """Cumulative discount [1, gamma, gamma^2, ...] as ``[length, 1]``, weighting imagined steps."""
    return (gamma ** torch.arange(length, device=device, dtype=torch.float32)).unsqueeze(-1)


def _gaussian_nll(target: torch.Tensor, mean: torch.Tensor, event_dims: int) -> torch.Tensor:
    """-log N(target | mean, 1), summed over the trailing ``event_dims``."""
    nll = 0.5 * (target - mean) ** 2 + _HALF_LOG_2PI
    return nll.sum(tuple(range(-event_dims, 0))) if event_dims else nll


class WorldModelLoss(LossModule):
    """-log p(o|s) - log p(r|s) + kl_scale * max(mean KL(q || p), free_nats)  (Dreamer Eq. 10; PlaNet).

    The reward of row t (the one that came with o_t) is ``("next", "reward")`` of row t-1, so the
    reward term uses rows 1..T-1 of each sequence (never across an ``is_init``).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            observation: the observation ("pixels" or "observation").
            reco_observation: its reconstruction mean ("reco_pixels" or "reco_observation").
            reward: the real reward ``("next", "reward")``.
            reward_pred: the reward head's mean at each row.
            is_init: episode-start flags.
            prior_mean, prior_std, posterior_mean, posterior_std: the RSSM's Gaussians.
        """

        observation: NestedKey = keys.PIXELS
        reco_observation: NestedKey = keys.RECO_PIXELS
        reward: NestedKey = keys.NEXT_REWARD
        reward_pred: NestedKey = keys.REWARD
        is_init: NestedKey = keys.IS_INIT
        prior_mean: NestedKey = keys.PRIOR_MEAN
        prior_std: NestedKey = keys.PRIOR_STD
        posterior_mean: NestedKey = keys.POSTERIOR_MEAN
        posterior_std: NestedKey = keys.POSTERIOR_STD

    default_keys = _AcceptedKeys

    def __init__(self, world_model: WorldModelWrapper, *, kl_scale: float = 1.0, free_nats: float = 3.0):
        super().__init__()
        self.world_model = world_model
        self.kl_scale = kl_scale
        self.free_nats = free_nats

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDictBase]:
        k = self.tensor_keys
        obs = tensordict.get(k.observation)
        target = preprocess_pixels(obs)  # once, for the encoder and the reconstruction target
        tensordict = self.world_model(tensordict.copy().set(k.observation, target))
        tensordict.set(k.observation, obs)
        kl = gaussian_kl(tensordict.get(k.posterior_mean), tensordict.get(k.posterior_std),
                         tensordict.get(k.prior_mean), tensordict.get(k.prior_std))       # (B, T)
        event_dims = obs.dim() - tensordict.batch_dims
        # -log N(o | mean, 1) summed over the event dims, averaged over rows; fused to spare temporaries
        rows = target.shape[: target.dim() - event_dims].numel()
        dims = target.shape[target.dim() - event_dims:].numel()
        reco = 0.5 * F.mse_loss(tensordict.get(k.reco_observation), target, reduction="sum") / rows \
            + dims * _HALF_LOG_2PI
        reward_nll = _gaussian_nll(tensordict.get(k.reward)[..., :-1, :], tensordict.get(k.reward_pred)[..., 1:, :], 1)
        valid = (~tensordict.get(k.is_init)[..., 1:, :].bool()).squeeze(-1).to(reward_nll.dtype)
        reward = (reward_nll * valid).sum() / valid.sum().clamp_min(1)
        loss = TensorDict(
            loss_model_kl=self.kl_scale * free_nats_kl(kl, self.free_nats),
            loss_model_reco=reco,
            loss_model_reward=reward,
            kl=kl.mean().detach(),
            # 1 when the clamp is active: the prior, trained only by this term, gets no gradient
            kl_clamped=(kl.mean() < self.free_nats).to(kl.dtype).detach(),
        )
        return loss, tensordict.detach()


class ActorLoss(LossModule):
    """-E[sum_t gamma^t V_lambda(s_t)] over imagined trajectories (Dreamer Eq. 7, official ``_train``).

    Imagines ``horizon`` steps from every posterior state of the batch (stop-gradient starts) with the
    fast rollout over the imagination env's prior. Rewards and bootstrap values are the heads' means.
    V_lambda is computed for the imagined states s_1..s_{H-1}; s_H bootstraps. Gradients flow through
    the dynamics into the actions; apply them to the actor's parameters only (``backward(inputs=...)``).
    Returns the imagined states, "lambda_target" and "discount" (detached) for :class:`ValueLoss`.

    With ``share_value=True`` the returned data also holds the value head's predictions v(s_1..s_{H-1})
    with their graph, so :class:`ValueLoss` reuses them instead of a second forward pass over the same
    states (same numbers, as in the official code, which evaluates the value head once on ``imag_feat``).
    Back-propagate the actor loss with ``retain_graph=True`` then (``DreamerUpdate`` does).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            state, belief: the posterior start states.
            reward: the imagination env's reward key; value: the value head's output key.
            lambda_target: where V_lambda is written in the returned data.
        """

        state: NestedKey = keys.STATE
        belief: NestedKey = keys.BELIEF
        reward: NestedKey = keys.REWARD
        value: NestedKey = keys.STATE_VALUE
        lambda_target: NestedKey = keys.LAMBDA_TARGET

    default_keys = _AcceptedKeys

    def __init__(self, actor: TensorDictModule, value: TensorDictModule, imagination_env: ImaginationEnv, *,
                 horizon: int = 15, gamma: float = 0.99, lmbda: float = 0.95, share_value: bool = False):
        super().__init__()
        self.share_value = share_value
        if horizon < 2:
            raise ValueError(f"horizon must be >= 2, got {horizon}")
        self.actor, self.value = actor, value
        self.__dict__["imagination_env"] = imagination_env
        model = imagination_env.world_model
        self.rssm = model.get_transition_model_operator().module.rssm
        self.reward_head = model.get_reward_operator().module
        self.horizon, self.gamma, self.lmbda = horizon, gamma, lmbda

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        k = self.tensor_keys
        state = tensordict.get(k.state).detach()
        belief = tensordict.get(k.belief).detach()
        state, belief = state.reshape(-1, state.shape[-1]), belief.reshape(-1, belief.shape[-1])  # (N, S), (N, D)
        # LossModule.forward runs under DETERMINISTIC exploration; imagination samples actions (rsample).
        with set_exploration_type(ExplorationType.RANDOM):
            roll = self.rssm.imagine(state, belief, self.actor.module, self.horizon)              # (N, H, .)
        reward = self.reward_head(roll[keys.STATE], roll[keys.BELIEF])                             # (N, H, 1)
        value = self.value.module(roll[keys.STATE], roll[keys.BELIEF])                              # (N, H, 1)
        returns = lambda_return(reward[:, :-1], value[:, :-1], value[:, -1], self.gamma, self.lmbda)
        discount = discount_weights(self.horizon - 1, self.gamma, returns.device)                  # (H-1, 1)
        loss = TensorDict(loss_actor=-(discount * returns).mean(), imagined_reward=reward.mean().detach())
        n = state.shape[0]
        data = TensorDict(
            {k.state: roll[keys.STATE][:, :-1], k.belief: roll[keys.BELIEF][:, :-1],
             keys.ACTION: roll[keys.ACTION][:, :-1], k.reward: reward[:, :-1], k.lambda_target: returns,
             "discount": discount.expand(n, -1, -1)},
            batch_size=[n, self.horizon - 1],
        ).detach()
        if self.share_value:
            data.set(k.value, value[:, :-1])  # with its graph, for ValueLoss
        return loss, data


class ValueLoss(LossModule):
    """E[sum_t gamma^t 1/2 (v(s_t) - V_lambda(s_t))^2] on stop-gradient imagined states (Dreamer Eq. 8).

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
