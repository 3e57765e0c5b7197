"""TorchRL's own Dreamer V1, wired as its ``sota-implementations/dreamer`` recipe wires it (torchrl 0.14.1).

The baseline that ``bench_update.py``, ``profile_update.py`` and ``learn_dmc.py`` compare dreamer_trl
against. Built only from TorchRL's public API: ``ObsEncoder``/``ObsDecoder`` (pixels), ``RSSMPrior``,
``RSSMPosterior``, ``RSSMRollout``, ``WorldModelWrapper``, ``DreamerEnv``, ``DreamerActor``, ``MLP``,
``DreamerModelLoss``, ``DreamerActorLoss`` (+ ``make_value_estimator(gamma, lmbda)``) and
``DreamerValueLoss``, at the sizes of a dreamer_trl :class:`~dreamer_trl.config.DreamerConfig`.

Where this differs from the recipe, and why:

- sizes come from our ``DreamerConfig`` (the recipe's actor has depth 3; ours, the paper's, 4), so both
  implementations do the same arithmetic;
- vector observations: TorchRL's ``ObsEncoder`` is conv-only, so the encoder and decoder are ELU
  ``MLP``s of ``world_model.vector_layers`` x ``vector_units`` (as ours). The observation is stored as
  ``[O, 1, 1]`` because ``DreamerModelLoss`` sums the reconstruction error over the last three dims
  (with ``[B, T, O]`` it would sum over the batch too);
- the recipe's ``sample().reshape(-1, L)`` on a ``SliceSampler(strict_length=False)`` mixes trajectories;
  :func:`make_replay_buffer` uses ``strict_length=True``.

Layout (TorchRL's): rows ``[B, T]`` hold ``"state"``, ``"belief"`` (the carried recurrent state; row 0
starts the rollout), ``"action"`` a_t, ``("next", obs_key)`` o_{t+1} as float32, ``("next", "reward")``,
``("next", "done" | "terminated")``, and ``obs_key`` o_t (the recipe stores both, float32).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn
from torch.nn.utils import clip_grad_norm_
from torchrl.data import Bounded, Composite, LazyMemmapStorage, SliceSampler, TensorDictReplayBuffer, Unbounded
from torchrl.envs import DreamerEnv
from torchrl.modules import (
    MLP,
    DreamerActor,
    IndependentNormal,
    ObsDecoder,
    ObsEncoder,
    RSSMPosterior,
    RSSMPrior,
    RSSMRollout,
    TanhNormal,
    WorldModelWrapper,
)
from torchrl.objectives.dreamer import DreamerActorLoss, DreamerModelLoss, DreamerValueLoss

from dreamer_trl.config import DreamerConfig

RECO = {"pixels": "reco_pixels", "observation": "reco_observation"}


class VectorEncoder(nn.Module):
    """ELU MLP on a vector observation stored as ``[*N, O, 1, 1]`` -> ``[*N, E]`` (ELU output, as ours)."""

    def __init__(self, obs_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(in_features=obs_dim, out_features=hidden, depth=layers, num_cells=hidden,
                       activation_class=nn.ELU, activate_last_layer=True)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation.flatten(-3))


class VectorDecoder(nn.Module):
    """ELU MLP (state, belief) -> ``[*N, O, 1, 1]``, the mean of N(., 1)."""

    def __init__(self, feature_dim: int, obs_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = MLP(in_features=feature_dim, out_features=obs_dim, depth=layers, num_cells=hidden,
                       activation_class=nn.ELU)

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        return self.net(state, belief)[..., None, None]


def _normal_head(in_keys, loc_key, out_key, event_dim: int, net: nn.Module) -> ProbabilisticTensorDictSequential:
    """``net`` -> loc, then IndependentNormal(loc, 1): how the recipe wraps decoder, reward and value."""
    return ProbabilisticTensorDictSequential(
        TensorDictModule(net, in_keys=in_keys, out_keys=[loc_key]),
        ProbabilisticTensorDictModule(in_keys=[loc_key], out_keys=[out_key], distribution_class=IndependentNormal,
                                      distribution_kwargs={"scale": 1.0, "event_dim": event_dim}),
    )


@dataclass
class TorchRLDreamer:
    """The networks, losses and optimizers of TorchRL's Dreamer V1; :meth:`update` is one recipe update."""

    obs_key: str
    world_model: WorldModelWrapper
    actor: ProbabilisticTensorDictSequential
    value: ProbabilisticTensorDictSequential
    imagination_env: DreamerEnv
    parts: dict[str, nn.Module]
    model_loss: DreamerModelLoss
    actor_loss: DreamerActorLoss
    value_loss: DreamerValueLoss
    grad_clip: float = 100.0
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def update(self, batch: TensorDictBase, timings: dict[str, list[float]] | None = None,
               sync: Callable[[], None] = lambda: None) -> dict[str, torch.Tensor]:
        """World model, then actor, then value: each forward, backward, clip 100 and Adam step in turn
        (sota-implementations/dreamer/dreamer.py). ``timings`` collects seconds per phase when given."""
        groups = (("world_model", self.model_loss, self.world_model, ("loss_model_kl", "loss_model_reco",
                                                                     "loss_model_reward")),
                  ("actor", self.actor_loss, self.actor, ("loss_actor",)),
                  ("value", self.value_loss, self.value, ("loss_value",)))
        data, metrics = batch, {}
        for name, loss_module, net, loss_keys in groups:
            start = time.perf_counter()
            loss_td, data = loss_module(data if name != "actor" else data.reshape(-1))
            loss = sum(loss_td[k] for k in loss_keys).squeeze()
            opt = self.optimizers[name]
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(net.parameters(), self.grad_clip)
            opt.step()
            metrics.update({k: v.detach() for k, v in loss_td.items()})
            if timings is not None:
                sync()
                timings.setdefault(name, []).append(time.perf_counter() - start)
        return metrics


