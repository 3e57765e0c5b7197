"""The whole training run from the config: :func:`make_trainer`, used by the recipe in one process and on every
torchrun rank alike, so every ``--run.*`` flag (compile, async collection, threads, precision...) means the same.

    with make_world(cfg) as world, make_trainer(cfg, preset, world) as trainer:
        summary = trainer.run()

Data-parallel ranks (``torchrun --nproc-per-node 2 recipes/dreamer_dmc.py --preset state``, or ``--nnodes 2
--nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500``): every rank collects with its own envs
(seed + rank) into its own replay shard and trains on its own batches; the update is made data-parallel by
:mod:`dreamer_trl.training.distributed` (gradients averaged per phase, parameters broadcast from rank 0 and checked
every ``run.check_every`` updates). The ranks run in lockstep: they collect the same number of env steps per
batch, so their counters and update counts agree without communication.

Rank 0 logs, shows the progress bar and evaluates. Checkpoints: every rank saves its own replay shard, random
streams and counters (rank r > 0 in ``RUN/checkpoints_rank<r>/STEP``), then rank 0 saves ``RUN/checkpoints/STEP``
last, so a rank-0 checkpoint exists only when every shard of it does. ``run.world_size`` is recorded in the
config; a checkpoint resumes only with as many ranks (:func:`check_world_size`), each rank from its own shard,
exactly on CPU.

Stopping: SIGTERM/SIGINT to any rank is shared at the next lockstep point (every update and collected batch):
all ranks checkpoint and exit 143/130. A rank that dies without saving (SIGKILL) makes the others' next
collective fail; torchrun then stops them, and the last complete checkpoint stays the one to resume.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchrl.record.loggers import CSVLogger, TensorboardLogger

from dreamer_trl import keys
from dreamer_trl.builders.agent import Agent, make_agent, make_env, make_envs, make_update
from dreamer_trl.config import DreamerConfig, RunConfig, to_dict
from dreamer_trl.data.replay import check_disk_space, make_replay_buffer
from dreamer_trl.run import timeline
from dreamer_trl.run.checkpoint import read_meta
from dreamer_trl.training.acceleration import autocast_context, compile_networks
from dreamer_trl.training.collection import AsyncCollection, SyncCollection
from dreamer_trl.training.distributed import (
    World,
    init,
    local_device,
    make_data_parallel,
    rank_seed,
)
from dreamer_trl.training.trainer import Trainer, resolve_device, seed_everything
from dreamer_trl.training.update import DreamerUpdate

EVAL_SEED_OFFSET = 10_000
"""the evaluation env's seed is the collecting env's + this"""


def make_world(cfg: DreamerConfig) -> World:
    """The torchrun ranks this process is one of (joining their process group), or one process."""
    return init(resolve_device(cfg.run.device))


def make_trainer(cfg: DreamerConfig, preset: str, world: World | None = None) -> Trainer:
    """Everything a run needs, in order: the world size checked (a fresh run records it), threads and seeds, the
    envs, the agent with its policy and updater (compiled if asked, made data-parallel over ``world``), the run
    directory (rank 0's, shared), this rank's replay buffer, rank 0's loggers, and the collection strategy."""
    world = World() if world is None else world
    check_world_size(cfg, world)  # a checkpoint of a data-parallel run resumes only under torchrun
    device = local_device(resolve_device(cfg.run.device), world)
    if device.type == "cuda" and world.distributed:
        torch.cuda.set_device(device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)  # the same initialisation everywhere (rank 0's is broadcast anyway)
    seed = rank_seed(cfg.run.seed, world)

    # Environments, then the agent, its policy and updater (build() smoke-tests the policy on a fake step).
    env, eval_env = make_train_envs(cfg, seed)
    agent, policy, updater = build(cfg, env, device)
    if cfg.run.compile:
        compile_networks(agent.world_model, agent.actor, agent.value, backend=cfg.run.compile_backend, device=device)
    if world.distributed:
        make_data_parallel(agent, updater, world, cfg.run.check_every)
        seed_everything(seed)  # each rank its own stream for collection, replay sampling and update noise

    # Where the run lives: config.json, the replay buffer (disk space checked first), logs.
    run_dir = Path(world.share_text(str(make_run_dir(cfg, preset)) if world.is_main else ""))
    rank_cfg = rank_config(cfg, world, run_dir)
    buffer = make_buffer(rank_cfg, env, run_dir, device)
    loggers = make_loggers(cfg.run, run_dir) if world.is_main else []
    return Trainer(rank_cfg, preset, run_dir, env=env, eval_env=eval_env, agent=agent, policy=policy,
                   updater=updater, buffer=buffer, loggers=loggers, device=device,
                   collection=make_collection(cfg, env, seed), world=world)


def make_train_envs(cfg: DreamerConfig, seed: int):
    """(the training env: ``env.num_envs`` of them as one batched env; the evaluation env), specs checked."""
    from torchrl.envs.utils import check_env_specs

    faults = physics_faults(cfg)
    env = make_envs(cfg, seed, cfg.env.num_envs, cfg.env.parallel_envs, **faults)
    eval_env = make_env(cfg, seed + EVAL_SEED_OFFSET, **faults)
    check_env_specs(env)
    return env, eval_env


def physics_faults(cfg: DreamerConfig) -> dict:
    return {"max_physics_errors": cfg.run.max_physics_errors, "physics_error_window": cfg.run.physics_error_window}


def make_collection(cfg: DreamerConfig, env, seed: int):
    """In this process over ``env``, or (``run.async_collection``) in a worker process seeded from ``seed``."""
    if not cfg.run.async_collection:
        return SyncCollection(env)
    make = functools.partial(make_envs, cfg, num_envs=cfg.env.num_envs, parallel=False,
                             **physics_faults(cfg))
    return AsyncCollection(make, seed)


def build(cfg: DreamerConfig, env, device) -> tuple[Agent, torch.nn.Module, DreamerUpdate]:
    """The agent (networks and losses), its acting policy and the updater, on ``device``.

    The policy gets one smoke call on ``env.fake_tensordict()``, so wiring errors show before collection.
    """
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    obs_shape = tuple(env.observation_spec[obs_key].shape[len(env.batch_size):])  # one env's (batched: [N, ...])
    agent = make_agent(obs_key, obs_shape, env.action_spec.shape[-1], cfg, device,
                       action_spec=env.action_spec.to(device))
    policy = agent.policy(env.action_spec.to(device))  # with the agent's own exploration (behavior.exploration)
    with torch.no_grad():
        policy(env.fake_tensordict().to(device))
    updater = make_update(agent, cfg.optim, cfg.run.max_nonfinite_updates,
                          autocast=lambda: autocast_context(cfg.run.precision, device))
    return agent, policy, updater


def check_world_size(cfg: DreamerConfig, world: World) -> None:
    """A resumed run needs the world size it was saved with (its replay shards and random streams are per rank);
    a fresh run records this one in ``run.world_size``. SystemExit(2) with both sizes otherwise."""
    if not cfg.run.resume:
        cfg.run.world_size = world.size
    elif cfg.run.world_size != world.size:
        saved = cfg.run.world_size
        how = (f"torchrun --nproc-per-node {saved} (or {saved} ranks over the nodes)" if saved > 1
               else "one process, without torchrun")
        print(f"error: config field 'run.world_size': the checkpoint {cfg.run.resume} was written by {saved} "
              f"rank(s), this run has {world.size}; resume it with {how}", file=sys.stderr)
        raise SystemExit(2)


def rank_config(cfg: DreamerConfig, world: World, run_dir: Path) -> DreamerConfig:
    """Rank 0's config is the run's; a rank r > 0 shows no progress bar, resumes from its own shard of the
    checkpoint and keeps its replay in ``replay_rank<r>``."""
    if world.is_main:
        return cfg
    resume = cfg.run.resume and str(world.checkpoints(run_dir) / Path(cfg.run.resume).name)
    if resume and not Path(resume).is_dir():
        raise SystemExit(f"error: rank {world.rank} has no shard {resume} of the checkpoint {cfg.run.resume}")
    buffer_dir = str(Path(cfg.run.buffer_dir or run_dir) / f"replay_rank{world.rank}")
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, progress=False, resume=resume,
                                                            buffer_dir=buffer_dir))


