"""The world model as TensorDictModules composed into TorchRL's ``WorldModelWrapper``.

``make_world_model`` returns ``WorldModelWrapper(transition, reward)`` where the transition part is
``TensorDictSequential(RSSMObserve, decoder)``: the encoder and the whole observe loop over T run in
one module call (the TensorDict boundary is at its input and output, not at each time step).

Shapes (batch ``[*B, T]``, time last):
    in:  "pixels" uint8 ``[*B, T, 3, 64, 64]`` or "observation" ``[*B, T, O]``; "prev_action" ``[*B, T, A]``;
         "is_init" bool ``[*B, T, 1]``.
    out: "encoded_latents" ``[*B, T, E]``; "state", "prior_mean", "prior_std", "posterior_mean",
         "posterior_std" ``[*B, T, S]``; "belief" ``[*B, T, D]``; "reco_pixels" ``[*B, T, 3, 64, 64]``
         (or "reco_observation"); "reward" ``[*B, T, 1]``, the predicted reward that came with o_t.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.modules import WorldModelWrapper

from dreamer_trl import keys
from dreamer_trl.config import ModelConfig
from dreamer_trl.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, ScalarHead
from dreamer_trl.rssm import RSSM


class FeatureHead(nn.Module):
    """Applies a network to the features concat(s_t, h_t)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, belief], -1))


class RSSMObserve(TensorDictModuleBase):
    """Encoder + posterior filtering over a whole ``[*B, T]`` sequence in one call (Dreamer Eq. 1)."""

    def __init__(self, encoder: nn.Module, rssm: RSSM, obs_key: str = keys.PIXELS):
        super().__init__()
        self.encoder, self.rssm = encoder, rssm
        self.in_keys = [obs_key, keys.PREV_ACTION, keys.IS_INIT]
        self.out_keys = [keys.ENCODED_LATENTS, keys.STATE, keys.BELIEF, keys.PRIOR_MEAN, keys.PRIOR_STD,
                         keys.POSTERIOR_MEAN, keys.POSTERIOR_STD]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs, prev_action, is_init = (tensordict.get(k) for k in self.in_keys)
        embed = self.encoder(obs)
        out = self.rssm.observe(embed, prev_action, is_init)
        tensordict.set(keys.ENCODED_LATENTS, embed)
        for k in self.out_keys[1:]:
            tensordict.set(k, out[k])
        return tensordict


def feature_module(net: nn.Module, out_key) -> TensorDictModule:
    """TensorDictModule reading ("state", "belief") and writing ``out_key``."""
    return TensorDictModule(FeatureHead(net), in_keys=[keys.STATE, keys.BELIEF], out_keys=[out_key])


def make_world_model(obs_key: str, obs_shape: tuple[int, ...], action_dim: int,
                     cfg: ModelConfig | None = None) -> WorldModelWrapper:
    """Build encoder, RSSM, decoder and reward head as a ``WorldModelWrapper``.

    Args:
        obs_key: "pixels" (conv encoder/decoder, obs_shape ``(3, 64, 64)``) or "observation" (MLPs).
        obs_shape: shape of one observation.
        action_dim: A.
        cfg: sizes; paper defaults when None.
    """
    cfg = cfg or ModelConfig()
    if obs_key == keys.PIXELS:
        if tuple(obs_shape) != (3, 64, 64):
            raise ValueError(f"'pixels' must have shape (3, 64, 64) for the conv encoder, got {tuple(obs_shape)}")
        encoder = ConvEncoder(cfg.cnn_depth)
    elif obs_key == keys.OBSERVATION:
        if len(obs_shape) != 1:
            raise ValueError(f"'observation' must be a flat vector [O], got shape {tuple(obs_shape)}")
        encoder = MLPEncoder(obs_shape[0], cfg.mlp_hidden, cfg.obs_layers, cfg.mlp_hidden)
    else:
        raise ValueError(f"obs_key must be 'pixels' or 'observation', got {obs_key!r}")
    rssm = RSSM(action_dim, encoder.out_dim, cfg.state_dim, cfg.belief_dim, cfg.rssm_hidden, cfg.min_std)
    feat = rssm.feature_dim
    decoder = (ConvDecoder(feat, cfg.cnn_depth) if obs_key == keys.PIXELS
               else MLPDecoder(feat, obs_shape[0], cfg.mlp_hidden, cfg.obs_layers))
    transition = TensorDictSequential(
        RSSMObserve(encoder, rssm, obs_key), feature_module(decoder, keys.RECO_KEYS[obs_key])
    )
    reward = feature_module(ScalarHead(feat, cfg.mlp_hidden, cfg.reward_layers), keys.REWARD)
    return WorldModelWrapper(transition, reward)


def world_model_parts(world_model: WorldModelWrapper) -> dict:
    """The plain networks inside a world model built by :func:`make_world_model`, and its "obs_key"."""
    observe = world_model.get_transition_model_operator()[0]
    decoder = world_model.get_transition_model_operator()[1].module.net
    return {
        "encoder": observe.encoder,
        "rssm": observe.rssm,
        "decoder": decoder,
        "reward": world_model.get_reward_operator().module.net,
        "obs_key": observe.in_keys[0],
    }