def make_torchrl_dreamer(obs_key: str, obs_dim: int | None, action_dim: int, cfg: DreamerConfig | None = None,
                         device="cpu") -> TorchRLDreamer:
    """TorchRL's Dreamer V1 at our sizes (``cfg.world_model``, the actor's and critic's widths), hyperparameters
    (the world-model loss, the behaviour's horizon and returns) and learning rates (``cfg.optim``).

    Args:
        obs_key: "pixels" (3x64x64, conv) or "observation" (vector of ``obs_dim``, MLPs).
    """
    cfg = cfg or DreamerConfig()
    wm, loss, b, optim = cfg.world_model, cfg.world_model.loss, cfg.behavior, cfg.optim
    H = wm.rssm.hidden
    if H != wm.rssm.belief_dim:
        raise ValueError("TorchRL's RSSMPrior needs world_model.rssm.hidden == world_model.rssm.belief_dim (it "
                         f"crashes otherwise), got {H} and {wm.rssm.belief_dim}")
    S, D = wm.latent.state_dim, wm.rssm.belief_dim
    action_spec = Bounded(-1.0, 1.0, (action_dim,), device=device)
    if obs_key == "pixels":
        encoder = ObsEncoder(channels=wm.cnn_depth, in_channels=3)
        decoder = ObsDecoder(channels=wm.cnn_depth, latent_dim=S + D, out_channels=3)
        embed_dim = 8 * wm.cnn_depth * 4  # 4 stride-2 convs on 64x64: 256 x 2 x 2 at depth 32
    elif obs_key == "observation":
        encoder = VectorEncoder(obs_dim, wm.vector_units, wm.vector_layers)
        decoder = VectorDecoder(S + D, obs_dim, wm.vector_units, wm.vector_layers)
        embed_dim = wm.vector_units
    else:
        raise ValueError(f"obs_key must be 'pixels' or 'observation', got {obs_key!r}")
    prior = RSSMPrior(action_spec=action_spec, hidden_dim=H, rnn_hidden_dim=D, state_dim=S,
                      action_dim=action_dim)
    posterior = RSSMPosterior(hidden_dim=H, state_dim=S, rnn_hidden_dim=D, obs_embed_dim=embed_dim)
    reward_net = MLP(out_features=1, depth=wm.head_layers, num_cells=wm.units, activation_class=nn.ELU)

    rollout = RSSMRollout(
        TensorDictModule(prior, in_keys=["state", "belief", "action"],
                         out_keys=[("next", "prior_mean"), ("next", "prior_std"), "_", ("next", "belief")]),
        TensorDictModule(posterior, in_keys=[("next", "belief"), ("next", "encoded_latents")],
                         out_keys=[("next", "posterior_mean"), ("next", "posterior_std"), ("next", "state")]),
    )
    transition = TensorDictSequential(
        TensorDictModule(encoder, in_keys=[("next", obs_key)], out_keys=[("next", "encoded_latents")]),
        rollout,
        _normal_head([("next", "state"), ("next", "belief")], "loc", ("next", RECO[obs_key]), 3, decoder),
    )
    reward = _normal_head([("next", "state"), ("next", "belief")], ("next", "loc"), ("next", "reward"), 1, reward_net)
    world_model = WorldModelWrapper(transition, reward).to(device)

    # Imagination env: the prior and the reward head (shared weights), as _dreamer_make_mbenv.
    env_model = WorldModelWrapper(
        TensorDictSequential(TensorDictModule(prior, in_keys=["state", "belief", "action"],
                                              out_keys=["_", "_", "state", "belief"])),
        _normal_head(["state", "belief"], "loc", "reward", 1, reward_net),
    )
    imagination_env = DreamerEnv(world_model=env_model, prior_shape=torch.Size([S]), belief_shape=torch.Size([D]),
                                 device=device)
    imagination_env.action_spec = action_spec
    imagination_env.observation_spec = Composite(state=Unbounded((S,)), belief=Unbounded((D,)), device=device)
    imagination_env.reward_spec = Unbounded((1,), device=device)
    imagination_env.state_spec = imagination_env.observation_spec.clone()

    actor_net = DreamerActor(out_features=action_dim, depth=b.actor.layers, num_cells=b.actor.units, activation_class=nn.ELU)
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(actor_net, in_keys=["state", "belief"], out_keys=["loc", "scale"]),
        ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["action"], distribution_class=TanhNormal,
                                      distribution_kwargs={"tanh_loc": True},
                                      default_interaction_type=InteractionType.RANDOM),
    ).to(device)
    value = _normal_head(["state", "belief"], "loc", "state_value", 1,
                         MLP(out_features=1, depth=b.critic.layers, num_cells=b.critic.units, activation_class=nn.ELU)).to(device)
    # Smoke call (lazy layers get their shapes here, before the optimizers see the parameters).
    with torch.no_grad():
        value(actor(imagination_env.fake_tensordict().unsqueeze(-1)))
        world_model(fake_batch(obs_key, obs_dim, action_dim, 1, 2, (S, D), device))

    model_loss = DreamerModelLoss(world_model, lambda_kl=loss.kl_scale, free_nats=loss.free_nats)
    if obs_key == "observation":
        model_loss.set_keys(pixels="observation", reco_pixels="reco_observation")
    actor_loss = DreamerActorLoss(actor, value, imagination_env, imagination_horizon=b.horizon, discount_loss=True)
    actor_loss.make_value_estimator(gamma=b.gamma, lmbda=b.lmbda)
    value_loss = DreamerValueLoss(value, discount_loss=True, gamma=b.gamma)
    # The recipe's optimizers: plain Adam (default eps) at the configured learning rates.
    optimizers = {"world_model": torch.optim.Adam(world_model.parameters(), lr=optim.model_lr),
                  "actor": torch.optim.Adam(actor.parameters(), lr=optim.actor_lr),
                  "value": torch.optim.Adam(value.parameters(), lr=optim.value_lr)}
    parts = {"encoder": encoder, "decoder": decoder, "prior": prior, "posterior": posterior, "reward": reward_net,
             "actor": actor_net}
    return TorchRLDreamer(obs_key, world_model, actor, value, imagination_env, parts, model_loss, actor_loss,
                          value_loss, optim.grad_clip, optimizers)


