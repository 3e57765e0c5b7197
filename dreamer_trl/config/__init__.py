"""Typed configuration: the single source of truth for a run, with paper defaults.

A leaf package: it imports nothing else from dreamer_trl (checks that need the library are passed in;
see ``dreamer_trl.run.preflight``).

- ``schema``: nested dataclasses (env, model, loss, optim, schedule, run, behavior), each field with a one-line
  description; :func:`to_dict` / :func:`from_dict` for checkpoints and ``config.json``.
- ``presets``: ``paper``, ``state``, ``debug``, ``planet``, ``planet_state`` as plain functions, and :data:`PRESETS`.
- ``cli``: :func:`parse_args` (tyro; ``--preset``, ``--resume``, ``--GROUP.FIELD``), :func:`validate`,
  :func:`config_differences` and the fields a resumed run may change (:data:`RESUMABLE`).
"""
from .cli import RESUMABLE, config_differences, parse_args, validate
from .presets import PRESETS, debug, make_preset, paper, planet, planet_action_repeat, planet_state, state
from .schema import (
    BehaviorConfig,
    DreamerConfig,
    EnvConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    field_names,
    from_dict,
    get_field,
    set_field,
    to_dict,
)

__all__ = [
    "BehaviorConfig", "make_preset", "planet", "planet_action_repeat", "planet_state",
    "DreamerConfig", "EnvConfig", "LossConfig", "ModelConfig", "OptimConfig", "PRESETS", "RESUMABLE", "RunConfig",
    "ScheduleConfig", "config_differences", "debug", "field_names", "from_dict", "get_field", "paper",
    "parse_args", "set_field", "state", "to_dict", "validate",
]
