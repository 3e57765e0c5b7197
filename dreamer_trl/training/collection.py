"""Where the trainer's experience is collected: the collection strategies of :class:`~dreamer_trl.training.trainer.Trainer`.

Each checkpoint segment the trainer asks its strategy for a collector of that segment (:meth:`collector`):

- :class:`SyncCollection` (the default): TorchRL's :class:`~torchrl.collectors.Collector` in this process, over the
  trainer's own env, which lives for the whole run; deterministic, and a resumed run is bit-exact on CPU.
- :class:`AsyncCollection` (``--run.async-collection``): the envs step in a worker process while the learner trains.

Asynchronous collection. TorchRL's :class:`~torchrl.collectors.AsyncCollector` runs the policy and the env(s) of
``env.num_envs`` in its own process; it is told to collect the next batch of ``train_every`` env steps just before
the current one is handed to the learner, so the env stepping of batch k+1 overlaps the updates of batch k. The
ratio is enforced in both directions: the learner runs exactly the updates due for the env steps it has received
(the same count as synchronous collection, over the whole run) and then waits for the next batch when ahead; the
collector is at most one batch ahead and waits for the learner when behind. The policy weights are pushed to the
worker before each batch is started, so the acting policy lags the learner by at most one batch of updates.

What this mode gives up, against the default deterministic one:

- bit-exact resume: the collecting env lives in the worker process for one checkpoint segment (it is started
  with a seed drawn from ``(seed, env steps)`` at each segment, :func:`segment_seed`; a data-parallel rank's seed
  is ``run.seed + rank``), and its episode, task random stream and the worker's policy-noise stream are not
  checkpointed; a resumed run continues the counters and the learner's state exactly, the collected experience
  only statistically;
- the physics-error count (``train/physics_errors`` stays 0; a worker whose env faults too often still stops the
  run with the env's error);
- timing: which weights act on which step depends on the machine's speed.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torchrl.collectors import AsyncCollector, Collector
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType


@dataclass(frozen=True)
class Segment:
    """What one checkpoint segment collects, in policy steps (env steps / action repeat)."""

    start_env_steps: int
    """env steps collected before the segment"""
    frames_per_batch: int
    total_frames: int
    init_random_frames: int
    """of them, uniform random actions (what is left of the prefill)"""

    def kwargs(self) -> dict:
        return dict(frames_per_batch=self.frames_per_batch, total_frames=self.total_frames,
                    init_random_frames=self.init_random_frames, env_device="cpu", storing_device="cpu",
                    exploration_type=ExplorationType.RANDOM)


class SyncCollection:
    """Collect in this process with ``env`` (kept open between segments: the trainer closes it at the end)."""

    def __init__(self, env: EnvBase):
        self.env = env

    def collector(self, policy, segment: Segment, device):
        return Collector(self.env, policy, policy_device=device, **segment.kwargs())


class _SegmentCollector(AsyncCollector):
    """An :class:`AsyncCollector` whose worker (and env) ends with the segment: TorchRL's asynchronous collectors
    always close their env on shutdown, which the trainer's ``shutdown(close_env=False)`` would refuse."""

    def shutdown(self, timeout=None, close_env: bool = True, raise_on_error: bool = True) -> None:
        super().shutdown(timeout=timeout, close_env=True, raise_on_error=raise_on_error)


def segment_seed(seed: int, env_steps: int) -> int:
    """The collecting env's seed for the segment starting at ``env_steps`` (distinct for every segment)."""
    return int(np.random.SeedSequence([seed, env_steps]).generate_state(1)[0] % (2**31 - 1))


class AsyncCollection:
    """Collect in a worker process (module docstring): each segment a fresh env from ``make_env(seed=...)``
    (picklable; its ``env.num_envs`` envs step in turn in the worker), seeded by :func:`segment_seed`."""

    def __init__(self, make_env: Callable[..., EnvBase], seed: int):
        self.make_env, self.seed = make_env, seed

    def collector(self, policy, segment: Segment, device):
        maker = functools.partial(self.make_env, seed=segment_seed(self.seed, segment.start_env_steps))
        return _SegmentCollector(maker, policy, policy_device=device, update_at_each_batch=True, **segment.kwargs())
