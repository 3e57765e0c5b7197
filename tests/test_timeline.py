"""dreamer_trl.run.timeline: resuming from step S moves what the run wrote after S aside (docs/reliability.md P12),
on a hand-made run directory and through the recipe in both orders of events (an older checkpoint resumed while
later ones exist; a crash that logged past the last checkpoint)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamer_trl.run.checkpoint import checkpoint_dirs, read_meta
from dreamer_trl.run.timeline import branch, later_than

ROOT = Path(__file__).resolve().parents[1]
RECIPE = [sys.executable, str(ROOT / "recipes" / "dreamer_dmc.py")]
BASE = ["--preset", "debug", "--env.no-from-pixels", "--run.no-progress", "--run.threads", "1",
        "--run.checkpoint-every", "200"]
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def recipe(*args):
    out = subprocess.run(RECIPE + list(args), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def steps_of(csv: Path) -> list[int]:
    return [int(float(line.split(",")[0])) for line in csv.read_text().split()]


def assert_one_timeline(run_dir: Path) -> None:
    """Every CSV series in step order, each step once (episode returns: several episodes may end at one step)."""
    for csv in (run_dir / "logs").rglob("*.csv"):
        steps = steps_of(csv)
        ordered = steps == sorted(steps) if csv.name == "episode_return.csv" else steps == sorted(set(steps))
        assert ordered, (csv.relative_to(run_dir), steps)


def files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def hand_made_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for name in ("0000021000", "0000024000"):
        (run / "checkpoints" / name).mkdir(parents=True)
        (run / "checkpoints" / name / "state.pt").write_bytes(b"x" * 10)
    (run / "checkpoints_rank1" / "0000024000").mkdir(parents=True)
    (run / "checkpoints_rank1" / "0000024000" / "state.pt").write_bytes(b"y")
    (run / "logs" / "scalars" / "eval").mkdir(parents=True)
    (run / "logs" / "scalars" / "eval" / "return.csv").write_text("20000,1.5\n21000,1.7\n24000,19.25\n")
    (run / "logs" / "scalars" / "time.csv").write_text("21000,3.0\n22000,4.0\n22500,4.")  # torn by a crash
    (run / "videos").mkdir()
    for name in ("eval_0000021000.mp4", "eval_0000024000.mp4", "open_loop_0000024000.png"):
        (run / "videos" / name).write_bytes(b"v")
    (run / "summary.json").write_text(json.dumps({"env_steps": 24000}))
    (run / "config.json").write_text("{}")
    return run


def test_branch_moves_everything_after_the_step_aside_and_deletes_nothing(tmp_path):
    run = hand_made_run(tmp_path)
    before = files(run)
    dest, later = branch(run, 21000, now=0.0)
    assert dest.parent == run / "abandoned" and dest.name.endswith("-after-0000021000")
    assert sorted(p.name for p in run.glob("checkpoints*/*")) == ["0000021000"]
    assert (dest / "checkpoints" / "0000024000" / "state.pt").read_bytes() == b"x" * 10
    assert (dest / "checkpoints_rank1" / "0000024000").is_dir()
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["eval_0000021000.mp4"]
    assert (dest / "videos" / "open_loop_0000024000.png").is_file() and (dest / "summary.json").is_file()
    assert (run / "logs" / "scalars" / "eval" / "return.csv").read_text() == "20000,1.5\n21000,1.7\n"
    assert (dest / "logs" / "scalars" / "eval" / "return.csv").read_text() == "24000,19.25\n"
    assert (run / "logs" / "scalars" / "time.csv").read_text() == "21000,3.0\n"
    assert (dest / "logs" / "scalars" / "time.csv").read_text() == "22000,4.0\n22500,4.\n"  # the torn line kept
    assert (run / "config.json").is_file() and "2 checkpoint(s), 3 log row(s)" in later.describe()
    # nothing lost: every file is in the run or in the abandoned copy (CSV rows split between them)
    kept = {k: v for k, v in files(run).items() if not k.startswith("abandoned/")}
    after = {**kept, **{k: v for k, v in files(dest).items() if k != "README.txt"}}
    assert set(after) - set(before) == set() and set(before) - set(after) == set()
    assert not later_than(run, 21000)
    assert branch(run, 21000) is None  # nothing later: nothing moved, no empty directory
    assert len(list((run / "abandoned").iterdir())) == 1


def test_a_second_branch_from_the_same_step_gets_its_own_directory(tmp_path):
    run = hand_made_run(tmp_path)
    first, _ = branch(run, 21000, now=0.0)
    (run / "checkpoints" / "0000022000").mkdir()
    second, _ = branch(run, 21000, now=0.0)
    assert first != second and (second / "checkpoints" / "0000022000").is_dir()


@pytest.mark.slow
def test_resuming_an_older_checkpoint_starts_a_branch_that_later_resumes_and_prunes_see(tmp_path):
    """The issue's order of events: a run to 800 (checkpoints kept: 3), its 800 damaged; resume the 400
    explicitly and stop at 600; then `--resume RUN` continues from the new 600, not the abandoned 800. The
    replayed 600 equals the abandoned one (exact resume), every series stays in order, pruning keeps 400."""
    from test_state import assert_same_checkpoint

    run = tmp_path / "run"
    recipe(*BASE, "--run.checkpoints-kept", "3", "--run.run-dir", str(tmp_path), "--run.run-name", "run")
    assert [d.name for d in checkpoint_dirs(run / "checkpoints")] == ["0000000400", "0000000600", "0000000800"]
    (run / "checkpoints" / "0000000800" / "state.pt").write_bytes(b"damaged")
    out = recipe("--resume", str(run / "checkpoints" / "0000000400"), "--run.stop-at-env-steps", "600")
    [dest] = (run / "abandoned").iterdir()
    assert f"moved to {dest}" in out.stdout and "the run continues from 400" in out.stdout
    assert sorted(p.name for p in (dest / "checkpoints").iterdir()) == ["0000000600", "0000000800"]
    assert [d.name for d in checkpoint_dirs(run / "checkpoints")] == ["0000000400", "0000000600"]
    assert_same_checkpoint(run / "checkpoints" / "0000000600", dest / "checkpoints" / "0000000600")
    assert_one_timeline(run)
    assert max(steps_of(run / "logs" / "scalars" / "eval" / "return.csv")) == 400
    assert max(steps_of(dest / "logs" / "scalars" / "eval" / "return.csv")) == 800
    recipe("--resume", str(run), "--run.no-progress")  # the newest of this branch: 600
    assert [d.name for d in checkpoint_dirs(run / "checkpoints")] == ["0000000400", "0000000600", "0000000800"]
    assert read_meta(run / "checkpoints" / "0000000800")["counters"]["updates"] == 6
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 800
    assert_one_timeline(run)
    assert steps_of(run / "logs" / "scalars" / "eval" / "return.csv") == [400, 800]


@pytest.mark.slow
def test_a_resume_after_a_crash_sets_aside_what_was_logged_past_the_checkpoint(tmp_path):
    """The other order: the run logged past its last checkpoint and died (rows and a video at 500, a torn line);
    the plain `--resume RUN` moves them aside and the series go on in order from the checkpoint."""
    run = tmp_path / "run"
    recipe(*BASE, "--run.run-dir", str(tmp_path), "--run.run-name", "run", "--run.stop-at-env-steps", "400")
    episodes = run / "logs" / "scalars" / "train" / "episodes.csv"
    with episodes.open("a") as f:
        f.write("500,9\n60")
    (run / "videos" / "eval_0000000500.mp4").write_bytes(b"v")
    recipe("--resume", str(run), "--run.no-progress", "--run.stop-at-env-steps", "600")
    [dest] = (run / "abandoned").iterdir()
    assert (dest / "logs" / "scalars" / "train" / "episodes.csv").read_text() == "500,9\n60\n"
    assert (dest / "videos" / "eval_0000000500.mp4").is_file()
    assert steps_of(episodes) == [200, 400, 600]
    assert_one_timeline(run)


def test_tensorboard_drops_the_events_after_the_resume_step(tmp_path):
    """TensorBoard events cannot be cut like CSV rows: the resumed writer starts with a purge marker at S + 1."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dreamer_trl.builders.trainer import BranchedTensorboardLogger

    first = BranchedTensorboardLogger(exp_name="", log_dir=str(tmp_path))
    for step, value in ((200, 1.0), (400, 2.0), (600, 3.0)):  # 600: after the checkpoint at 400
        first.log_scalar("eval/return", value, step=step)
    first.experiment.close()
    resumed = BranchedTensorboardLogger(exp_name="", log_dir=str(tmp_path), resumed_at=400)
    resumed.log_scalar("eval/return", 30.0, step=600)
    resumed.experiment.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/return")] == [(200, 1.0), (400, 2.0), (600, 30.0)]
