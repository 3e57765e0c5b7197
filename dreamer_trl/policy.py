"""Acting in the real environment: a filter, then a behaviour, then exploration noise.

- :class:`Filter`: encoder + one posterior step, (o_t, s_{t-1}, h_{t-1}, a_{t-1}, is_init) -> (s_t, h_t),
  the same computation as one iteration of the training observe loop (:meth:`RSSM.observe_step`).
- a behaviour (:mod:`dreamer_trl.behavior`): "state", "belief" -> "action" (the actor; a planner).
- :func:`make_policy`: filter + behaviour + additive Gaussian noise (0.3), switched off under
  ``set_exploration_type(ExplorationType.DETERMINISTIC)`` (evaluation); runs without autograd.
  The env carries "state", "belief" and "prev_action" from step to step: append
  ``policy_carry_transform(...)`` to it.

Shapes: "state" ``[*N, S]``, "belief" ``[*N, D]``, "action"/"prev_action" ``[*N, A]``, "is_init" ``[*N, 1]``.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import Compose, TensorDictPrimer, Transform
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import AdditiveGaussianModule

from dreamer_trl import keys


class Filter(TensorDictModuleBase):
    """One filtering step: (o_t, s_{t-1}, h_{t-1}, a_{t-1}, is_init) -> (s_t, h_t) (Dreamer Eq. 1)."""

    def __init__(self, encoder: nn.Module, rssm: nn.Module, obs_key: str):
        super().__init__()
        self.encoder, self.rssm = encoder, rssm
        self.in_keys = [obs_key, keys.STATE, keys.BELIEF, keys.PREV_ACTION, keys.IS_INIT]
        self.out_keys = [keys.STATE, keys.BELIEF]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, state, belief, prev_action, is_init = (tensordict.get(k) for k in self.in_keys)
        state, belief = self.rssm.observe_step(state, belief, prev_action, self.encoder(obs), is_init.bool())
        tensordict.set(keys.STATE, state)
        tensordict.set(keys.BELIEF, belief)
        return tensordict


class ActingPolicy(TensorDictSequential):
    """Filter, behaviour and noise in sequence, without autograd."""

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase, *args, **kwargs) -> TensorDictBase:
        return super().forward(tensordict, *args, **kwargs)


class ModeOf(TensorDictModuleBase):
    """Runs a behaviour under the DETERMINISTIC exploration type (its mode), whatever the caller's type,
    so that the noise after it still follows the caller's (TorchRL's recipe acts with mode + noise)."""

    def __init__(self, behavior: TensorDictModule):
        super().__init__()
        self.behavior = behavior
        self.in_keys, self.out_keys = behavior.in_keys, behavior.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            return self.behavior(tensordict)


def make_policy(world_model, behavior: TensorDictModule, action_spec, exploration_noise: float = 0.3,
                act_with_mode: bool = False) -> ActingPolicy:
    """Real-environment policy: the world model's filter, ``behavior`` (e.g. the actor), then
    N(0, ``exploration_noise``) noise, clipped to the action spec. The behaviour samples in training
    (the paper) unless ``act_with_mode`` (its mode plus the noise, TorchRL's recipe)."""
    spec = action_spec if isinstance(action_spec, Composite) else Composite(action=action_spec)
    noise = AdditiveGaussianModule(spec=spec, sigma_init=1.0, sigma_end=1.0, annealing_num_steps=1,
                                   mean=0.0, std=exploration_noise)
    acting = ModeOf(behavior) if act_with_mode else behavior
    return ActingPolicy(Filter(world_model.encoder, world_model.rssm, world_model.obs_key), acting, noise)


class PreviousAction(Transform):
    """Writes the action just taken into the next step's "prev_action"; zeros at reset."""

    def __init__(self, action_dim: int):
        super().__init__(in_keys=[], out_keys=[keys.PREV_ACTION])
        self.action_dim = action_dim

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        next_tensordict.set(keys.PREV_ACTION, tensordict.get(keys.ACTION).detach().clone())
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        zeros = torch.zeros(*tensordict_reset.batch_size, self.action_dim, device=tensordict_reset.device)
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        if reset is not None and tensordict.get(keys.PREV_ACTION, None) is not None:
            zeros = torch.where(reset, zeros, tensordict.get(keys.PREV_ACTION))
        tensordict_reset.set(keys.PREV_ACTION, zeros)
        return tensordict_reset

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[keys.PREV_ACTION] = Bounded(
            -1.0, 1.0, (*observation_spec.shape, self.action_dim), device=observation_spec.device
        )
        return observation_spec


def policy_carry_transform(state_dim: int, belief_dim: int, action_dim: int) -> Compose:
    """Env transforms that carry the policy's recurrent state: zero "state"/"belief" primers + "prev_action"."""
    primer = TensorDictPrimer(
        state=Unbounded((state_dim,)), belief=Unbounded((belief_dim,)),
        default_value=0.0, random=False, expand_specs=True,
    )
    return Compose(primer, PreviousAction(action_dim))
