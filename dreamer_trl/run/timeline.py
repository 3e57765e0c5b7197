"""A run's timeline never goes backwards: resuming from step S continues the run from S, and whatever the run
wrote after S (later checkpoints, log rows, videos, its summary) is moved aside, never deleted, never resumed.

docs/reliability.md P12. Resuming an older checkpoint explicitly (``--resume RUN/checkpoints/0000021000`` while
``0000024000`` exists) starts a new branch of the run at 21000. The old branch's later part goes to
``RUN/abandoned/<date>-after-<S>/`` under the same relative paths (its checkpoints stay resumable from there), so:

- ``--resume RUN`` (the newest checkpoint) and checkpoint pruning see only the current branch;
- every CSV series under ``RUN/logs`` stays ordered by step (the rows after S are cut out into the abandoned
  copy of the file), and the TensorBoard events after S are hidden by a purge marker (:func:`purge_step`);
- a damaged later checkpoint cannot block the printed resume command.

The same holds after a crash: what was logged between the last checkpoint and the crash is moved aside on resume
(the replayed steps log it again). Nothing is moved when nothing is later than S.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

STEP_DIR = re.compile(r"^\d{10}$")
"""a checkpoint directory's name: its env step, zero-padded"""
STEP_FILE = re.compile(r"_(\d{10})(?:\.|_)")
"""a video or image named after its env step (``eval_0000024000.mp4``, ``open_loop_0000024000.png``)"""


@dataclass
class Later:
    """What a run holds after a step: paths relative to the run directory, and the CSV rows per file."""

    paths: list[Path] = field(default_factory=list)
    rows: dict[Path, list[str]] = field(default_factory=dict)
    """per CSV file with rows after the step: those rows"""
    kept: dict[Path, list[str]] = field(default_factory=dict)
    """per such file: the rows at or before the step, which stay"""

    def __bool__(self) -> bool:
        return bool(self.paths or self.rows)

    def describe(self) -> str:
        checkpoints = sum(1 for p in self.paths if STEP_DIR.match(p.name))
        files = len(self.paths) - checkpoints
        rows = sum(len(r) for r in self.rows.values())
        return f"{checkpoints} checkpoint(s), {rows} log row(s) in {len(self.rows)} series, {files} other file(s)"


def _csv_split(path: Path, step: int) -> tuple[list[str], list[str]]:
    """(rows at or before ``step``, rows after it or unreadable: a line torn by a crash) of a ``step,value`` CSV."""
    keep, later = [], []
    for line in path.read_text().splitlines():
        try:
            row_step = int(float(line.split(",", 1)[0]))
            float(line.split(",", 1)[1])
        except (ValueError, IndexError):
            later.append(line)
            continue
        (keep if row_step <= step else later).append(line)
    return keep, later


def later_than(run_dir: str | Path, step: int) -> Later:
    """Everything under ``run_dir`` of a step after ``step``: checkpoints (every rank's, complete or not), CSV
    rows, step-named videos and images, and ``summary.json`` when it reports more env steps."""
    run_dir, out = Path(run_dir), Later()
    for root in sorted(run_dir.glob("checkpoints*")):
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if STEP_DIR.match(d.name) and int(d.name) > step:
                out.paths.append(d.relative_to(run_dir))
    for f in sorted((run_dir / "videos").rglob("*")) if (run_dir / "videos").is_dir() else []:
        m = STEP_FILE.search(f.name)
        if f.is_file() and m and int(m.group(1)) > step:
            out.paths.append(f.relative_to(run_dir))
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            done = int(json.loads(summary.read_text()).get("env_steps", 0))
        except (ValueError, TypeError, AttributeError):
            done = step + 1  # unreadable: not this branch's
        if done > step:
            out.paths.append(summary.relative_to(run_dir))
    for csv in sorted((run_dir / "logs").rglob("*.csv")) if (run_dir / "logs").is_dir() else []:
        keep, later = _csv_split(csv, step)
        if later:
            out.rows[csv.relative_to(run_dir)], out.kept[csv.relative_to(run_dir)] = later, keep
    return out


def branch(run_dir: str | Path, step: int, now: float | None = None) -> tuple[Path, Later] | None:
    """Move what ``run_dir`` holds after ``step`` (:func:`later_than`) into ``RUN/abandoned/<date>-after-<S>/``
    and cut the later rows out of the live CSVs; returns that directory and what was moved, or None when
    nothing was later.

    Files are moved (a rename on one file system); a CSV is rewritten through a temporary file and a rename,
    so a crash leaves either the old or the cut file, and the abandoned rows are written before the cut.
    """
    run_dir = Path(run_dir)
    later = later_than(run_dir, step)
    if not later:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    dest = run_dir / "abandoned" / f"{stamp}-after-{step:010d}"
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir / "abandoned" / f"{stamp}-after-{step:010d}-{n}"
    dest.mkdir(parents=True)
    for csv, rows in later.rows.items():
        (dest / csv).parent.mkdir(parents=True, exist_ok=True)
        (dest / csv).write_text("".join(f"{r}\n" for r in rows))
        tmp = (run_dir / csv).with_name(f".{csv.name}.cut")
        tmp.write_text("".join(f"{r}\n" for r in later.kept[csv]))
        tmp.replace(run_dir / csv)
    for rel in later.paths:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run_dir / rel), str(dest / rel))
    (dest / "README.txt").write_text(
        f"The part of this run after env step {step} that was set aside when the run was resumed from that step "
        f"({later.describe()}); paths as in the run directory. Its checkpoints are complete: evaluate one with "
        f"recipes/evaluate.py --checkpoint <this directory>/checkpoints/<STEP>, or move it back under the run's "
        f"checkpoints/ (with the rows and files after it) to continue that branch.\n")
    return dest, later


def purge_step(step: int) -> int:
    """The TensorBoard ``purge_step`` for a run resumed at ``step``: events after it are dropped by TensorBoard."""
    return step + 1
