"""N DMC environments per learner as one batched TorchRL env: worker processes (``ParallelEnv``) or this process
(``SerialEnv``), the policy batched over them.

Each sub-env is built by its own maker (the recipe's: :func:`~dreamer_trl.builders.agent.make_env`, with the policy's
carry transform and the return counter inside it, so every env carries its own recurrent state), seeded
``seed + 1000 * i`` (:func:`env_seeds`). A collected batch is ``[N, T]``;
the replay buffer stores it env-major with one trajectory id per env, so windows never mix envs. The env facts a
run checkpoints come back from the workers through the env interface: ``physics_errors`` (the sum over the envs)
and ``task_random_state()`` / ``set_task_random_state(states)`` (one state per env). With ``env.num_envs 1`` the
plain env is used, exactly as before.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchrl.envs import EnvBase, ParallelEnv, SerialEnv

SEED_STRIDE = 1000  # env i of a learner seeded with seed + SEED_STRIDE * i (ranks add their rank: seed + rank)


class _DMCFacts:
    """The DMC env facts of a batched env, one per sub-env: read from each worker (TorchRL's command pipe for
    ``ParallelEnv``, the env objects for ``SerialEnv``)."""

    def _call_each(self, name: str, args_per_env: list | None = None) -> list:
        """``getattr(env_i, name)`` (called with ``args_per_env[i]`` when given) for every sub-env."""
        args = args_per_env or [None] * self.num_workers
        if isinstance(self, ParallelEnv):
            out = []
            for i, arg in enumerate(args):
                channel = self.parent_channels[i]
                channel.send((name, ([] if arg is None else [arg], {})))
                out.append(channel.recv()[1])
            return out
        return [getattr(env, name) if arg is None and not callable(getattr(env, name)) else
                getattr(env, name)(*([] if arg is None else [arg])) for env, arg in zip(self._envs, args)]

    @property
    def physics_errors(self) -> int:
        """MuJoCo physics errors of all the envs since they were built."""
        return sum(self._call_each("physics_errors"))

    def task_random_state(self) -> list:
        """Each env's task random state (JSON data), in env order."""
        return self._call_each("task_random_state")

    def set_task_random_state(self, states: list) -> None:
        """Restore :meth:`task_random_state`; the number of envs must match."""
        if len(states) != self.num_workers:
            raise ValueError(f"task random states of {len(states)} envs for {self.num_workers} envs "
                             "(config field 'env.num_envs' must match the checkpoint)")
        self._call_each("set_task_random_state", states)

    _shutting_down = False

    def close(self, *, raise_if_closed: bool = True) -> None:
        """Ignored until :meth:`shutdown`: TorchRL's Collector closes its env when a segment's frame budget is spent
        (every checkpoint), which would restart the workers, their episodes, physics-error counts and task random
        streams (and reset this process's torch threads); the envs here live for the whole run, as one env does."""
        if self._shutting_down:
            super().close(raise_if_closed=raise_if_closed)

    def shutdown(self) -> None:
        """Really close the envs (end the worker processes); TorchRL then adds their threads to this process's
        torch threads, which :meth:`~dreamer_trl.training.trainer.Trainer.close` puts back."""
        self._shutting_down = True
        super().close(raise_if_closed=False)


class ParallelDMC(_DMCFacts, ParallelEnv):
    """N DMC envs in worker processes."""


class SerialDMC(_DMCFacts, SerialEnv):
    """N DMC envs stepped in turn in this process."""


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """The seeds of a learner's ``num_envs`` envs: ``seed + SEED_STRIDE * i``."""
    return [seed + SEED_STRIDE * i for i in range(num_envs)]


def batched_env(makers: list[Callable[[], EnvBase]], parallel: bool = True) -> EnvBase:
    """The envs ``makers`` build as one batched env (batch ``[len(makers)]``), or the plain env for one maker.

    ``parallel``: in worker processes (the makers must pickle, e.g. ``functools.partial``); else in turn here.
    """
    if not makers:
        raise ValueError("config field 'env.num_envs': expected >= 1, got 0")
    if len(makers) == 1:
        return makers[0]()
    if parallel:  # the learner keeps its torch threads (TorchRL would take one per worker away)
        return ParallelDMC(len(makers), makers, serial_for_single=False, num_threads=torch.get_num_threads())
    return SerialDMC(len(makers), makers, serial_for_single=False)
