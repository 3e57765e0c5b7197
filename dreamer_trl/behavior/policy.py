"""Acting in the real environment: a filter, then a behaviour, then exploration noise.

- :class:`Filter`: encoder + one posterior step, (o_t, s_{t-1}, h_{t-1}, a_{t-1}, is_init) -> (s_t, h_t),
  the same computation as one iteration of the training observe loop (:meth:`RSSM.observe_step`).
- a behaviour (:mod:`dreamer_trl.behavior.actors`): "state", "belief" -> "action" (the actor; a planner).
- :func:`make_policy`: filter + behaviour + additive Gaussian noise (0.3), switched off under
  ``set_exploration_type(ExplorationType.DETERMINISTIC)`` (evaluation); runs without autograd.
  The env carries "state", "belief" and "prev_action" from step to step: append
  ``policy_carry_transform(...)`` to it (after any dtype transforms such as ``DoubleToFloat``: the carried
  action is cast to the dtype it declares), and ``InitTracker`` for "is_init".
- The policy works at any batch shape: the action spec's batch dimensions (e.g. a ``ParallelEnv``'s ``[n]``)
  are dropped, so one policy serves the batched training env, a collector's worker and a single eval env.
- Pixels: uint8 ``[0, 255]`` or float ``[0, 1]`` (TorchRL's ``ToTensorImage``), see
  :func:`~dreamer_trl.model.pixels.pixels_as_uint8`; both reach the encoder centred, ``x / 255 - 0.5``.

Shapes: "state" ``[*N, S]``, "belief" ``[*N, D]``, "action"/"prev_action" ``[*N, A]``, "is_init" ``[*N, 1]``.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.data import Bounded, Composite, OneHot, Unbounded
from torchrl.envs import Compose, TensorDictPrimer, Transform
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import AdditiveGaussianModule

from dreamer_trl import keys
from dreamer_trl.model.pixels import pixels_as_uint8


class Filter(TensorDictModuleBase):
    """One filtering step: (o_t, s_{t-1}, h_{t-1}, a_{t-1}, is_init) -> (s_t, h_t) (Dreamer Eq. 1)."""

    def __init__(self, encoder: nn.Module, rssm: nn.Module, obs_key: str):
        super().__init__()
        self.encoder, self.rssm = encoder, rssm
        self.obs_key = obs_key
        self.in_keys = [obs_key, keys.STATE, keys.BELIEF, keys.PREV_ACTION, keys.IS_INIT]
        self.out_keys = [keys.STATE, keys.BELIEF]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, state, belief, prev_action, is_init = (tensordict.get(k, None) for k in self.in_keys)
        if any(v is None for v in (obs, state, belief, prev_action, is_init)):
            raise keys.MissingKeysError(missing_keys_message(tensordict, self.in_keys))
        if self.obs_key == keys.PIXELS:
            obs = pixels_as_uint8(obs, self.obs_key)
        state, belief = self.rssm.observe_step(state, belief, prev_action, self.encoder(obs), is_init.bool())
        tensordict.set(keys.STATE, state)
        tensordict.set(keys.BELIEF, belief)
        return tensordict


def missing_keys_message(tensordict: TensorDictBase, needed: list) -> str:
    """Which of ``needed`` the policy's input lacks, and which env transform provides each."""
    present = set(tensordict.keys(include_nested=True))
    missing = [k for k in needed if k not in present]
    carried = [k for k in missing if k in (keys.STATE, keys.BELIEF, keys.PREV_ACTION)]
    hints = []
    if carried:
        hints.append("append dreamer_trl.policy_carry_transform(state_dim, belief_dim, action_dim) to the env: it "
                     f"carries {', '.join(map(repr, carried))} from step to step")
    if keys.IS_INIT in missing:
        hints.append(f"{keys.IS_INIT!r} comes from torchrl.envs.InitTracker()")
    other = [k for k in missing if k not in carried and k != keys.IS_INIT]
    if other:
        hints.append(f"{', '.join(map(repr, other))} is the world model's observation key")
    return (f"the policy's input lacks {', '.join(map(repr, missing))} (it has {sorted(map(str, present))}); "
            + "; ".join(hints))


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


