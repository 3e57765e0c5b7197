"""Actor, value head and the real-environment policy as TensorDictModules.

- :func:`make_actor`: "state", "belief" -> "action" (tanh-Gaussian; samples under exploration type
  RANDOM or unset, ``tanh(mean)`` under DETERMINISTIC/MODE/MEAN). Its input features are detached.
- :func:`make_value`: "state", "belief" -> "state_value" (mean of N(v, 1)).
- :func:`make_policy`: acting in the real env. Encoder, one RSSM filtering step and the actor, carrying
  "state", "belief" and "prev_action" from step to step, then additive Gaussian noise (0.3) that is
  switched off under ``set_exploration_type(ExplorationType.DETERMINISTIC)`` (evaluation).
  The env needs the carry keys: append ``policy_carry_transform(...)`` to it.

Shapes: "state" ``[*N, S]``, "belief" ``[*N, D]``, "action"/"prev_action" ``[*N, A]``, "is_init" ``[*N, 1]``.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import Compose, TensorDictPrimer, Transform
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import AdditiveGaussianModule, WorldModelWrapper

from dreamer_trl import keys
from dreamer_trl.networks import ScalarHead, TanhNormalActor
from dreamer_trl.config import ModelConfig
from dreamer_trl.world_model import FeatureHead, world_model_parts


def _deterministic() -> bool:
    return exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)


class ActorFromFeatures(nn.Module):
    """(state, belief) -> action; stop-gradient on the features (official ``_imagine_ahead``)."""

    def __init__(self, net: TanhNormalActor):
        super().__init__()
        self.net = net

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, belief], -1).detach(), deterministic=_deterministic())


def make_actor(feature_dim: int, action_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """Dreamer V1 action model (4x400 ELU, mean scale 5, init std 5) as a TensorDictModule."""
    cfg = cfg or ModelConfig()
    net = TanhNormalActor(feature_dim, action_dim, cfg.mlp_hidden, cfg.actor_layers)
    return TensorDictModule(ActorFromFeatures(net), in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.ACTION])


def make_value(feature_dim: int, cfg: ModelConfig | None = None) -> TensorDictModule:
    """Dreamer V1 value model (3x400 ELU) as a TensorDictModule writing "state_value"."""
    cfg = cfg or ModelConfig()
    net = FeatureHead(ScalarHead(feature_dim, cfg.mlp_hidden, cfg.value_layers))
    return TensorDictModule(net, in_keys=[keys.STATE, keys.BELIEF], out_keys=[keys.STATE_VALUE])


class RecurrentPolicy(TensorDictModuleBase):
    """One filtering step then the actor: (o_t, s_{t-1}, h_{t-1}, a_{t-1}, is_init) -> (s_t, h_t, a_t).

    Uses :meth:`RSSM.observe_step`, the same computation as one iteration of the training observe loop.
    """

    def __init__(self, encoder: nn.Module, rssm: nn.Module, actor: TanhNormalActor, obs_key: str):
        super().__init__()
        self.encoder, self.rssm, self.actor = encoder, rssm, actor
        self.in_keys = [obs_key, keys.STATE, keys.BELIEF, keys.PREV_ACTION, keys.IS_INIT]
        self.out_keys = [keys.STATE, keys.BELIEF, keys.ACTION]

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, state, belief, prev_action, is_init = (tensordict.get(k) for k in self.in_keys)
        embed = self.encoder(obs)
        state, belief = self.rssm.observe_step(state, belief, prev_action, embed, is_init.bool())
        action = self.actor(torch.cat([state, belief], -1), deterministic=_deterministic())
        tensordict.set(keys.STATE, state)
        tensordict.set(keys.BELIEF, belief)
        tensordict.set(keys.ACTION, action)
        return tensordict


def make_policy(world_model: WorldModelWrapper, actor: TensorDictModule, action_spec,
                exploration_noise: float = 0.3) -> TensorDictSequential:
    """Real-environment policy: encoder, posterior, actor, then N(0, ``exploration_noise``) noise, clipped."""
    parts = world_model_parts(world_model)
    core = RecurrentPolicy(parts["encoder"], parts["rssm"], actor.module.net, parts["obs_key"])
    spec = action_spec if isinstance(action_spec, Composite) else Composite(action=action_spec)
    noise = AdditiveGaussianModule(spec=spec, sigma_init=1.0, sigma_end=1.0, annealing_num_steps=1,
                                   mean=0.0, std=exploration_noise)
    return TensorDictSequential(core, noise)


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