def obs_shape(obs_key: str, obs_dim: int | None) -> tuple[int, ...]:
    """Stored shape of one observation in this layout."""
    return (3, 64, 64) if obs_key == "pixels" else (obs_dim, 1, 1)


def fake_batch(obs_key: str, obs_dim: int | None, action_dim: int, B: int, T: int, latent: tuple[int, int],
               device="cpu") -> TensorDict:
    """A synthetic ``[B, T]`` batch in TorchRL's layout (float32 observations and next observations); ``latent``
    is (state_dim, belief_dim)."""
    shape, (S, D) = obs_shape(obs_key, obs_dim), latent

    def obs() -> dict:
        return {obs_key: torch.rand(B, T, *shape), "state": torch.zeros(B, T, S),
                "belief": torch.zeros(B, T, D)}

    flag = torch.zeros(B, T, 1, dtype=torch.bool)
    return TensorDict({**obs(), "action": torch.rand(B, T, action_dim) * 2 - 1,
                       "next": {**obs(), "reward": torch.rand(B, T, 1), "done": flag, "terminated": flag.clone()}},
                      [B, T], device=device)


def make_replay_buffer(capacity: int, batch_size: int, seq_len: int, scratch_dir: str | None = None,
                       traj_key="episode") -> TensorDictReplayBuffer:
    """The recipe's buffer (memory-mapped storage, ``SliceSampler``), with whole ``seq_len`` windows."""
    return TensorDictReplayBuffer(
        storage=LazyMemmapStorage(capacity, scratch_dir=scratch_dir or tempfile.mkdtemp(prefix="trl_rb_")),
        sampler=SliceSampler(slice_len=seq_len, strict_length=True, traj_key=traj_key, cache_values=False),
        batch_size=batch_size * seq_len,
    )