def make_run_dir(cfg: DreamerConfig, preset: str) -> Path:
    """The run directory: the resumed one, or a new one holding ``config.json`` (the resolved config).

    A resumed run continues its timeline from the checkpoint's step: what the run directory holds after it
    (later checkpoints, log rows, videos) is moved into ``RUN/abandoned/`` first (:func:`timeline.branch`)."""
    if cfg.run.resume:
        run_dir = Path(cfg.run.resume).parent.parent  # RUN/checkpoints/STEP
        step = int(read_meta(cfg.run.resume)["env_steps"])
        moved = timeline.branch(run_dir, step)
        if moved is not None:
            print(f"resuming at env step {step}: what the run wrote after it ({moved[1].describe()}) was moved to "
                  f"{moved[0]}; the run continues from {step}", flush=True)
        return run_dir
    name = cfg.run.run_name or f"{cfg.env.task}-{preset}-s{cfg.run.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run.run_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"preset": preset, **to_dict(cfg)}, indent=2))
    return run_dir


def make_buffer(cfg: DreamerConfig, env, run_dir: Path, device):
    """The memory-mapped sequence replay buffer, once the disk is known to hold it and its checkpoint copies."""
    s, obs_key = cfg.schedule, keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    buffer_dir = Path(cfg.run.buffer_dir or run_dir / "replay")
    one_env = env.observation_spec[obs_key].shape[len(env.batch_size):]  # a batched env's spec is [N, ...]
    row_bytes = (int(np.prod(one_env)) * (1 if cfg.env.from_pixels else 4)
                 + 8 * env.action_spec.shape[-1] + 32)
    check_disk_space(buffer_dir, s.buffer_capacity, row_bytes, copies=2 + cfg.run.checkpoints_kept)
    # the replay context: one row more per window, and the rows keep their posteriors (s_t, h_t)
    context = cfg.world_model.loss.window_start == "replay_context"
    if context:
        lat = cfg.world_model.latent
        row_bytes += 4 * (lat.state_dim * (lat.classes if lat.kind == "categorical" else 1)
                          + cfg.world_model.rssm.belief_dim)
    return make_replay_buffer(s.buffer_capacity, s.batch_size, s.seq_len + int(context), scratch_dir=str(buffer_dir),
                              device=device, windows=s.replay_windows, keep_latents=context)


