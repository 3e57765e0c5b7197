"""Asynchronous collection (``--run.async-collection``): the envs step in a worker process while the learner trains.

TorchRL's :class:`~torchrl.collectors.AsyncCollector` runs the policy and the env(s) of ``env.num_envs`` in its own
process; it is told to collect the next batch of ``train_every`` env steps just before the current one is handed
to the learner, so the env stepping of batch k+1 overlaps the updates of batch k. The ratio is enforced in both
directions: the learner runs exactly the updates due for the env steps it has received (the same count as the
synchronous trainer, over the whole run) and then waits for the next batch when ahead; the collector is at most
one batch ahead and waits for the learner when behind. The policy weights are pushed to the worker before each
batch is started, so the acting policy lags the learner by at most one batch of updates.

What this mode gives up, against the default deterministic one:

- bit-exact resume: the collecting env lives in the worker process for one checkpoint segment (it is started
  with a seed drawn from ``(run.seed, env steps)`` at each segment), and its episode, task random stream and the
  worker's policy-noise stream are not checkpointed; a resumed run continues the counters and the learner's
  state exactly, the collected experience only statistically;
- the physics-error count (``train/physics_errors`` stays 0; a worker whose env faults too often still stops the
  run with the env's error);
- timing: which weights act on which step depends on the machine's speed.
"""
from __future__ import annotations

import functools

import numpy as np
from torchrl.collectors import AsyncCollector
from torchrl.envs.utils import ExplorationType

from dreamer_trl.data.vector_env import make_envs
from dreamer_trl.training.trainer import Trainer


class _SegmentCollector(AsyncCollector):
    """An :class:`AsyncCollector` whose worker (and env) ends with the segment: TorchRL's asynchronous collectors
    always close their env on shutdown, which the trainer's ``shutdown(close_env=False)`` would refuse."""

    def shutdown(self, timeout=None, close_env: bool = True, raise_on_error: bool = True) -> None:
        super().shutdown(timeout=timeout, close_env=True, raise_on_error=raise_on_error)


def segment_seed(seed: int, env_steps: int) -> int:
    """The collecting env's seed for the segment starting at ``env_steps`` (distinct for every segment)."""
    return int(np.random.SeedSequence([seed, env_steps]).generate_state(1)[0] % (2**31 - 1))


class AsyncTrainer(Trainer):
    """A :class:`~dreamer_trl.training.trainer.Trainer` whose collection runs in a worker process (module docstring)."""

    def make_collector(self, end: int):
        """The segment's collector in a worker process (its ``env.num_envs`` envs step in turn there)."""
        c, s, cfg = self.counters, self.cfg.schedule, self.cfg
        a = cfg.env.action_repeat
        seed = getattr(self, "collect_seed", cfg.run.seed)  # a data-parallel rank's: seed + rank
        maker = functools.partial(make_envs, cfg.env, cfg.model, segment_seed(seed, c.env_steps),
                                  cfg.env.num_envs, False, max_physics_errors=cfg.run.max_physics_errors,
                                  physics_error_window=cfg.run.physics_error_window)
        return _SegmentCollector(
            maker, self.policy, frames_per_batch=s.train_every // a, total_frames=(end - c.env_steps) // a,
            init_random_frames=max(0, s.prefill_env_steps - c.env_steps) // a, policy_device=self.device,
            env_device="cpu", storing_device="cpu", exploration_type=ExplorationType.RANDOM,
            update_at_each_batch=True,
        )
