"""Typed configuration: the single source of truth for a run, with paper defaults.

A leaf package: it imports nothing else from dreamer_trl (checks that need the library are passed in;
see ``dreamer_trl.run.preflight``).

- ``schema``: nested dataclasses (env, model, loss, optim, schedule, run, behavior), each field with a one-line
  description; :func:`to_dict` / :func:`from_dict` for checkpoints and ``config.json``.
- ``presets``: ``paper``, ``state``, ``debug``, ``planet``, ``planet_state`` as plain functions, and :data:`PRESETS`.
- ``cli``: :func:`parse_args` (tyro; ``--preset``, ``--resume``, ``--model.size``, ``--GROUP.FIELD``), :func:`validate`,
  :func:`config_differences` and the fields a resumed run may change (:data:`RESUMABLE`).
- ``reads``: who reads each field under which choice of parts; ``validate`` refuses unread fields set away from
  their defaults; ``python -m dreamer_trl.config.reads --markdown`` writes docs/config.md.
- ``sizes``: DreamerV3's named sizes; :func:`apply_size` writes one's widths into a ``ModelConfig``.
"""
from . import reads
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
from .sizes import apply_size

__all__ = [
    "BehaviorConfig", "apply_size", "make_preset", "reads", "planet", "planet_action_repeat", "planet_state",
    "DreamerConfig", "EnvConfig", "LossConfig", "ModelConfig", "OptimConfig", "PRESETS", "RESUMABLE", "RunConfig",
    "ScheduleConfig", "config_differences", "debug", "field_names", "from_dict", "get_field", "paper",
    "parse_args", "set_field", "state", "to_dict", "validate",
]
