"""The world model as TensorDictModules composed into TorchRL's ``WorldModelWrapper``.

:class:`DreamerWorldModel` is a ``WorldModelWrapper(transition, reward)`` whose transition part is
``TensorDictSequential(observe=RSSMObserve[, decoder=...])``, each part named (so are the parameters): the encoder and the whole observe loop over T run in
one module call (the TensorDict boundary is at its input and output, not at each time step). Its parts
are attributes: ``encoder``, ``rssm``, ``decoder`` (None without an observation model), ``reward_head``,
``state_model`` (the contrastive objective's q(s_t | o_t), else None), plus ``obs_key`` and ``reco_key``.

Shapes (batch ``[*B, T]``, time last):
    in:  "pixels" uint8 ``[*B, T, 3, 64, 64]`` or "observation" ``[*B, T, O]``; "prev_action" ``[*B, T, A]``;
         "is_init" bool ``[*B, T, 1]``.
    out: "encoded_latents" ``[*B, T, E]``; "state" and the latent's "prior_<p>", "posterior_<p>"
         ``[*B, T, S]``; "belief" ``[*B, T, D]``; "reco_pixels" ``[*B, T, 3, 64, 64]`` (or
         "reco_observation"), when there is a decoder; "reward" ``[*B, T, 1]``, the reward head's raw
         output for the reward that came with o_t.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import WorldModelWrapper

from dreamer_trl import keys
from dreamer_trl.model.latent import param_keys
from dreamer_trl.model.rssm import RSSM

OBS_KEYS = (keys.PIXELS, keys.OBSERVATION)


class RSSMObserve(TensorDictModuleBase):
    """Encoder + posterior filtering over a whole ``[*B, T]`` sequence in one call (Dreamer Eq. 1)."""

    def __init__(self, encoder: nn.Module, rssm: RSSM, obs_key: str = keys.PIXELS):
        super().__init__()
        self.encoder, self.rssm = encoder, rssm
        names = rssm.latent.names
        self.in_keys = [obs_key, keys.PREV_ACTION, keys.IS_INIT]
        self.out_keys = [keys.ENCODED_LATENTS, keys.STATE, keys.BELIEF, *param_keys("prior", names),
                         *param_keys("posterior", names)]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, prev_action, is_init = (tensordict.get(k) for k in self.in_keys)
        embed = self.encoder(obs)
        state, belief = tensordict.get(keys.CONTEXT_STATE, None), tensordict.get(keys.CONTEXT_BELIEF, None)
        if state is not None:  # a replay context: the window starts from its stored posterior ([*B, T, .] rows)
            state, belief = state[..., 0, :], belief[..., 0, :]
        out = self.rssm.observe(embed, prev_action, is_init, state, belief)
        tensordict.set(keys.ENCODED_LATENTS, embed)
        for k in self.out_keys[1:]:
            tensordict.set(k, out[k])
        return tensordict


class HeadPrediction(nn.Module):
    """(state, belief) -> the head's point prediction ``head.pred(head(state, belief))``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.head.pred(self.head(state, belief))


def latent_module(net: nn.Module, out_key) -> TensorDictModule:
    """TensorDictModule reading ("state", "belief") and writing ``out_key``."""
    return TensorDictModule(net, in_keys=[keys.STATE, keys.BELIEF], out_keys=[out_key])


class DreamerWorldModel(WorldModelWrapper):
    """Encoder, RSSM, optional decoder and the reward head, as a TorchRL ``WorldModelWrapper``.

    Args:
        encoder: observation -> embedding ``[*N, E]``.
        rssm: the :class:`~dreamer_trl.model.rssm.RSSM`.
        decoder: a head on the features (``pred``/``nll``) writing the reconstruction, or None (no
            observation model: the reward-only and contrastive objectives).
        reward_head: a head on the features writing "reward".
        obs_key: "pixels" or "observation".
        state_model: the contrastive objective's q(s_t | o_t) on the embedding, or None.
    """

    def __init__(self, encoder: nn.Module, rssm: RSSM, decoder: nn.Module | None, reward_head: nn.Module,
                 obs_key: str = keys.PIXELS, state_model: nn.Module | None = None):
        if obs_key not in OBS_KEYS:
            raise ValueError(f"obs_key must be one of {OBS_KEYS}, got {obs_key!r}")
        reco_key = keys.RECO_KEYS[obs_key]
        transition = OrderedDict(observe=RSSMObserve(encoder, rssm, obs_key))
        if decoder is not None:
            transition["decoder"] = latent_module(decoder, reco_key)
        # WorldModelWrapper(transition, reward) numbers its two parts; named, so are the parameters
        # ("module.transition.module.observe.encoder...", "module.reward.module...").
        TensorDictSequential.__init__(self, OrderedDict(transition=TensorDictSequential(transition),
                                                        reward=latent_module(reward_head, keys.REWARD)))
        self.obs_key, self.reco_key = obs_key, reco_key
        self.state_model = state_model

    def get_transition_model_operator(self) -> TensorDictSequential:
        """The transition part: ``observe`` (encoder and RSSM) and, with an observation model, ``decoder``."""
        return self.module["transition"]

    def get_reward_operator(self) -> TensorDictModule:
        return self.module["reward"]

    @property
    def _observe(self) -> RSSMObserve:
        return self.get_transition_model_operator()["observe"]

    @property
    def encoder(self) -> nn.Module:
        return self._observe.encoder

    @property
    def rssm(self) -> RSSM:
        return self._observe.rssm

    @property
    def decoder(self) -> nn.Module | None:
        transition = self.get_transition_model_operator().module
        return transition["decoder"].module if "decoder" in transition else None

    @property
    def reward_head(self) -> nn.Module:
        return self.get_reward_operator().module
