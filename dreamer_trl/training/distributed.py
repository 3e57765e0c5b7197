"""Data-parallel learning on torch.distributed: every rank its own envs, replay shard and batch; one model.

Launch with torchrun (``torchrun --nproc-per-node 2 recipes/dreamer_dmc.py ...``); gloo on CPU, NCCL on CUDA.
What makes the ranks one learner:

- :func:`broadcast_state` sends rank 0's parameters and buffers (and the slow critic's) to every rank once,
  before training, so they start identical whatever each rank's initialisation did.
- :class:`DataParallelHook`, the first :class:`~dreamer_trl.training.update.DreamerUpdate` hook: in ``before_clip``
  it averages the phase's gradients over the ranks (one coalesced all-reduce per phase: the gradients
  flattened into one buffer). Each rank's loss is a mean over its own ``B`` sequences, so the average of the
  ranks' gradients is the gradient of the mean over the ``W * B`` sequences of all ranks: clipping, the
  non-finite check (a NaN on one rank reaches all), AGC and the optimizer step then act on the same numbers
  on every rank, and the parameters stay identical. Every ``check_every`` updates it checks that they are:
  one all-reduce of a float64 sum per tensor (max and min), naming the first tensor that differs.
- The skip decision is the same on every rank. A loss term is per rank and can be non-finite while the
  gradients are finite; the same all-reduce carries the number of ranks whose terms of the phase are not
  finite, and when it is not zero every rank sets the phase's gradients to NaN: the mean loss over the ranks
  is not finite, nor is its gradient. Every rank then sees a non-finite gradient norm, and all of them skip the
  update (or undo the world model's step, with ``optim.step_model_first``), make the same collective calls
  (``after_step`` hooks, the parameter check) and raise :class:`~dreamer_trl.training.update.NonFiniteError` at the
  same update. A rank whose own terms are finite names the gradient norm as the non-finite value.
- :func:`share_return_statistics`: DreamerV3's return percentiles (:class:`~dreamer_trl.objectives.return_norm.
  ReturnNormalizer`) are taken over the returns of all ranks (an all-gather), as one process would on the
  concatenated batch; without it each rank's scale would drift apart.

What is per rank and therefore not the same as one process on the concatenated batch: the random draws (each
rank has its own torch seed, ``seed + rank``, as it has its own envs), and Dreamer V1's free-nats clamp
(Eq. 10: max(free, batch-mean KL)), which acts on each rank's batch mean; with ``loss.free_nats 0`` (the state
preset) or a KL above the threshold on every rank it is exact.

Schedule values are per rank: each rank collects ``total_env_steps`` with ``batch_size`` sequences per update, so
a W-rank run sees W times the env steps and a W times larger batch at the configured replay ratio.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank, the number of ranks and its GPU index on the node; ``World()`` is one
    process. The :class:`~dreamer_trl.training.trainer.Trainer` asks it whether a stop is requested anywhere
    (:meth:`any`), where this rank checkpoints (:meth:`checkpoints`), and to wait for the others (:meth:`barrier`);
    only rank 0 (:attr:`is_main`) logs, evaluates and writes the run's shared files."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: logs, evaluates and writes the shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # What the trainer asks of its world (one process: every answer is local, nothing is communicated).

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (one all-reduce over the ranks)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            dist.barrier()

    def checkpoints(self, run_dir: Path) -> Path:
        """Where this rank's checkpoints live: ``RUN/checkpoints`` for rank 0, ``RUN/checkpoints_rank<r>`` otherwise."""
        return run_dir / ("checkpoints" if self.is_main else f"checkpoints_rank{self.rank}")

    def share_text(self, text: str, max_bytes: int = 4096) -> str:
        """Rank 0's ``text`` on every rank (a byte tensor broadcast; no pickling)."""
        if not self.distributed:
            return text
        data = torch.zeros(max_bytes + 1, dtype=torch.uint8)
        if self.is_main:
            raw = text.encode()
            if len(raw) > max_bytes:
                raise ValueError(f"{text!r} is longer than {max_bytes} bytes")
            data[0], data[1:len(raw) + 1] = 1, torch.tensor(list(raw), dtype=torch.uint8)
        dist.broadcast(data, 0)
        return bytes(data[1:].tolist()).rstrip(b"\0").decode()

    def close(self) -> None:
        """Leave the process group (if this process joined one)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def launched() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE``) started this process with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device | str = "cpu", timeout_s: float = 3600.0) -> World:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): for a CUDA
    ``device`` NCCL for CUDA tensors and gloo for the few CPU ones (stop flags, the run directory), this rank's GPU
    being ``LOCAL_RANK``; gloo otherwise. A single process gets ``World()``. ``timeout_s`` bounds every
    collective, so it must exceed rank 0's longest evaluation (the other ranks wait for it)."""
    if not launched():
        return World()
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: torch.device, world: World) -> torch.device:
    """A CUDA device without an index becomes this rank's GPU (``LOCAL_RANK``); other devices are kept."""
    if device.type == "cuda" and device.index is None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def rank_seed(seed: int, world: World) -> int:
    """This rank's seed for its envs, replay sampling and update noise: ``seed + rank``."""
    return seed + world.rank


