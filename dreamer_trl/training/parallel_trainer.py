"""The training run under torchrun: one :class:`~dreamer_trl.training.trainer.Trainer` per rank, one learner.

    torchrun --nproc-per-node 2 recipes/dreamer_dmc.py --preset state           # 2 ranks on one machine
    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 recipes/dreamer_dmc.py ...

Every rank collects with its own envs (seed + rank) into its own replay shard and trains on its own batches;
the update is made data-parallel by :mod:`dreamer_trl.training.distributed` (gradients averaged per phase, parameters
broadcast from rank 0 and checked every ``run.check_every`` updates). The ranks run in lockstep: they collect the
same number of env steps per batch, so their counters and update counts agree without communication.

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
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from dreamer_trl.builders.agent import make_env
from dreamer_trl.config import DreamerConfig, to_dict
from dreamer_trl.data.vector_env import make_envs
from dreamer_trl.run.checkpoint import prune_checkpoints
from dreamer_trl.run.state import save_run
from dreamer_trl.training.async_trainer import AsyncTrainer
from dreamer_trl.training.distributed import World, init, local_device, make_data_parallel, rank_seed
from dreamer_trl.training.trainer import Trainer


def rank_checkpoints(run_dir: Path, world: World) -> Path:
    """Where this rank's checkpoints live: ``RUN/checkpoints`` for rank 0, ``RUN/checkpoints_rank<r>`` otherwise."""
    return run_dir / ("checkpoints" if world.is_main else f"checkpoints_rank{world.rank}")


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


def shared_text(text: str, world: World, max_bytes: int = 4096) -> str:
    """Rank 0's ``text`` on every rank (a byte tensor broadcast; no pickling)."""
    data = torch.zeros(max_bytes + 1, dtype=torch.uint8)
    if world.is_main:
        raw = text.encode()
        if len(raw) > max_bytes:
            raise ValueError(f"{text!r} is longer than {max_bytes} bytes")
        data[0], data[1:len(raw) + 1] = 1, torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(data, 0)
    return bytes(data[1:].tolist()).rstrip(b"\0").decode()


class DataParallelTrainer(Trainer):
    """A :class:`Trainer` on one rank of a data-parallel run (see module docstring)."""

    def __init__(self, cfg: DreamerConfig, preset: str, run_dir: Path, *, world: World, **parts):
        self.world, self._local = world, False
        self.collect_seed = rank_seed(cfg.run.seed, world)
        super().__init__(cfg, preset, run_dir, **parts)

    @property
    def stopping(self) -> bool:
        """A stop requested on any rank (one all-reduce; local only while rank 0 evaluates alone)."""
        local = self.preemption.requested is not None
        if self._local:
            return local
        flag = torch.tensor([float(local)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not local:
            self.preemption.requested = signal.SIGTERM  # stopped by another rank: save, then exit 143
        return bool(flag.item())

    def evaluate(self) -> None:
        """Rank 0 evaluates (the others go on and wait for it at the next collective)."""
        if not self.world.is_main:
            self.counters.eval_due = False
            return
        self._local = True
        try:
            super().evaluate()
        finally:
            self._local = False

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.world.is_main:
            super().log(metrics, step)

    def checkpoint(self) -> None:
        """Every rank > 0 saves its shard, then rank 0 its checkpoint, so rank 0's is complete only with all."""
        if not self.world.is_main:
            root = rank_checkpoints(self.run_dir, self.world)
            self.checkpoint_path = save_run(root / f"{self.counters.env_steps:010d}", **self.run_parts,
                                               counters=dataclasses.asdict(self.counters),
                                               config=to_dict(self.cfg), preset=self.preset)
            prune_checkpoints(root, self.cfg.run.checkpoints_kept)
        dist.barrier()
        if self.world.is_main:
            super().checkpoint()
        dist.barrier()

    def summary(self) -> dict:
        """Rank 0 writes and prints the summary; the others return their counts."""
        if self.world.is_main:
            return super().summary()
        return {"rank": self.world.rank, "env_steps": self.counters.env_steps, "updates": self.counters.updates}


class AsyncDataParallelTrainer(DataParallelTrainer, AsyncTrainer):
    """A data-parallel rank whose envs step in a collector process (``--run.async-collection``)."""


def train_data_parallel(cfg: DreamerConfig, preset: str) -> dict:
    """The recipe's body on one rank under torchrun: build, make data-parallel, train; rank 0's summary."""
    from torchrl.envs.utils import check_env_specs

    from dreamer_trl.training.trainer import (
        build,
        make_buffer,
        make_loggers,
        make_run_dir,
        resolve_device,
        seed_everything,
    )

    world = init(resolve_device(cfg.run.device))
    device = local_device(resolve_device(cfg.run.device), world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    check_world_size(cfg, world)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)  # the same initialisation everywhere (rank 0's is broadcast anyway)
    faults = {"max_physics_errors": cfg.run.max_physics_errors, "physics_error_window": cfg.run.physics_error_window}
    seed = rank_seed(cfg.run.seed, world)
    env = make_envs(cfg.env, cfg.model, seed, cfg.env.num_envs, cfg.env.parallel_envs, **faults)
    eval_env = make_env(cfg.env, cfg.model, seed + 10_000, **faults)
    check_env_specs(env)
    agent, policy, updater = build(cfg, env, device)
    make_data_parallel(agent, updater, world, cfg.run.check_every)
    seed_everything(seed)  # each rank its own stream for collection, replay sampling and update noise

    run_dir = Path(shared_text(str(make_run_dir(cfg, preset)) if world.is_main else "", world))
    rank_cfg = cfg
    if not world.is_main:
        resume = cfg.run.resume and str(rank_checkpoints(run_dir, world) / Path(cfg.run.resume).name)
        if resume and not Path(resume).is_dir():
            raise SystemExit(f"error: rank {world.rank} has no shard {resume} of the checkpoint {cfg.run.resume}")
        rank_cfg = dataclasses.replace(cfg, run=dataclasses.replace(
            cfg.run, progress=False, resume=resume, buffer_dir=str(Path(cfg.run.buffer_dir or run_dir)
                                                                   / f"replay_rank{world.rank}")))
    buffer = make_buffer(rank_cfg, env, run_dir, device)
    loggers = make_loggers(cfg.run, run_dir) if world.is_main else []
    cls = AsyncDataParallelTrainer if cfg.run.async_collection else DataParallelTrainer
    trainer = cls(rank_cfg, preset, run_dir, world=world, env=env, eval_env=eval_env, agent=agent,
                  policy=policy, updater=updater, buffer=buffer, loggers=loggers, device=device)
    try:
        return trainer.run()
    finally:
        getattr(env, "shutdown", lambda: None)()
        if dist.is_initialized():
            dist.destroy_process_group()
