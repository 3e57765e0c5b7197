"""Save and restore a whole training run: networks, optimizers, replay buffer, counters, every RNG.

docs/reliability.md P1: a run stopped at a checkpoint and resumed in a new process continues bit-exactly
(on CPU with fixed threads) as the uninterrupted run does. The save point is a schedule boundary: the
open episode is marked truncated in the buffer and the collector restarts with a fresh episode and
new trajectory ids, in the uninterrupted run as well, so no sampled sequence spans a save (with
``schedule.replay_windows = "stream"`` one may, as it crosses any episode start, in both runs alike).
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from dreamer_trl.data.replay import SequenceReplayBuffer, load_buffer, mark_last_row_truncated, save_buffer
from dreamer_trl.run.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, verify_checkpoint
from dreamer_trl.training.update import DreamerUpdate

FORMAT = 3
"""3: the config nested by part (``config/legacy.py`` migrates the flat config of 1 and 2 when it is read);
2: one RSSM over recurrent cores (V1's GRU cell moved into ``rssm.core``); 1: V1 had its own RSSM class."""

# Format 1 -> 2, Dreamer V1 / PlaNet world models only: their RSSM's parameters under the one RSSM's names.
_V1_RSSM_RENAMES = [
    (re.compile(r"(^|\.)rssm\.(img_in|gru)\."), r"\1rssm.core.\2."),
    (re.compile(r"(^|\.)rssm\.img_out\.0\.(weight|bias)$"), r"\1rssm.img_out.0.0.\2"),
    (re.compile(r"(^|\.)rssm\.img_out\.2\.(weight|bias)$"), r"\1rssm.img_out.1.\2"),
    (re.compile(r"(^|\.)rssm\.obs_out\.(weight|bias)$"), r"\1rssm.obs_out.2.\2"),
]


def migrate_state(state: dict, fmt: int) -> dict:
    """The module states of a checkpoint of format ``fmt`` under today's parameter names (same order, so the
    optimizer states, which are kept by parameter position, stay as they are)."""
    if fmt in (2, FORMAT):  # 2 -> 3 changed the config only (migrated where it is read), not the parameters
        return state
    if fmt != 1:
        raise ValueError(f"checkpoint format {fmt!r} is not known (this code reads formats 1 to {FORMAT})")
    out = dict(state)
    for name, module_state in state.items():
        if not isinstance(module_state, dict) or not any(k.endswith("rssm.gru.weight_ih") for k in module_state):
            continue  # not a V1 world model (V2 / V3 RSSMs kept their names)
        renamed = {}
        for key, value in module_state.items():
            for pattern, replacement in _V1_RSSM_RENAMES:
                key = pattern.sub(replacement, key)
            renamed[key] = value
        out[name] = type(module_state)(renamed)
    return out


def save_run(path: str | Path, *, modules: dict[str, nn.Module], updater: DreamerUpdate,
             buffer: SequenceReplayBuffer, counters: dict, config: dict, preset: str, envs: dict,
             pace: dict | None = None) -> Path:
    """Checkpoint everything needed to continue the run exactly (see module docstring).

    ``envs`` are DMC envs (a :class:`~dreamer_trl.data.dmc.DMCEnv`, also inside a TransformedEnv, which forwards
    the calls): their task random streams are saved through ``task_random_state()``.
    """
    mark_last_row_truncated(buffer)
    rng_tensors, rng_values = rng_state()
    state = {**{k: m.state_dict() for k, m in modules.items()}, "optimizers": updater.state_dict(),
             "rng": rng_tensors}
    meta = {"format": FORMAT, "config": config, "preset": preset, "counters": counters,
            "env_steps": counters["env_steps"], "updates": counters["updates"],
            "updater": {"skipped": updater.skipped, "skip_streak": updater.skip_streak},
            "rng": rng_values, "env_rng": {k: e.task_random_state() for k, e in envs.items()}}
    if pace is not None:
        meta["pace"] = pace
    return save_checkpoint(path, state, meta, parts={"replay": lambda d: save_buffer(buffer, d)})


def restore_run(path: str | Path, *, modules: dict[str, nn.Module], updater: DreamerUpdate,
                buffer: SequenceReplayBuffer, envs: dict, map_location="cpu", pace=None) -> dict:
    """Load a :func:`save_run` checkpoint into freshly built objects; returns the counters. RNG last. ``pace``
    (a :class:`~dreamer_trl.training.trainer.Pace`) gets the saved costs where the checkpoint has them."""
    path = verify_checkpoint(path)
    state, meta = load_checkpoint(path, map_location=map_location)
    try:
        state = migrate_state(state, meta.get("format"))
    except ValueError as err:
        raise ValueError(f"checkpoint {path}: {err}") from None
    missing = set(modules) - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks the modules {sorted(missing)}")
    for name, module in modules.items():
        module.load_state_dict(state[name])
    updater.load_state_dict(state["optimizers"])
    updater.skipped, updater.skip_streak = meta["updater"]["skipped"], meta["updater"]["skip_streak"]
    load_buffer(buffer, path / "replay")
    for name, env in envs.items():
        env.set_task_random_state(meta["env_rng"][name])
    if pace is not None and "pace" in meta:
        pace.load_state_dict(meta["pace"])
    set_rng_state(state["rng"], meta["rng"])
    return meta["counters"]