def _state_tensors(modules: dict[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, module in modules.items():
        out += [(f"{name}.{n}", p) for n, p in module.named_parameters()]
        out += [(f"{name}.{n}", b) for n, b in module.named_buffers()]
    return out


@torch.no_grad()
def broadcast_state(modules: dict[str, nn.Module], src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers of ``modules`` to every rank (one broadcast per dtype)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for _, t in _state_tensors(modules):
        by_dtype.setdefault(t.dtype, []).append(t)
    for tensors in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.broadcast(flat, src)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def checksums(modules: dict[str, nn.Module]) -> tuple[list[str], torch.Tensor]:
    """(names, float64 sum of each parameter and buffer): a cheap fingerprint to compare across ranks."""
    named = _state_tensors(modules)
    return [n for n, _ in named], torch.stack([t.detach().double().sum() for _, t in named])


class ParametersDiverged(RuntimeError):
    """Raised when the ranks' parameters are no longer identical."""


def check_identical(modules: dict[str, nn.Module]) -> None:
    """Raise :class:`ParametersDiverged` naming the first tensor whose sum differs between ranks (one all-reduce)."""
    names, sums = checksums(modules)
    both = torch.cat([sums, -sums])  # max of -x is -min x: max and min in one reduction
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    high, low = both[:len(names)], -both[len(names):]
    differ = (high != low).nonzero().flatten().tolist()
    if differ:
        i = differ[0]
        raise ParametersDiverged(f"parameters differ between ranks: {names[i]} sums to {low[i].item()!r} .. "
                                 f"{high[i].item()!r} ({len(differ)} tensors differ)")


class DataParallelHook:
    """Averages each phase's gradients over the ranks before clipping; checks the parameters every ``check_every``
    updates (0: never). Put it first among the update's hooks (:func:`make_data_parallel` does)."""

    def __init__(self, modules: dict[str, nn.Module], world: World, check_every: int = 100):
        self.modules, self.world, self.check_every = modules, world, check_every
        self.steps = 0  # updates stepped by this process
        self.first_phase = None  # after_step runs once per phase after every optimizer has stepped

    @torch.no_grad()
    def before_clip(self, phase) -> None:
        grads = [p.grad for p in phase.params if p.grad is not None]
        device = grads[0].device if grads else "cpu"
        # Two numbers ride along: the count of present gradients (every rank must reduce the same tensors) and
        # whether this rank's loss terms are not finite (every rank must take the same skip decision).
        finite = [torch.isfinite(v).all() for v in phase.terms.values()]
        bad = (~torch.stack(finite).all()).reshape(1).float().to(device) if finite else torch.zeros(1, device=device)
        flat = torch.cat([torch.tensor([float(len(grads))], device=device), bad]
                         + [g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        count, bad_ranks = (int(x) for x in flat[:2].tolist())
        if count != len(grads) * self.world.size:
            raise RuntimeError(f"phase {phase.name!r}: ranks have gradients for different parameters "
                               f"({len(grads)} here, {count} over {self.world.size} ranks)")
        if bad_ranks:  # the mean loss over the ranks is not finite: a NaN gradient makes every rank skip
            for p in phase.params:
                if p.grad is None:
                    p.grad = torch.full_like(p, float("nan"))
                else:
                    p.grad.fill_(float("nan"))
            return
        flat = flat[2:] / self.world.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def after_step(self, phase) -> None:
        if self.first_phase is None:
            self.first_phase = phase.name  # the phases run in a fixed order: count each update once
        if phase.name != self.first_phase:
            return
        self.steps += 1
        if self.check_every and self.steps % self.check_every == 0:
            check_identical(self.modules)


def share_return_statistics(normalizer) -> None:
    """Let a :class:`~dreamer_trl.objectives.return_norm.ReturnNormalizer` take its percentiles over every rank's
    returns (all ranks' batches have the same shape)."""

    def gather(x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    normalizer.gather = gather


def share_counts(model_loss) -> None:
    """Let the world-model loss divide its masked sums by the mean of the ranks' valid-row counts: each rank's
    term S_i / mean_j(n_j), averaged over the ranks' gradients, is the gradient of sum_i S_i / sum_j n_j, the
    one-process mean over every rank's valid rows. One all-reduce of one number per update."""

    def count_mean(n: torch.Tensor) -> torch.Tensor:
        total = n.detach().reshape(1).clone()
        dist.all_reduce(total)
        return (total / dist.get_world_size()).reshape(())

    model_loss.count_mean = count_mean


def make_data_parallel(agent, updater, world: World, check_every: int = 100) -> DataParallelHook | None:
    """Make ``updater`` (of ``agent``) data-parallel over ``world``: rank 0's weights broadcast (networks and
    hook states such as the slow critic), the gradient hook first, return statistics and the world-model loss's
    valid-row counts over all ranks.
    Returns the hook (None for a single process, which is left as it is)."""
    if not world.distributed:
        return None
    from dreamer_trl.objectives.return_norm import ReturnNormalizer, SlowTarget

    modules = {k: m for k, m in {"world_model": agent.world_model, "actor": agent.actor,
                                 "value": agent.value}.items() if m is not None}
    extra = {f"hook{i}": h.target for i, h in enumerate(updater.hooks) if isinstance(h, SlowTarget)}
    extra.update({f"hook{i}": h for i, h in enumerate(updater.hooks) if isinstance(h, nn.Module)})
    broadcast_state({**modules, **extra})
    for h in updater.hooks:
        if isinstance(h, ReturnNormalizer):
            share_return_statistics(h)
    if getattr(agent, "model_loss", None) is not None:
        share_counts(agent.model_loss)
    hook = DataParallelHook({**modules, **extra}, world, check_every)
    updater.hooks.insert(0, hook)
    return hook
