"""Checkpoints: tensors through ``torch.save`` (loaded with ``weights_only=True``) plus JSON metadata.

A checkpoint is a directory holding ``state.pt`` and ``meta.json``. It is written to a staging
directory beside the target and renamed into place, so a crash mid-save leaves the last one intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch


def save_checkpoint(path: str | Path, state: dict, meta: dict) -> Path:
    """Write ``state`` (nested dicts of tensors and numbers) and ``meta`` (JSON) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = _previous(path)
    try:
        torch.save(state, staging / "state.pt")
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        for f in staging.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)  # from here until the next rename, the last good checkpoint is `old`
        staging.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old.exists() and not path.exists():
            old.rename(path)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; no pickled code is ever executed.

    If the process died between the two renames of a save, the previous checkpoint is read.
    """
    path = Path(path)
    if not path.exists() and _previous(path).exists():
        path = _previous(path)
    for name in ("state.pt", "meta.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
    state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    return state, json.loads((path / "meta.json").read_text())
