"""The recipe's command line: the config package's parsing plus the checks that need the library.

Run right after parsing and before anything heavy is built, so a bad task name or an incomplete run to
resume ends the process in seconds with exit code 2 and one message (docs/reliability.md P6, P10). The task
check needs only dm_control's task list; the resume lookup reads JSON (the checkpoint module brings torch).
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Sequence

from dreamer_trl import config
from dreamer_trl.config import DreamerConfig


def check_task(cfg: DreamerConfig) -> None:
    """``env.task`` is a task of ``env.suite`` (a DeepMind Control Suite task, an Atari game, a registered
    gymnasium id or an importable ``module:function``); otherwise ValueError with the closest names."""
    if cfg.env.suite == "atari":
        from dreamer_trl.data.atari import check_atari_game

        check_atari_game(cfg.env.task)
        config.check_actions(cfg, "discrete")
        return
    if cfg.env.suite == "torchrl":  # importable here; its layout is checked once the env is built
        from dreamer_trl.data.user_env import load_factory

        load_factory(cfg.env.task)
        return
    if cfg.env.suite == "gym":
        from dreamer_trl.data.gym import check_gym_id, gym_action_space

        check_gym_id(cfg.env.task)
        config.check_actions(cfg, gym_action_space(cfg.env.task))
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import suite

    names = sorted(f"{domain}_{task}" for domain, task in suite.ALL_TASKS)
    if cfg.env.task not in names:
        close = difflib.get_close_matches(cfg.env.task, names, n=3, cutoff=0.5)
        domains = sorted({domain for domain, _ in suite.ALL_TASKS})
        hint = (f"did you mean {', '.join(close)}?" if close else
                f"no task is close; the {len(names)} tasks are domain_task with a domain among {', '.join(domains)}")
        raise ValueError(f"config field 'env.task': unknown DMC task {cfg.env.task!r}; {hint}")


def check_device(cfg: DreamerConfig) -> None:
    """``run.device`` names a device this machine has (cuda needs a CUDA build and a GPU, mps an Apple GPU)."""
    device = cfg.run.device
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"config field 'run.device': {device!r} is not available here ({why}); use cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"config field 'run.device': {device!r}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif device.startswith("mps") and not torch.backends.mps.is_available():
        raise ValueError(f"config field 'run.device': {device!r} is not available here (no Apple GPU); use cpu or auto")


def check_writable(cfg: DreamerConfig) -> None:
    """``run.run_dir`` (and ``run.buffer_dir`` when set) can be created and written by this process."""
    fields = [("run.run_dir", cfg.run.run_dir)] if not cfg.run.resume else []
    fields += [("run.buffer_dir", cfg.run.buffer_dir)] if cfg.run.buffer_dir else []
    for name, directory in fields:
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".write-check-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"config field {name!r}: cannot write to {directory} ({err.strerror or err}); "
                             "give a directory this user can create and write") from None


def saved_run(path: str) -> tuple[dict, str, str]:
    """(saved config as data, its preset, checkpoint directory) of the newest checkpoint, fully verified.

    ``path`` is a run directory (``RUN/checkpoints/STEP``) or one checkpoint directory. Every file of the
    checkpoint to resume is checked against the manifest (presence, size, CRC-32) here, before anything is
    built; a damaged newest checkpoint is refused with the file named, not silently replaced by an older one.
    """
    field, root = "config field 'run.resume'", Path(path)
    if not root.exists():
        raise ValueError(f"{field}: {path} does not exist")
    from dreamer_trl.run.checkpoint import (  # brings torch
        CheckpointError,
        checkpoint_dirs,
        read_meta,
        verify_checkpoint,
    )
    in_run = (root / "checkpoints").is_dir()
    if in_run:
        saved = sorted(p for p in (root / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
        if not saved:
            raise ValueError(f"{field}: no checkpoint under {root / 'checkpoints'}")
        newest = saved[-1]
    else:
        newest = root
    try:
        newest = verify_checkpoint(newest)
        meta = read_meta(newest)
    except (FileNotFoundError, CheckpointError) as err:
        if not in_run and not (root / "state.pt").exists() and not (root / "manifest.json").exists():
            raise ValueError(f"{field}: {path} is neither a run directory (RUN/checkpoints/STEP) nor a "
                             f"checkpoint") from None
        older = [str(d) for d in checkpoint_dirs(root / "checkpoints") if d != newest][-1:] if in_run else []
        hint = f"; the previous checkpoint can be resumed with --resume {older[0]}" if older else ""
        raise ValueError(f"{field}: {err}{hint}") from None
    if "config" not in meta or "preset" not in meta:
        raise ValueError(f"{field}: {newest} holds no run config (not a training checkpoint)")
    from dreamer_trl.config.legacy import migrate_config

    return migrate_config(meta["config"], meta.get("format")), meta["preset"], str(newest)


def parse_args(argv: Sequence[str] | None = None, description: str = "", *, default_preset: str = "paper",
               defaults: Sequence[str] = ()) -> tuple[DreamerConfig, str]:
    """:func:`dreamer_trl.config.parse_args` with the task, device and run-directory checks and ``--resume``
    (``default_preset``, ``defaults``: a recipe's own preset and leading arguments)."""
    return config.parse_args(argv, description, checks=[check_task, check_device, check_writable],
                             load_resumed=saved_run, default_preset=default_preset, defaults=defaults)
