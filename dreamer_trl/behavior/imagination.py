"""Imagination: a TorchRL model-based env over the learned prior, and the fast tensor rollout.

:class:`ImaginationEnv` subclasses ``torchrl.envs.model_based.ModelBasedEnvBase``: ``reset`` takes the
start states ("state", "belief"), ``step`` applies the prior (:meth:`RSSM.prior_step`) and the reward
head's point prediction. It drives TorchRL's own ``DreamerActorLoss``. :meth:`RSSM.imagine` runs the same step function
on plain tensors for the whole horizon in one call; it is what :class:`~dreamer_trl.objectives.ActorLoss`
uses. With the same random stream both give the same trajectory (tested).

Shapes: start "state" ``[N, S]``, "belief" ``[N, D]``; rollout ``[N, H, .]``; "reward" ``[N, H, 1]``.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based import ModelBasedEnvBase
from torchrl.modules import WorldModelWrapper

from dreamer_trl import keys
from dreamer_trl.model.rssm import RSSM
from dreamer_trl.model.world_model import HeadPrediction, latent_module


class PriorStep(nn.Module):
    """(state, belief, action) -> (next state, next belief) through the prior."""

    def __init__(self, rssm: RSSM):
        super().__init__()
        self.rssm = rssm

    def forward(self, state, belief, action):
        _, state, belief = self.rssm.prior_step(state, belief, action)
        return state, belief


class ImaginationEnv(ModelBasedEnvBase):
    """Latent imagination env (Dreamer Sec. 3): never done, any batch size."""

    def __init__(self, world_model: WorldModelWrapper, state_dim: int, belief_dim: int, action_dim: int,
                 device="cpu"):
        super().__init__(world_model, device=device, allow_done_after_reset=True)
        self.observation_spec = Composite(state=Unbounded((state_dim,)), belief=Unbounded((belief_dim,)))
        self.state_spec = self.observation_spec.clone()
        self.action_spec = Bounded(-1.0, 1.0, (action_dim,))
        self.reward_spec = Unbounded((1,))

    def any_done(self, tensordict) -> bool:  # imagination never ends; avoids a device sync
        return False

    def maybe_reset(self, tensordict):
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or keys.STATE not in tensordict.keys():
            shape = tensordict.batch_size if tensordict is not None else self.batch_size
            return self.state_spec.zero(shape).to(self.device)
        return tensordict.select(keys.STATE, keys.BELIEF).detach().clone()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super()._step(tensordict)
        shape = out.get(keys.REWARD).shape
        done = torch.zeros(shape, dtype=torch.bool, device=out.device)
        out.set("done", done)
        out.set("terminated", done.clone())
        return out


def make_imagination_env(world_model, device="cpu") -> ImaginationEnv:
    """The imagination env sharing the networks of a :class:`~dreamer_trl.model.world_model.DreamerWorldModel`."""
    rssm = world_model.rssm
    transition = TensorDictModule(PriorStep(rssm), in_keys=[keys.STATE, keys.BELIEF, keys.ACTION],
                                  out_keys=[keys.STATE, keys.BELIEF])
    env_model = WorldModelWrapper(transition, latent_module(HeadPrediction(world_model.reward_head), keys.REWARD))
    return ImaginationEnv(env_model, rssm.state_dim, rssm.belief_dim, rssm.action_dim, device=device)
