"""Your own TorchRL environment behind the suites' interface (``env.suite torchrl``, ``env.task module:function``).

``module:function`` names a factory returning a TorchRL ``EnvBase`` (the module importable from the working
directory or the installed packages). It is called with ``seed=`` when it takes that argument; otherwise it is
called without arguments and the env is seeded with ``env.set_seed(seed)``. The env must speak the replay layout
(:mod:`dreamer_trl.keys`), checked here before any training starts, each miss named:

- one observation: "pixels" (uint8 ``[C, H, W]``) or "observation" (float ``[O]``);
- "action": a one-hot ``OneHot`` spec (discrete) or a ``Bounded`` one in [-1, 1] (continuous);
- ``("next", "reward")`` of shape ``[1]``, ``("next", "done")`` and ``("next", "terminated")`` (``truncated``
  optional): a termination is the continue head's 0, a truncation is not;
- an unbatched env (``batch_size == []``): ``env.num_envs`` batches it.

``"is_init"`` is added by TorchRL's ``InitTracker`` when the env has none. What the trainer asks of a suite env
it does not offer is filled in: ``physics_errors`` 0, no random stream to save for a resume
(``task_random_state`` ``None``: a resumed run's episodes then differ from the uninterrupted run's), no videos
unless the env has ``render(size)``. An env offering these is used as it is.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys

import numpy as np
import torch
from torchrl.data import Bounded, OneHot
from torchrl.envs import EnvBase, InitTracker, TransformedEnv

from dreamer_trl.keys import ACTION, DONE, IS_INIT, OBSERVATION, PIXELS, REWARD, TERMINATED

FIELD = "config field 'env.task'"


def load_factory(spec: str):
    """The callable ``module:function`` names; ValueError naming ``env.task`` when it cannot be found."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{FIELD}: env.suite torchrl takes module:function (a factory returning a TorchRL EnvBase), "
                         f"got {spec!r}")
    if os.getcwd() not in sys.path:  # a recipe run as a script has only recipes/ on the path
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{FIELD}: cannot import {module_name!r} ({error}); the module must be importable from "
                         "the working directory or the installed packages") from None
    factory = module
    for part in name.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"{FIELD}: {module_name!r} has no {name!r}")
    if not callable(factory):
        raise ValueError(f"{FIELD}: {spec!r} is not callable")
    return factory


def check_layout(env: EnvBase, spec: str) -> None:
    """``env`` speaks the replay layout (module docstring); ValueError naming what is missing or wrong."""
    where = f"{FIELD}: the env of {spec!r}"
    if tuple(env.batch_size) != ():
        raise ValueError(f"{where} is batched ({tuple(env.batch_size)}); return one env, env.num_envs batches it")
    obs = [k for k in (PIXELS, OBSERVATION) if k in env.observation_spec.keys()]
    if len(obs) != 1:
        raise ValueError(f"{where} must observe exactly one of 'pixels' (uint8 [C, H, W]) or 'observation' "
                         f"(float [O]); its observation keys are {sorted(map(str, env.observation_spec.keys()))}")
    shape, dtype = env.observation_spec[obs[0]].shape, env.observation_spec[obs[0]].dtype
    if obs[0] == PIXELS and (len(shape) != 3 or dtype != torch.uint8):
        raise ValueError(f"{where}: 'pixels' must be uint8 [C, H, W], got {dtype} {tuple(shape)}")
    if obs[0] == OBSERVATION and (len(shape) != 1 or not dtype.is_floating_point):
        raise ValueError(f"{where}: 'observation' must be float [O], got {dtype} {tuple(shape)}")
    action = env.full_action_spec.get(ACTION, None)
    if action is None:
        raise ValueError(f"{where} has no 'action'; its action keys are {sorted(map(str, env.full_action_spec.keys()))}")
    bounded = isinstance(action, Bounded) and len(action.shape) == 1 and bool(
        torch.all(action.space.low == -1) and torch.all(action.space.high == 1))
    if not (isinstance(action, OneHot) or bounded):
        raise ValueError(f"{where}: 'action' must be a one-hot OneHot spec or a 1-d Bounded spec in [-1, 1], got "
                         f"{type(action).__name__} {tuple(action.shape)}")
    if REWARD not in env.full_reward_spec.keys() or tuple(env.full_reward_spec[REWARD].shape) != (1,):
        raise ValueError(f"{where} must give a 'reward' of shape [1]; its reward spec is {env.full_reward_spec}")
    missing = [k for k in (DONE, TERMINATED) if k not in env.full_done_spec.keys()]
    if missing:
        raise ValueError(f"{where} lacks the done keys {missing} (a termination is the continue head's 0; a "
                         "truncation is not): give 'done' and 'terminated', and 'truncated' for time limits")


class UserEnv(TransformedEnv):
    """A user's env with the interface the trainer asks of a suite env (module docstring)."""

    @property
    def physics_errors(self) -> int:
        return int(getattr(self.base_env, "physics_errors", 0))

    @property
    def renders(self) -> bool:
        return bool(getattr(self.base_env, "renders", callable(getattr(self.base_env, "render", None))))

    def task_random_state(self):
        get = getattr(self.base_env, "task_random_state", None)
        return get() if callable(get) else None

    def set_task_random_state(self, state) -> None:
        put = getattr(self.base_env, "set_task_random_state", None)
        if callable(put) and state is not None:
            put(state)

    def render(self, size: int | None = None) -> np.ndarray:
        if not self.renders:
            raise ValueError("this env renders no frames (give it render(size) -> uint8 [size, size, 3])")
        return self.base_env.render(size)


def make_user_env(spec: str, seed: int = 0) -> EnvBase:
    """The env ``spec`` ("module:function") makes, seeded ``seed``, checked (:func:`check_layout`), as a
    :class:`UserEnv` with ``InitTracker`` unless it tracks "is_init" itself."""
    factory = load_factory(spec)
    try:
        takes_seed = "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_seed = False
    env = factory(seed=seed) if takes_seed else factory()
    if not isinstance(env, EnvBase):
        raise ValueError(f"{FIELD}: {spec!r} returned {type(env).__name__}, not a TorchRL EnvBase")
    if not takes_seed:
        env.set_seed(seed)
    check_layout(env, spec)
    user = UserEnv(env)  # the user's env (transformed or not) as it is, inside
    if IS_INIT not in user.observation_spec.keys():
        user.append_transform(InitTracker())
    return user
