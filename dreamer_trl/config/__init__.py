"""Typed configuration: the single source of truth for a run, with paper defaults.

A leaf package: it imports nothing else from dreamer_trl (checks that need the library are passed in;
see ``dreamer_trl.run.preflight``).

- ``schema``: nested dataclasses by part (env, nets, world_model with latent / rssm / loss, behavior with actor /
  critic / exploration / planner, optim, schedule, run), each field with a one-line description; :func:`to_dict` /
  :func:`from_dict` for checkpoints and ``config.json``.
- ``legacy``: the flat layout of formats 1-2, its migration (:func:`from_dict` applies it) and the old flag aliases.
- ``presets``: ``paper``, ``state``, ``debug``, ``planet``, ``planet_state`` as plain functions, and :data:`PRESETS`.
- ``cli``: :func:`parse_args` (tyro; ``--preset``, ``--resume``, ``--nets.size``, ``--GROUP.PART.FIELD``), :func:`validate`,
  :func:`config_differences` and the fields a resumed run may change (:data:`RESUMABLE`).
- ``reads``: who reads each field under which choice of parts; ``validate`` refuses unread fields set away from
  their defaults; ``python -m dreamer_trl.config.reads --markdown`` writes docs/config.md.
- ``sizes``: DreamerV3's named sizes; :func:`apply_size` writes one's widths into a config.
"""
from . import reads
from .cli import RESUMABLE, check_actions, config_differences, parse_args, validate
from .presets import PRESETS, debug, make_preset, paper, planet, planet_action_repeat, planet_state, state
from .schema import (
    ActorConfig,
    AtariConfig,
    BehaviorConfig,
    CriticConfig,
    DreamerConfig,
    EnvConfig,
    ExplorationConfig,
    LatentConfig,
    NetsConfig,
    OptimConfig,
    PlannerConfig,
    RSSMConfig,
    RunConfig,
    ScheduleConfig,
    WorldModelConfig,
    WorldModelLossConfig,
    field_names,
    from_dict,
    get_field,
    set_field,
    to_dict,
)
from .sizes import apply_size

__all__ = [
    "ActorConfig", "AtariConfig", "BehaviorConfig", "CriticConfig", "DreamerConfig", "EnvConfig", "ExplorationConfig",
    "LatentConfig", "NetsConfig", "OptimConfig", "PRESETS", "PlannerConfig", "RESUMABLE", "RSSMConfig", "RunConfig",
    "ScheduleConfig", "WorldModelConfig", "WorldModelLossConfig", "apply_size", "check_actions", "config_differences",
    "debug", "field_names", "from_dict", "get_field", "make_preset", "paper", "parse_args", "planet", "planet_action_repeat",
    "planet_state", "reads", "set_field", "state", "to_dict", "validate",
]
