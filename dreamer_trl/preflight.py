"""The recipe's command line: the config package's parsing plus the checks that need the library.

Run right after parsing and before anything heavy is built, so a bad task name or an incomplete run to
resume ends the process in seconds with exit code 2 and one message (RELIABILITY.md P6, P10). The task
check needs only dm_control's task list; the resume lookup reads JSON (the checkpoint module brings torch).
"""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Sequence

from dreamer_trl import config
from dreamer_trl.config import DreamerConfig


def check_task(cfg: DreamerConfig) -> None:
    """``env.task`` is a DeepMind Control Suite task; otherwise ValueError with the closest names."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import suite

    names = sorted(f"{domain}_{task}" for domain, task in suite.ALL_TASKS)
    if cfg.env.task not in names:
        close = difflib.get_close_matches(cfg.env.task, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"expected one of {', '.join(names)}"
        raise ValueError(f"config field 'env.task': unknown DMC task {cfg.env.task!r}; {hint}")


def saved_run(path: str) -> tuple[dict, str, str]:
    """(saved config as data, its preset, checkpoint directory) of the newest complete checkpoint.

    ``path`` is a run directory (``RUN/checkpoints/STEP``) or one checkpoint directory.
    """
    from dreamer_trl.checkpoint import checkpoint_dirs, verify_checkpoint

    root = Path(path)
    try:
        found = checkpoint_dirs(root / "checkpoints") if (root / "checkpoints").is_dir() else [verify_checkpoint(root)]
    except FileNotFoundError as err:
        raise ValueError(f"config field 'run.resume': {path} is neither a run directory nor a complete "
                         f"checkpoint ({err})") from None
    if not found:
        raise ValueError(f"config field 'run.resume': no complete checkpoint under {root / 'checkpoints'}")
    meta = json.loads((found[-1] / "meta.json").read_text())
    if "config" not in meta or "preset" not in meta:
        raise ValueError(f"config field 'run.resume': {found[-1]} holds no run config (not a training checkpoint)")
    return meta["config"], meta["preset"], str(found[-1])


def parse_args(argv: Sequence[str] | None = None, description: str = "") -> tuple[DreamerConfig, str]:
    """:func:`dreamer_trl.config.parse_args` with the DMC task check and ``--resume`` support."""
    return config.parse_args(argv, description, checks=[check_task], load_resumed=saved_run)
