"""Environment suites behind one interface: ``env.suite`` names the maker, ``env.task`` the task in it.

Each maker returns a TorchRL env with ``InitTracker`` in the replay layout (:mod:`dreamer_trl.keys`): "pixels" or
"observation", "action", ``("next", "reward" | "done" | "terminated" | "truncated")``, "is_init"; its base env
offers ``physics_errors``, ``task_random_state()`` / ``set_task_random_state(state)`` (checkpoints) and
``render(size)`` (videos), so the trainer, replay, carry and checkpoints do not depend on the suite.

- ``dmc``: :func:`~dreamer_trl.data.dmc.make_dmc_env` (``env.task`` domain_task; faults counted and limited by
  ``run.max_physics_errors`` / ``run.physics_error_window``).
- ``atari``: :func:`~dreamer_trl.data.atari.make_atari_env` (``env.task`` a game, as ale-py names its ROMs;
  DreamerV3's preprocessing, ``env.atari``).
- ``gym``: :func:`~dreamer_trl.data.gym.make_gym_env` (``env.task`` a gymnasium id; no physics faults to count).
- ``torchrl``: :func:`~dreamer_trl.data.user_env.make_user_env` (``env.task`` module:function, a factory of your
  own TorchRL env; docs/own_env.md).
"""
from __future__ import annotations

from typing import Callable

import torch
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from dreamer_trl.keys import DONE, OBSERVATION, PIXELS, TERMINATED, TRUNCATED


def _dmc(env_cfg, seed: int, **faults) -> EnvBase:
    from dreamer_trl.data.dmc import make_dmc_env, split_task

    domain, task = split_task(env_cfg.task)
    return make_dmc_env(domain, task, from_pixels=env_cfg.from_pixels, image_size=env_cfg.image_size,
                        action_repeat=env_cfg.action_repeat, episode_frames=env_cfg.episode_frames, seed=seed,
                        **faults)


def _gym(env_cfg, seed: int, max_physics_errors=None, physics_error_window=None) -> EnvBase:
    from dreamer_trl.data.gym import make_gym_env

    return make_gym_env(env_cfg.task, from_pixels=env_cfg.from_pixels, image_size=env_cfg.image_size,
                        action_repeat=env_cfg.action_repeat, episode_frames=env_cfg.episode_frames, seed=seed)


def _atari(env_cfg, seed: int, max_physics_errors=None, physics_error_window=None) -> EnvBase:
    import dataclasses

    from dreamer_trl.data.atari import make_atari_env

    return make_atari_env(env_cfg.task, image_size=env_cfg.image_size, action_repeat=env_cfg.action_repeat,
                          episode_frames=env_cfg.episode_frames, seed=seed, **dataclasses.asdict(env_cfg.atari))


def _torchrl(env_cfg, seed: int, max_physics_errors=None, physics_error_window=None) -> EnvBase:
    from dreamer_trl.data.user_env import make_user_env

    env = make_user_env(env_cfg.task, seed)
    observes = PIXELS if PIXELS in env.observation_spec.keys() else OBSERVATION
    if observes != (PIXELS if env_cfg.from_pixels else OBSERVATION):
        env.close()
        switch = "--env.from-pixels" if observes == PIXELS else "--env.no-from-pixels"
        raise ValueError(f"config field 'env.from_pixels': the env of {env_cfg.task!r} observes {observes!r}; "
                         f"use {switch}")
    return env


SUITES: dict[str, Callable[..., EnvBase]] = {"dmc": _dmc, "atari": _atari, "gym": _gym, "torchrl": _torchrl}


def step_specs(device) -> tuple[Unbounded, Composite]:
    """(reward spec, done spec) of every suite's env: reward ``[1]`` float32; done, terminated, truncated ``[1]`` bool."""
    flag = Categorical(2, shape=(1,), dtype=torch.bool, device=device)
    done = Composite({DONE: flag.clone(), TERMINATED: flag.clone(), TRUNCATED: flag.clone()}, device=device)
    return Unbounded(shape=(1,), dtype=torch.float32, device=device), done


def end_flags(terminated: bool, truncated: bool, device) -> dict:
    """The three episode-end flags of one step (``done`` is either), each ``[1]`` bool."""
    flag = lambda v: torch.tensor([v], dtype=torch.bool, device=device)  # noqa: E731
    return {DONE: flag(terminated or truncated), TERMINATED: flag(terminated), TRUNCATED: flag(truncated)}


def check_env_numbers(image_size: int, action_repeat: int, episode_frames: int) -> None:
    """The sizes every suite's env takes are positive; otherwise ValueError naming the ``env`` field."""
    for name, value in (("image_size", image_size), ("action_repeat", action_repeat),
                        ("episode_frames", episode_frames)):
        if value < 1:
            raise ValueError(f"config field 'env.{name}': expected >= 1, got {value}")


def make_suite_env(env_cfg, seed: int, **faults) -> EnvBase:
    """The env of ``env_cfg.task`` in ``env_cfg.suite``, seeded ``seed`` (faults: the DMC physics-fault limits)."""
    if env_cfg.suite not in SUITES:
        raise ValueError(f"config field 'env.suite': expected one of {', '.join(SUITES)}, got {env_cfg.suite!r}")
    return SUITES[env_cfg.suite](env_cfg, seed, **faults)