class BranchedTensorboardLogger(TensorboardLogger):
    """TorchRL's TensorBoard logger; in a run resumed at step S its writer starts with a purge marker, so
    TensorBoard drops the events after S written before the resume (the CSV rows are cut by timeline.branch)."""

    def __init__(self, exp_name: str, log_dir: str, resumed_at: int | None = None):
        self.resumed_at = resumed_at
        super().__init__(exp_name=exp_name, log_dir=log_dir)

    def _create_experiment(self):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if self.resumed_at is None else timeline.purge_step(self.resumed_at)
        return SummaryWriter(log_dir=os.path.join(self.log_dir, self.exp_name), purge_step=purge)


def make_loggers(run: RunConfig, run_dir: Path) -> list:
    """CSV always; TensorBoard and Weights & Biases when configured."""
    loggers = [CSVLogger(exp_name="", log_dir=str(run_dir / "logs"))]
    if run.tensorboard:
        resumed_at = int(read_meta(run.resume)["env_steps"]) if run.resume else None
        loggers.append(BranchedTensorboardLogger(exp_name="", log_dir=str(run_dir / "tensorboard"),
                                                 resumed_at=resumed_at))
    if run.wandb_project:
        from torchrl.record.loggers import WandbLogger

        loggers.append(WandbLogger(exp_name=run_dir.name, project=run.wandb_project, save_dir=str(run_dir)))
    return loggers


def train(cfg: DreamerConfig, preset: str) -> dict:
    """Train as configured: one process, or one rank of those torchrun started (WORLD_SIZE > 1), the same trainer
    and flags; returns the run's summary (under torchrun: rank 0's; the other ranks return their counts). What
    every recipe runs once its command line is parsed."""
    with make_world(cfg) as world, make_trainer(cfg, preset, world) as trainer:
        return trainer.run()
