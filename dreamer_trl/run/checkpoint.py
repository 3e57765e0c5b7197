"""Checkpoints: tensors through ``torch.save`` (loaded with ``weights_only=True``) plus JSON metadata.

A checkpoint is a directory: ``state.pt`` (tensors only), ``meta.json``, optional extra parts written
by callbacks (the replay buffer), and ``manifest.json`` listing every file with its size and CRC-32 of its
bytes, written last. It is assembled in a staging directory beside the target and renamed into place, so a
crash, SIGKILL or full disk mid-save leaves the last good checkpoint intact (docs/reliability.md P2). Loading
checks the manifest (presence, sizes, checksums) before reading anything, and names the damaged file
(P9). No pickle is executed on any load path (P7).

CRC-32 (zlib) reads about 1 GB/s or more on one core: it detects damage (flipped bytes, garbage written over a
file), not tampering. Checkpoints written before checksums (manifest entries that are a bare size) still
load, with a warning that only sizes are checked. A full check of one directory is remembered for this
process, so the recipe's preflight and the restore do not read a large replay buffer twice.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

MANIFEST = "manifest.json"
_CHUNK = 1 << 22
_verified: set[tuple[str, int]] = set()  # (directory, manifest mtime) fully checked in this process


class CheckpointError(ValueError):
    """A checkpoint file is damaged: truncated, or its content differs from the manifest's checksum."""


def file_crc32(path: Path) -> str:
    """CRC-32 of the file's bytes as 8 hex digits (read in 4 MiB chunks)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _fsync_tree(root: Path) -> None:
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _manifest(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): {"bytes": p.stat().st_size, "crc32": file_crc32(p)}
            for p in sorted(root.rglob("*")) if p.is_file()}


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


def _read_manifest(path: Path) -> dict[str, dict]:
    """``{file: {"bytes": size[, "crc32": hex]}}``; a checkpoint from before checksums lists bare sizes."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
        return {name: entry if isinstance(entry, dict) else {"bytes": int(entry)} for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged: {MANIFEST} is not a manifest "
                              f"({type(err).__name__}: {err})") from None


def verify_checkpoint(path: str | Path, checksums: bool = True) -> Path:
    """The checkpoint directory to read (the previous one if a save died between its renames), once every file
    of the manifest is present, of the recorded size and (with ``checksums``) of the recorded CRC-32.

    Raises FileNotFoundError when the checkpoint or one of its files does not exist, and
    :class:`CheckpointError` naming the file, what was expected and what was found when one is damaged.
    """
    path = Path(path)
    if not path.exists() and _previous(path).exists():
        path = _previous(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is not a directory")
    if not (path / MANIFEST).is_file():
        for name in ("state.pt", "meta.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
        raise FileNotFoundError(f"checkpoint {path} is incomplete: {MANIFEST} is missing")
    files = _read_manifest(path)
    for name, entry in files.items():
        f = path / name
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
        if f.stat().st_size != entry["bytes"]:
            raise CheckpointError(f"checkpoint {path} is damaged: {name} has {f.stat().st_size} bytes, "
                                  f"the manifest says {entry['bytes']} (truncated or overwritten)")
    stamp = (str(path.resolve()), (path / MANIFEST).stat().st_mtime_ns)
    if not checksums or stamp in _verified:
        return path
    unchecked = [name for name, entry in files.items() if "crc32" not in entry]
    if unchecked:
        warnings.warn(f"checkpoint {path} has no content checksums (written before they were added): only file "
                      "sizes are checked", stacklevel=2)
    for name, entry in files.items():
        if "crc32" in entry and (found := file_crc32(path / name)) != entry["crc32"]:
            raise CheckpointError(f"checkpoint {path} is damaged: {name} has CRC-32 {found}, the manifest says "
                                  f"{entry['crc32']} (its bytes changed after the save)")
    _verified.add(stamp)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; no pickled code is ever executed."""
    path = verify_checkpoint(path)
    try:
        state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many kinds; each means the file is unreadable)
        raise CheckpointError(f"checkpoint {path}: state.pt cannot be read as tensors "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    return state, read_meta(path)


def read_meta(path: str | Path) -> dict:
    """``meta.json`` of a checkpoint directory; :class:`CheckpointError` naming it when it is not JSON."""
    path = Path(path)
    try:
        return json.loads((path / "meta.json").read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged: meta.json is not JSON ({err})") from None


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (named by zero-padded env step), oldest first: every file present
    and of its recorded size (contents are checked when one is loaded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            out.append(verify_checkpoint(d, checksums=False))
        except (FileNotFoundError, CheckpointError):
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
