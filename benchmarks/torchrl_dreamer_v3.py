"""TorchRL's own DreamerV3 (torchrl 0.14.1), built from its public API at the official model sizes.

The baseline of the V3 comparisons: update throughput (this script) and learning from proprioception
(``learn_dmc.py --impl torchrl_v3``, driven by :func:`run_torchrl_v3`).

    python benchmarks/torchrl_dreamer_v3.py --size size1m --obs state --steps 3
    python benchmarks/torchrl_dreamer_v3.py --size size12m --obs pixels --steps 3 --action_dim 6
    python benchmarks/torchrl_dreamer_v3.py --size size12m --obs pixels --device cuda --compile --bf16

Prints one JSON object: median ms per update after ``--warmup`` updates, peak memory (process peak RSS
and its growth over the build and the updates; ``max_memory_allocated`` on CUDA) and parameter counts.
An update is TorchRL's ``DreamerV3OptimizationStepper.step``: ``DreamerV3Loss`` (world model, imagined
actor and critic, replay critic), one backward of the summed ``loss_*`` terms, one ``DreamerV3Optimizer``
step over all parameters, then the slow-critic ``SoftUpdate``. Batches are random ``[B, T]`` TensorDicts in
TorchRL's replay layout (:func:`fake_batch`); the cost does not depend on the values.

Built as ``sota-implementations/dreamer_v3`` wires it (``dreamer_v3_agent.py``, ``train.py``), from the
public classes ``DreamerV3MLP``, ``DreamerV3ImageEncoder``/``Decoder``, ``RSSMPriorV3`` (block GRU),
``RSSMPosteriorV3``, ``RSSMRolloutV3``, ``RSSMStateEstimatorV3``, ``SymExpTwoHot``, ``DreamerEnv``,
``WorldModelWrapper``, ``DreamerV3ModelLoss``/``ActorLoss``/``ValueLoss``/``Loss``, ``DreamerV3Optimizer``,
``DreamerV3OptimizationStepper``, ``DreamerV3UpdateRatio`` and ``SoftUpdate``, with the values of the
official configuration (danijar/dreamerv3 configs.yaml at e3f0224, the ``dmc_proprio`` preset's
source) that the recipe's ``config.yaml`` also uses. The recipe's private actor and decoder classes are
re-expressed with ``DreamerV3MLP`` (a depth-0 ``DreamerV3MLP`` is one initialised linear head).

The recipe itself cannot run from the installed wheel: it imports hydra (not installed) and the wheel
ships neither ``config.yaml`` nor ``config_dmc_walker.yaml``; hence :func:`run_torchrl_v3`.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import DreamerEnv
from torchrl.modules import (
    DreamerV3ImageDecoder,
    DreamerV3ImageEncoder,
    DreamerV3MLP,
    IndependentNormal,
    RSSMPosteriorV3,
    RSSMPriorV3,
    RSSMRolloutV3,
    RSSMStateEstimatorV3,
    SymExpTwoHot,
    WorldModelWrapper,
    symexp,
    symlog,
)
from torchrl.objectives import (
    DreamerV3ActorLoss,
    DreamerV3Loss,
    DreamerV3ModelLoss,
    DreamerV3ValueLoss,
)
from torchrl.objectives.utils import SoftUpdate, ValueEstimators
from torchrl.trainers.algorithms import DreamerV3OptimizationStepper, DreamerV3Optimizer

from dreamer_trl.config.sizes import V3_SIZES, V3Size

IMAGE_SHAPE = (3, 64, 64)


# The official sizes (configs.yaml ``sizeXm``: deter, hidden, classes, depth, units; 32 categoricals), the
# same table our builder reads, plus a tiny one for tests.
SIZES = {**V3_SIZES, "debug": V3Size(deter=64, hidden=16, classes=4, depth=4, units=16, stoch=4)}


@dataclass(frozen=True)
class V3Hyper:
    """Everything but the size, at the official current values (configs.yaml e3f0224, TorchRL's config.yaml)."""

    blocks: int = 8
    """block-GRU groups"""
    dyn_layers: int = 1
    """block-linear layers in the recurrent core"""
    img_layers: int = 2
    """prior (dynamics predictor) hidden layers"""
    obs_layers: int = 1
    """posterior hidden layers"""
    enc_layers: int = 3
    """vector encoder layers"""
    dec_layers: int = 3
    """vector decoder layers"""
    head_layers: int = 1
    """reward and continue head hidden layers"""
    actor_layers: int = 3
    """actor hidden layers"""
    value_layers: int = 3
    """critic hidden layers"""
    cnn_mults: tuple[int, ...] = (2, 3, 4, 4)
    """CNN channel multipliers"""
    kernel: int = 5
    """CNN kernel size"""
    bins: int = 255
    """two-hot bins of reward and critic"""
    unimix: float = 0.01
    """uniform mix of the latent categoricals"""
    norm_eps: float = 1e-4
    """RMSNorm epsilon"""
    min_std: float = 0.1
    """actor minimum std"""
    max_std: float = 1.0
    """actor maximum std"""
    free_nats: float = 1.0
    """free nats of each KL term (on the sum over categoricals)"""
    dyn_scale: float = 1.0
    """dynamics KL scale"""
    rep_scale: float = 0.1
    """representation KL scale"""
    horizon: int = 15
    """imagination length"""
    return_horizon: float = 333.0
    """discount 1 - 1/horizon, learned through the continue target"""
    lmbda: float = 0.95
    """lambda of the lambda-returns"""
    entropy: float = 3e-4
    """actor entropy bonus"""
    reinforce: bool = True
    """REINFORCE actor gradient (official current: for every action space)"""
    retnorm_rate: float = 0.01
    """EMA rate of the 5th/95th return percentiles"""
    slow_reg: float = 1.0
    """critic regulariser toward the slow critic"""
    slow_tau: float = 0.02
    """slow critic EMA fraction per update"""
    repval_scale: float = 0.3
    """replay critic loss scale"""
    lr: float = 4e-5
    """DreamerV3Optimizer (LaProp-style) learning rate"""
    agc: float = 0.3
    """adaptive gradient clipping"""
    eps: float = 1e-20
    """optimizer epsilon"""
    lr_warmup: int = 1000
    """linear learning-rate warm-up updates"""


class VectorDecoder(nn.Module):
    """(state, belief) -> observation: an RMSNorm/SiLU trunk, one linear head per observation key (as the
    official DictHead and the recipe), predicting symlog(o); returns symexp of it."""

    def __init__(self, in_features: int, event_dims: tuple[int, ...], units: int, layers: int, eps: float):
        super().__init__()
        self.trunk = DreamerV3MLP(in_features, None, depth=layers, num_cells=units, norm_eps=eps)
        self.heads = nn.ModuleList(DreamerV3MLP(units, n, depth=0) for n in event_dims)

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(state, belief)
        return symexp(torch.cat([head(hidden) for head in self.heads], -1))


class BoundedNormalActor(nn.Module):
    """(state, belief) -> (loc, scale): loc = tanh(mean), scale in [min_std, max_std] (official
    ``bounded_normal``); output layers scaled by 0.01 at init."""

    def __init__(self, in_features: int, action_dim: int, units: int, layers: int, hyper: V3Hyper):
        super().__init__()
        self.trunk = DreamerV3MLP(in_features, None, depth=layers, num_cells=units, norm_eps=hyper.norm_eps)
        self.mean = DreamerV3MLP(units, action_dim, depth=0, outscale=0.01)
        self.std = DreamerV3MLP(units, action_dim, depth=0, outscale=0.01)
        self.min_std, self.max_std = hyper.min_std, hyper.max_std

    def forward(self, state: torch.Tensor, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(state, belief)
        scale = (self.max_std - self.min_std) * torch.sigmoid(self.std(hidden) + 2.0) + self.min_std
        return torch.tanh(self.mean(hidden)), scale


def _nets(*modules: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


@dataclass
class TorchRLDreamerV3:
    """TorchRL's DreamerV3 learner and acting policy; :meth:`update` is one recipe update."""

    obs_key: str
    size: V3Size
    world_model: TensorDictSequential
    actor: ProbabilisticTensorDictSequential
    value: TensorDictSequential
    policy: TensorDictSequential
    loss: DreamerV3Loss
    stepper: DreamerV3OptimizationStepper
    params: dict[str, int] = field(default_factory=dict)

    def update(self, batch: TensorDictBase) -> TensorDictBase:
        """One update on a ``[B, T]`` batch; writes the posterior under ``batch["replay_context"]``."""
        return self.stepper.step(None, batch)


def make_torchrl_dreamer_v3(obs_key: str, obs_dim: int | None, action_dim: int, size: str | V3Size = "size1m",
                            event_dims: tuple[int, ...] | None = None, hyper: V3Hyper | None = None,
                            device="cpu", compile: bool = False, bf16: bool = False) -> TorchRLDreamerV3:
    """TorchRL's DreamerV3 at a named size.

    Args:
        obs_key: "observation" (vector of ``obs_dim``, symlog inputs and targets) or "pixels" (3x64x64 uint8).
        event_dims: sizes of the observation's keys, one decoder head each (default: one head).
        compile: the recipe's CUDA path: the whole forward/backward compiled (RSSM as a scan) and, on CUDA,
            captured in a CUDA graph; needs :meth:`DreamerV3OptimizationStepper.warmup` before updates.
        bf16: bfloat16 autocast of the forward/backward on CUDA (the walker preset's choice).
    """
    hp, sz = hyper or V3Hyper(), SIZES[size] if isinstance(size, str) else size
    S, D, U, A = sz.stoch * sz.classes, sz.deter, sz.units, action_dim
    feat = S + D
    if obs_key == "observation":
        encoder = TensorDictSequential(
            TensorDictModule(symlog, in_keys=[("next", obs_key)], out_keys=[("next", "symlog_observation")]),
            TensorDictModule(DreamerV3MLP(obs_dim, None, depth=hp.enc_layers, num_cells=U, norm_eps=hp.norm_eps),
                             in_keys=[("next", "symlog_observation")], out_keys=[("next", "encoded_latents")]))
        embed_dim = U
        decoder = VectorDecoder(feat, tuple(event_dims or (obs_dim,)), U, hp.dec_layers, hp.norm_eps)
        reco_key = "reco_observation"
    elif obs_key == "pixels":
        image_encoder = DreamerV3ImageEncoder(3, sz.depth, hp.cnn_mults, hp.kernel, hp.norm_eps)
        encoder = TensorDictModule(image_encoder, in_keys=[("next", obs_key)], out_keys=[("next", "encoded_latents")])
        embed_dim = image_encoder.output_features(IMAGE_SHAPE)
        decoder = DreamerV3ImageDecoder(feat, IMAGE_SHAPE, sz.depth, hp.cnn_mults, hp.kernel, hp.blocks, hp.norm_eps)
        reco_key = "reco_pixels"
    else:
        raise ValueError(f"obs_key must be 'observation' or 'pixels', got {obs_key!r}")
    if event_dims is not None and sum(event_dims) != obs_dim:
        raise ValueError(f"event_dims {event_dims} must sum to obs_dim {obs_dim}")

    prior = RSSMPriorV3(action_shape=torch.Size([A]), hidden_dim=sz.hidden, rnn_hidden_dim=D,
                        num_categoricals=sz.stoch, num_classes=sz.classes, action_dim=A, unimix=hp.unimix,
                        recurrent_model="block_gru", num_blocks=hp.blocks, num_layers=hp.dyn_layers,
                        prior_num_layers=hp.img_layers, norm_eps=hp.norm_eps)
    posterior = RSSMPosteriorV3(hidden_dim=sz.hidden, num_categoricals=sz.stoch, num_classes=sz.classes,
                                rnn_hidden_dim=D, obs_embed_dim=embed_dim, unimix=hp.unimix, use_rms_norm=True,
                                num_layers=hp.obs_layers, norm_eps=hp.norm_eps)
    rollout = RSSMRolloutV3(
        TensorDictModule(prior, in_keys=["state", "belief", "action"],
                         out_keys=[("next", "prior_logits"), ("next", "state"), ("next", "belief")]),
        TensorDictModule(posterior, in_keys=[("next", "belief"), ("next", "encoded_latents")],
                         out_keys=[("next", "posterior_logits"), ("next", "state")]),
        reset_key="is_init")
    reward_net = DreamerV3MLP(feat, hp.bins, depth=hp.head_layers, num_cells=U, outscale=0.0, norm_eps=hp.norm_eps)
    reward_decoder = SymExpTwoHot(hp.bins)
    continue_net = DreamerV3MLP(feat, 1, depth=hp.head_layers, num_cells=U, norm_eps=hp.norm_eps)
    nxt = [("next", "belief"), ("next", "state")]
    world_model = TensorDictSequential(
        encoder, rollout,
        TensorDictModule(decoder, in_keys=[("next", "state"), ("next", "belief")], out_keys=[("next", reco_key)]),
        TensorDictModule(reward_net, in_keys=nxt, out_keys=[("next", "reward_logits")]),
        TensorDictModule(reward_decoder, in_keys=[("next", "reward_logits")], out_keys=[("next", "reward")]),
        TensorDictModule(continue_net, in_keys=nxt, out_keys=[("next", "continue_pred")]),
    ).to(device)

    # Imagination: the prior and the reward head (shared weights) as a DreamerEnv; continuation from the
    # continue head, as sigmoid probabilities.
    imagination_env = DreamerEnv(
        world_model=WorldModelWrapper(
            TensorDictSequential(TensorDictModule(prior, in_keys=["state", "belief", "action"],
                                                  out_keys=["_", "state", "belief"])),
            TensorDictSequential(
                TensorDictModule(reward_net, in_keys=["belief", "state"], out_keys=["reward_logits"]),
                TensorDictModule(reward_decoder, in_keys=["reward_logits"], out_keys=["reward"]))),
        prior_shape=torch.Size([S]), belief_shape=torch.Size([D]), device=device)
    imagination_env.action_spec = Bounded(-1.0, 1.0, (A,), device=device)
    imagination_env.observation_spec = Composite(state=Unbounded((S,)), belief=Unbounded((D,)), device=device)
    imagination_env.reward_spec = Unbounded((1,), device=device)
    imagination_env.state_spec = imagination_env.observation_spec.clone()
    continuation = TensorDictSequential(
        TensorDictModule(continue_net, in_keys=["belief", "state"], out_keys=["continue_logits"]),
        TensorDictModule(nn.Sigmoid(), in_keys=["continue_logits"], out_keys=["continuation"]))

    actor_net = BoundedNormalActor(feat, A, U, hp.actor_layers, hp)
    actor = ProbabilisticTensorDictSequential(
        TensorDictModule(actor_net, in_keys=["state", "belief"], out_keys=["loc", "scale"]),
        ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["action"],
                                      distribution_class=IndependentNormal,
                                      default_interaction_type=InteractionType.RANDOM,
                                      return_log_prob=True, log_prob_key="action_log_prob"),
    ).to(device)
    value = TensorDictSequential(
        TensorDictModule(DreamerV3MLP(feat, hp.bins, depth=hp.value_layers, num_cells=U, outscale=0.0,
                                      norm_eps=hp.norm_eps),
                         in_keys=["belief", "state"], out_keys=["state_value_logits"]),
        TensorDictModule(SymExpTwoHot(hp.bins), in_keys=["state_value_logits"], out_keys=["state_value"]),
    ).to(device)

    # Acting (the recipe's build_real_world_actor): encode the current observation, update (state, belief)
    # with the shared prior and posterior, sample the action.
    act_encoder = [TensorDictModule(m.module, in_keys=[k[1] for k in m.in_keys], out_keys=[k[1] for k in m.out_keys])
                   for m in (encoder.module if isinstance(encoder, TensorDictSequential) else [encoder])]
    policy = TensorDictSequential(*act_encoder, RSSMStateEstimatorV3(prior, posterior), actor)

    model_loss = DreamerV3ModelLoss(
        world_model, num_reward_bins=hp.bins, free_bits=hp.free_nats, kl_mode="separate",
        lambda_dynamic=hp.dyn_scale, lambda_representation=hp.rep_scale, unimix=hp.unimix, lambda_continue=1.0,
        reco_symlog=obs_key == "observation", continue_target_scale=1 - 1 / hp.return_horizon,
        global_average=False, detach_output=False)
    model_loss.set_keys(pixels=obs_key, reco_pixels=reco_key)
    actor_loss = DreamerV3ActorLoss(actor, value, imagination_env, continuation_model=continuation,
                                    imagination_horizon=hp.horizon, entropy_bonus=hp.entropy,
                                    use_reinforce=hp.reinforce, return_normalization_rate=hp.retnorm_rate,
                                    return_normalization_min_scale=1.0)
    # gamma 1: the discount 1 - 1/333 enters through the learned continuation (official ``contdisc``).
    actor_loss.make_value_estimator(ValueEstimators.TDLambda, gamma=1.0, lmbda=hp.lmbda)
    actor_loss.to(device)
    value_loss = DreamerV3ValueLoss(value, value_loss="two_hot", num_value_bins=hp.bins, actor_loss=actor_loss,
                                    slow_critic_regularization=hp.slow_reg).to(device)
    loss = DreamerV3Loss(model_loss, actor_loss, value_loss, replay_value_loss_weight=hp.repval_scale,
                         continuation_horizon=hp.return_horizon, lmbda=hp.lmbda)
    trainable = [*world_model.parameters(), *actor.parameters(), *value_loss.parameters()]
    optimizer = DreamerV3Optimizer(trainable, lr=hp.lr, agc=hp.agc, eps=hp.eps, warmup_steps=hp.lr_warmup)
    cuda = torch.device(device).type == "cuda"
    stepper = DreamerV3OptimizationStepper(
        loss, optimizer, SoftUpdate(value_loss, tau=hp.slow_tau), compile_train_step=compile,
        cudagraph=compile and cuda, rssm_scan_unroll=8 if compile else None, warmup_steps=5 if compile else 1,
        mixed_precision=bf16 and cuda)
    params = {"world_model": _nets(world_model), "actor": _nets(actor), "value": _nets(value)}
    params["total"] = _nets(world_model, actor, value)
    assert params["total"] == _nets(*[nn.ParameterList(trainable)]), "optimizer and networks disagree"
    return TorchRLDreamerV3(obs_key, sz, world_model, actor, value, policy, loss, stepper, params)


def fake_batch(obs_key: str, obs_dim: int | None, action_dim: int, size: V3Size, B: int, T: int,
               device="cpu") -> TensorDict:
    """A random ``[B, T]`` batch in the recipe's replay layout: row t holds the carried (state, belief)
    (read at t = 0 only), ``is_init``, action a_t and ("next", ...) o_{t+1} (uint8 pixels), r, done."""
    obs = (torch.randint(0, 256, (B, T, *IMAGE_SHAPE), dtype=torch.uint8) if obs_key == "pixels"
           else torch.randn(B, T, obs_dim))
    flag = torch.zeros(B, T, 1, dtype=torch.bool)
    return TensorDict({"state": torch.zeros(B, T, size.stoch * size.classes), "belief": torch.zeros(B, T, size.deter),
                       "is_init": flag.clone(), "action": torch.rand(B, T, action_dim) * 2 - 1,
                       "next": {obs_key: obs, "reward": torch.randn(B, T, 1), "done": flag.clone(),
                                "terminated": flag.clone()}}, [B, T], device=device)


def torchrl_v3_update(size: str, obs: str, device="cpu", batch: int = 16, seq: int = 64, action_dim: int = 1,
                      obs_dim: int = 5, compile: bool = False, bf16: bool = False
                      ) -> tuple[Callable[[TensorDictBase], TensorDictBase], dict[str, int], Callable[[], TensorDict]]:
    """``(step_fn, n_params, batch_maker)``: ``step_fn(batch_maker())`` runs one full TorchRL V3 update
    (world model + actor + critic losses, one backward, one optimizer step, slow-critic update) and returns
    its metrics; ``n_params`` counts the trainable parameters (``"total"``, and per network).

    Args:
        obs: "state" (vector of ``obs_dim``, as cartpole's 5) or "pixels" (3x64x64).
    """
    obs_key = {"state": "observation", "observation": "observation", "pixels": "pixels"}[obs]
    trl = make_torchrl_dreamer_v3(obs_key, obs_dim, action_dim, size, device=device, compile=compile, bf16=bf16)
    batch_maker = lambda: fake_batch(obs_key, obs_dim, action_dim, trl.size, batch, seq, device)
    if compile:
        trl.stepper.warmup(batch_maker())
    return trl.update, trl.params, batch_maker


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="size1m", choices=sorted(SIZES))
    p.add_argument("--obs", default="state", choices=["state", "pixels"])
    p.add_argument("--steps", type=int, default=10, help="timed updates (at least 1; the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--obs_dim", type=int, default=5, help="vector observation size (cartpole: 5)")
    p.add_argument("--action_dim", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: leave as is)")
    p.add_argument("--compile", action="store_true", help="the recipe's compiled step (+ CUDA graph on CUDA)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CUDA")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.device(args.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    rss_before = _rss_mb()
    step, params, make_batch = torchrl_v3_update(args.size, args.obs, args.device, args.batch, args.seq,
                                                 args.action_dim, args.obs_dim, args.compile, args.bf16)
    batch = make_batch()

    metrics = {}

    def timed() -> float:
        sync()
        start = time.perf_counter()
        metrics.update(step(batch))
        sync()
        return 1e3 * (time.perf_counter() - start)

    warmup_ms = [timed() for _ in range(args.warmup)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = [timed() for _ in range(args.steps)]
    losses = {k: float(v) for k, v in metrics.items() if k.startswith("loss_")}  # of the last update
    if not all(math.isfinite(v) for v in losses.values()):
        raise RuntimeError(f"non-finite TorchRL V3 loss: {losses}")
    result = {
        "impl": "torchrl_v3", "size": args.size, "obs": args.obs, "batch": f"{args.batch}x{args.seq}",
        "action_dim": args.action_dim, "device": args.device, "threads": torch.get_num_threads(),
        "compile": args.compile, "bf16": args.bf16, "steps": args.steps,
        "median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "warmup_ms": warmup_ms,
        "peak_rss_mb": _rss_mb(), "rss_growth_mb": _rss_mb() - rss_before,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "params": params, "losses": losses, "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


# ---- Learning on DMC from proprioception (learn_dmc.py --impl torchrl_v3) ----


def dmc_event_dims(domain: str, task: str) -> tuple[int, ...]:
    """Sizes of a DMC task's observation keys in dm_control's order (one decoder head each)."""
    from dm_control import suite

    env = suite.load(domain, task)
    return tuple(int(math.prod(spec.shape)) for spec in env.observation_spec().values())


def run_torchrl_v3(cfg, out: Path, size: str = "size1m", train_ratio: float = 1024.0,
                   resume: bool = False) -> list[tuple[int, float]]:
    """Train TorchRL's DreamerV3 on ``cfg.env.task`` from proprioception; returns ``[(env_steps, eval_return)]``.

    The loop the recipe runs with one environment: act with the stochastic policy from the first step (no
    random prefill, as the official agent), store each transition, start updating once the buffer holds
    ``prefill_env_steps`` env steps and at least ``batch_size * (seq_len + 1)`` policy steps, then run ``DreamerV3UpdateRatio(train_ratio
    / (batch_size * seq_len))`` updates per policy step (train_ratio = replayed steps per policy step). Each
    update samples ``seq_len + 1`` steps, trains on the first ``seq_len`` and writes the posterior latents back
    into the next rows (the recipe's replay context). Evaluation: ``eval_episodes`` noise-free episodes
    (actor mode) on a separate env every ``eval_every`` env steps and at the end. Reads ``cfg.env`` (task,
    action_repeat, episode_frames), ``cfg.schedule`` (total_env_steps, prefill_env_steps, batch_size, seq_len,
    eval_every, eval_episodes, buffer_capacity) and ``cfg.run.seed``; every other value is the official one.

    After each evaluation the points so far go to ``OUT/curve_partial.csv`` and the whole learner (networks,
    optimizer, update schedule, replay through ``ReplayBuffer.dumps``, counters, RNG states, wall-clock) to
    ``OUT/resume`` (written beside, then renamed). ``resume`` continues from there: evaluations land on episode
    ends (``eval_every`` a multiple of the episode's env steps), so the training env restarts with a new episode
    as the uninterrupted run would, from its saved random state; the draws after a resume are not bitwise the
    uninterrupted run's (the reset's draw order differs), the learner's state is.
    """
    import csv
    import pickle
    import shutil

    from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp
    from torchrl.trainers.algorithms import DreamerV3UpdateRatio
    from torchrl_dreamer import make_replay_buffer

    import dreamer_trl as dt

    s, a = cfg.schedule, cfg.env.action_repeat
    domain, task = dt.split_task(cfg.env.task)
    make_env = lambda seed: dt.make_dmc_env(domain, task, from_pixels=False, action_repeat=a,
                                            episode_frames=cfg.env.episode_frames, seed=seed)
    env, eval_env = make_env(cfg.run.seed), make_env(cfg.run.seed + 10_000)
    obs_dim, action_dim = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    trl = make_torchrl_dreamer_v3("observation", obs_dim, action_dim, size, event_dims=dmc_event_dims(domain, task))
    B, T = s.batch_size, s.seq_len
    if resume:  # the live memmaps are rebuilt from the saved copy (OUT/resume/replay)
        shutil.rmtree(out / "replay", ignore_errors=True)
    buffer = make_replay_buffer(s.buffer_capacity, B, T + 1, scratch_dir=str(out / "replay"))
    ratio = DreamerV3UpdateRatio(train_ratio / (B * T))
    S, D = trl.size.stoch * trl.size.classes, trl.size.deter

    def carry() -> TensorDict:
        return TensorDict({"state": torch.zeros(S), "belief": torch.zeros(D), "previous_action": torch.zeros(action_dim)})

    def act(td: TensorDictBase, latent: TensorDict) -> TensorDict:
        """Policy step: writes td["action"] (clipped for the env); returns the new latent with the raw action."""
        inp = latent.update({"observation": td["observation"], "is_init": td["is_init"]})
        with torch.no_grad():
            trl.policy(inp)
        td["action"] = inp["action"].clamp(-1.0, 1.0)
        return TensorDict({"state": inp["state"], "belief": inp["belief"], "previous_action": inp["action"]})

    def evaluate() -> float:
        returns = []
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            for _ in range(s.eval_episodes):
                td, latent, total = eval_env.reset(), carry(), 0.0
                while True:
                    latent = act(td, latent)
                    td = eval_env.step(td)
                    total += td["next", "reward"].item()
                    if td["next", "done"].item():
                        break
                    td = step_mdp(td)
                returns.append(total)
        return sum(returns) / len(returns)

    def train_once() -> None:
        sample = buffer.sample().reshape(B, T + 1)
        index = sample["index"].reshape(B, T + 1)[:, 1:].reshape(-1)
        batch = sample[:, :-1].exclude("index")
        trl.update(batch)
        rows = buffer.storage.get(index)  # the recipe's replay context: posterior z_{t+1}, h_{t+1} into row t+1
        rows["state"] = batch["replay_context", "state"].reshape(-1, S)
        rows["belief"] = batch["replay_context", "belief"].reshape(-1, D)
        buffer.storage[index] = rows  # set_cursor=False: storage.set(index, rows) would grow len(buffer) by len(index)

    evaluations, next_eval = [], s.eval_every
    env_steps = agent_steps = episode = updates = 0
    wall0, started = 0.0, time.perf_counter()
    state_dir = out / "resume"

    def save() -> None:
        tmp = out / "resume.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        buffer.dumps(tmp / "replay")
        torch.save({"loss": trl.loss.state_dict(), "optimizer": trl.stepper.optimizer.state_dict(),
                    "ratio": ratio.state_dict(), "torch_rng": torch.get_rng_state(),
                    "counters": [env_steps, agent_steps, episode, updates, next_eval],
                    "evaluations": evaluations, "wall_s": wall0 + time.perf_counter() - started}, tmp / "learner.pt")
        (tmp / "envs.pkl").write_bytes(pickle.dumps([e._env.task.random.get_state() for e in (env, eval_env)]))
        shutil.rmtree(state_dir, ignore_errors=True)
        tmp.rename(state_dir)
        with open(out / "curve_partial.csv", "w", newline="") as f:
            csv.writer(f).writerows([("env_steps", "eval_return"), *evaluations])

    if resume:
        if not (state_dir / "learner.pt").is_file():
            raise FileNotFoundError(f"--resume: {state_dir} holds no saved learner (learner.pt); run without --resume")
        saved = torch.load(state_dir / "learner.pt", weights_only=False)
        trl.loss.load_state_dict(saved["loss"])
        trl.stepper.optimizer.load_state_dict(saved["optimizer"])
        ratio.load_state_dict(saved["ratio"])
        torch.set_rng_state(saved["torch_rng"])
        env_steps, agent_steps, episode, updates, next_eval = saved["counters"]
        evaluations, wall0 = [tuple(e) for e in saved["evaluations"]], saved["wall_s"]
        buffer.loads(state_dir / "replay")
        for e, st in zip((env, eval_env), pickle.loads((state_dir / "envs.pkl").read_bytes())):
            e._env.task.random.set_state(st)
        print(f"torchrl_v3: resumed at {env_steps} env steps, {updates} updates, {len(buffer)} rows", flush=True)
    td, latent = env.reset(), carry()
    while env_steps < s.total_env_steps:
        with set_exploration_type(ExplorationType.RANDOM):
            new_latent = act(td, latent)
        raw_action = new_latent["previous_action"]
        td = env.step(td)
        buffer.extend(TensorDict({
            "state": new_latent["state"], "belief": new_latent["belief"], "action": raw_action,
            "is_init": td["is_init"].reshape(1), "episode": torch.tensor(episode),
            "next": {"observation": td["next", "observation"], "reward": td["next", "reward"],
                     "done": td["next", "done"], "terminated": td["next", "terminated"]},
        }, []).unsqueeze(0))
        env_steps, agent_steps = env_steps + a, agent_steps + 1
        if td["next", "done"].item():
            episode += 1
            td, latent = env.reset(), carry()
        else:
            td, latent = step_mdp(td), new_latent
        if env_steps >= s.prefill_env_steps and len(buffer) >= B * (T + 1):
            for _ in range(ratio(agent_steps)):
                train_once()
                updates += 1
        if env_steps >= next_eval or env_steps >= s.total_env_steps:
            evaluations.append((env_steps, evaluate()))
            next_eval += s.eval_every
            print(f"torchrl_v3: {env_steps} env steps, {updates} updates, eval return {evaluations[-1][1]:.1f}",
                  flush=True)
            save()
    (out / "wall_clock_s").write_text(f"{wall0 + time.perf_counter() - started:.1f}")
    return evaluations


if __name__ == "__main__":
    main()
