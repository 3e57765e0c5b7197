"""Checkpoints: tensors through ``torch.save`` (loaded with ``weights_only=True``) plus JSON metadata.

A checkpoint is a directory: ``state.pt`` (tensors only), ``meta.json``, optional extra parts written
by callbacks (the replay buffer), and ``manifest.json`` listing every file with its size, written
last. It is assembled in a staging directory beside the target and renamed into place, so a crash,
SIGKILL or full disk mid-save leaves the last good checkpoint intact (RELIABILITY.md P2). Loading
checks the manifest before reading anything. No pickle is executed on any load path (P7).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

MANIFEST = "manifest.json"


def _fsync_tree(root: Path) -> None:
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _manifest(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def save_checkpoint(path: str | Path, state: dict, meta: dict,
                    parts: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Write ``state`` (nested dicts of tensors and numbers), ``meta`` (JSON) and ``parts`` atomically.

    ``parts`` maps a sub-directory name to a callable that writes into that directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = _previous(path)
    try:
        torch.save(state, staging / "state.pt")
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        for name, write in (parts or {}).items():
            (staging / name).mkdir()
            write(staging / name)
        files = _manifest(staging)
        (staging / MANIFEST).write_text(json.dumps({"files": files}, indent=2, sort_keys=True))
        _fsync_tree(staging)
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


def verify_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory to read (the previous one if a save died between its renames).

    Raises FileNotFoundError naming the missing or truncated file when the manifest does not match.
    """
    path = Path(path)
    if not path.exists() and _previous(path).exists():
        path = _previous(path)
    if not (path / MANIFEST).is_file():
        for name in ("state.pt", "meta.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
        raise FileNotFoundError(f"checkpoint {path} is incomplete: {MANIFEST} is missing")
    files = json.loads((path / MANIFEST).read_text())["files"]
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
        if f.stat().st_size != size:
            raise FileNotFoundError(f"checkpoint {path} is corrupt: {name} has {f.stat().st_size} bytes, "
                                    f"the manifest says {size}")
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; no pickled code is ever executed."""
    path = verify_checkpoint(path)
    state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    return state, json.loads((path / "meta.json").read_text())


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (named by zero-padded env step), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            out.append(verify_checkpoint(d))
        except FileNotFoundError:
            continue
    return out


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints under ``root``."""
    for d in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(d, ignore_errors=True)


def rng_state() -> tuple[dict, dict]:
    """Every global random stream: (tensors for state.pt, JSON-able values for meta.json)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
                     "python": [version, list(internal), gauss_next]}


def set_rng_state(tensors: dict, values: dict) -> None:
    """Restore what :func:`rng_state` captured (call last, after everything else is rebuilt)."""
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["cuda"]))
    kind, keys, pos, has_gauss, gauss = values["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = values["python"]
    random.setstate((version, tuple(internal), gauss_next))