def action_leaf(action_spec):
    """One env's action spec ``[A]``: the "action" entry of a composite spec, leading batch dims dropped."""
    leaf = action_spec
    if isinstance(action_spec, Composite):
        leaf = action_spec[keys.ACTION]
    while len(leaf.shape) > 1:  # the action is [A]; leading dims are the env's batch
        leaf = leaf[0]
    return leaf


def is_discrete(action_spec) -> bool:
    """The actions are one-hot vectors (TorchRL ``OneHot``: a discrete action space); False for None."""
    return action_spec is not None and isinstance(action_leaf(action_spec), OneHot)


def make_policy(world_model, behavior: TensorDictModule, action_spec, exploration_noise: float = 0.3,
                act_with_mode: bool = False) -> ActingPolicy:
    """Real-environment policy: the world model's filter, ``behavior`` (e.g. the actor), then
    N(0, ``exploration_noise``) noise, clipped to the action spec. The behaviour samples in training
    (the paper) unless ``act_with_mode`` (its mode plus the noise, TorchRL's recipe).

    ``action_spec`` may carry batch dimensions (a batched env's ``[*E, A]``, or its composite spec of shape
    ``[*E]``): they are dropped, so the policy runs at any batch shape. Discrete (one-hot) actions take no noise:
    the behaviour's samples explore (``exploration_noise`` must be 0).
    """
    leaf = action_leaf(action_spec)
    acting = ModeOf(behavior) if act_with_mode else behavior
    filt = Filter(world_model.encoder, world_model.rssm, world_model.obs_key)
    if isinstance(leaf, OneHot):
        if exploration_noise:
            raise ValueError(f"exploration_noise {exploration_noise}: Gaussian noise applies to continuous actions, "
                             "these are one-hot (discrete); use 0")
        return ActingPolicy(filt, acting)
    noise = AdditiveGaussianModule(spec=Composite(action=leaf), sigma_init=1.0, sigma_end=1.0, annealing_num_steps=1,
                                   mean=0.0, std=exploration_noise)
    return ActingPolicy(filt, acting, noise)


class PreviousAction(Transform):
    """Writes the action just taken into the next step's "prev_action"; zeros at reset.

    The action reaches ``_step`` as the base env takes it (after inverse transforms: float64 under
    ``DoubleToFloat`` for TorchRL's ``DMControlEnv``), so it is cast to ``dtype``, the dtype declared in the spec.
    """

    def __init__(self, action_dim: int, dtype: torch.dtype = torch.float32):
        super().__init__(in_keys=[], out_keys=[keys.PREV_ACTION])
        self.action_dim, self.dtype = action_dim, dtype

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        next_tensordict.set(keys.PREV_ACTION, tensordict.get(keys.ACTION).detach().to(self.dtype, copy=True))
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        zeros = torch.zeros(*tensordict_reset.batch_size, self.action_dim, dtype=self.dtype,
                            device=tensordict_reset.device)
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        if reset is not None and tensordict.get(keys.PREV_ACTION, None) is not None:
            zeros = torch.where(reset, zeros, tensordict.get(keys.PREV_ACTION))
        tensordict_reset.set(keys.PREV_ACTION, zeros)
        return tensordict_reset

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[keys.PREV_ACTION] = Bounded(
            -1.0, 1.0, (*observation_spec.shape, self.action_dim), dtype=self.dtype, device=observation_spec.device
        )
        return observation_spec


def policy_carry_transform(state_dim: int, belief_dim: int, action_dim: int,
                           dtype: torch.dtype = torch.float32) -> Compose:
    """Env transforms that carry the policy's recurrent state: zero "state"/"belief" primers + "prev_action",
    all of ``dtype`` (the model's) whatever the base env's action dtype."""
    primer = TensorDictPrimer(
        state=Unbounded((state_dim,), dtype=dtype), belief=Unbounded((belief_dim,), dtype=dtype),
        default_value=0.0, random=False, expand_specs=True,
    )
    return Compose(primer, PreviousAction(action_dim, dtype))


def carry_transform(world_model, action_dim: int, dtype: torch.dtype = torch.float32) -> Compose:
    """:func:`policy_carry_transform` sized from a built world model (its RSSM's state and belief widths): the
    transform to append to a TorchRL env whose policy is :func:`make_policy` over ``world_model``."""
    return policy_carry_transform(world_model.rssm.state_dim, world_model.rssm.belief_dim, action_dim, dtype)
