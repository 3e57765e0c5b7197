"""dreamer_trl.run.preflight: the recipe's command line, with the DMC task check and the run to resume."""
import shutil

import pytest
import torch

from dreamer_trl import config
from dreamer_trl.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dreamer_trl.run.preflight import check_task, parse_args, saved_run


@pytest.mark.parametrize("task, fragments", [
    ("cheetah_fly", ["'env.task'", "cheetah_fly", "did you mean", "cheetah_run"]),
    ("walker_wlak", ["walker_walk"]),
    ("nonexistent_task", ["nonexistent_task", "no task is close", "cartpole, cheetah"]),  # domains, not 80 tasks
])
def test_check_task_names_the_field_and_close_tasks(task, fragments):
    cfg = config.paper()
    cfg.env.task = task
    with pytest.raises(ValueError) as exc:
        check_task(cfg)
    for fragment in fragments:
        assert fragment in str(exc.value)


@pytest.mark.parametrize("task", ["cheetah_run", "ball_in_cup_catch", "walker_walk"])
def test_check_task_accepts_suite_tasks(task):
    cfg = config.paper()
    cfg.env.task = task
    check_task(cfg)


def test_parse_args_refuses_an_unknown_task(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--env.task", "cheetah_fly"])
    assert exc.value.code == 2
    assert "cheetah_run" in capsys.readouterr().err


def _checkpoint(path, preset="debug", **meta):
    cfg = config.PRESETS[preset]()
    return save_checkpoint(path, {}, {"config": config.to_dict(cfg), "preset": preset, **meta})


def test_saved_run_reads_the_newest_complete_checkpoint(tmp_path):
    _checkpoint(tmp_path / "run" / "checkpoints" / "0000000200")
    newest = _checkpoint(tmp_path / "run" / "checkpoints" / "0000000400")
    data, preset, checkpoint = saved_run(str(tmp_path / "run"))
    assert (data, preset, checkpoint) == (config.to_dict(config.debug()), "debug", str(newest))
    assert saved_run(str(newest))[2] == str(newest)  # a checkpoint directory itself


def test_parse_args_resumes_with_the_saved_config(tmp_path):
    newest = _checkpoint(tmp_path / "run" / "checkpoints" / "0000000400")
    cfg, preset = parse_args(["--resume", str(tmp_path / "run"), "--run.no-progress"])
    assert preset == "debug" and cfg.run.resume == str(newest) and cfg.run.progress is False
    assert cfg.world_model == config.debug().world_model and cfg.behavior == config.debug().behavior


@pytest.mark.parametrize("layout, fragment", [
    ("missing", "run does not exist"),
    ("not_a_run", "run is neither a run directory"),
    ("empty", "no checkpoint under"),
    ("incomplete", "is incomplete: state.pt is missing"),
    ("no_config", "holds no run config"),
])
def test_saved_run_refuses_by_field(tmp_path, layout, fragment, capsys):
    run = tmp_path / "run"
    if layout == "not_a_run":
        run.mkdir()
    if layout == "empty":
        (run / "checkpoints").mkdir(parents=True)
    if layout == "incomplete":
        (_checkpoint(run / "checkpoints" / "0000000200") / "state.pt").unlink()
    if layout == "no_config":
        shutil.rmtree(run, ignore_errors=True)
        save_checkpoint(run / "checkpoints" / "0000000200", {}, {"preset": "debug"})
    with pytest.raises(ValueError, match=fragment) as exc:
        saved_run(str(run))
    assert "'run.resume'" in str(exc.value)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--resume", str(run)])
    assert exit_.value.code == 2 and fragment in capsys.readouterr().err



# --- damaged checkpoints (issue 14, items 9-11; docs/reliability.md P9): refused before anything is built ---


def _run_checkpoint(run, step=400):
    """A checkpoint with a replay part, as the trainer writes one: RUN/checkpoints/STEP."""
    cfg = config.debug()
    rows = lambda d: (d / "rows.bin").write_bytes(bytes(range(256)) * 64)  # noqa: E731  (stands for memmaps)
    return save_checkpoint(run / "checkpoints" / f"{step:010d}", {"w": torch.arange(1000.0)},
                           {"config": config.to_dict(cfg), "preset": "debug"}, parts={"replay": rows})


def _same_size_garbage(f):
    data = bytearray(f.read_bytes())
    data[len(data) // 2: len(data) // 2 + 16] = b"\xa5" * 16
    f.write_bytes(bytes(data))


DAMAGE = {
    "truncated_state": ("state.pt", lambda f: f.write_bytes(f.read_bytes()[:-100]), "state.pt has"),
    "garbage_state": ("state.pt", _same_size_garbage, "state.pt has CRC-32"),
    "garbage_meta": ("meta.json", lambda f: f.write_bytes(b"\x00" * f.stat().st_size), "meta.json has CRC-32"),
    "garbage_replay": ("replay/rows.bin", _same_size_garbage, "replay/rows.bin has CRC-32"),
}


@pytest.mark.parametrize("through", ["run", "checkpoint"])
@pytest.mark.parametrize("name", DAMAGE)
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, capsys, name, through):
    run = tmp_path / "run"
    older = _run_checkpoint(run, 200)
    newest = _run_checkpoint(run, 400)
    file, damage, fragment = DAMAGE[name]
    damage(newest / file)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--resume", str(run if through == "run" else newest)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert fragment in err and str(newest) in err and "'run.resume'" in err, err
    if through == "run":  # the older, intact checkpoint is offered, not silently taken
        assert f"--resume {older}" in err


def test_a_nonexistent_resume_path_is_named_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--resume", "/nonexistent/run"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "/nonexistent/run does not exist" in err and "state.pt" not in err


def test_an_intact_checkpoint_is_checksummed_once_per_process(tmp_path, monkeypatch):
    from dreamer_trl.run import checkpoint
    newest = _run_checkpoint(tmp_path / "run")
    read = []
    monkeypatch.setattr(checkpoint, "file_crc32", lambda p, f=checkpoint.file_crc32: read.append(p) or f(p))
    parse_args(["--resume", str(tmp_path / "run")])
    load_checkpoint(newest)
    assert len(read) == 3  # state.pt, meta.json, replay/rows.bin, once each (manifest.json is not listed)


def test_a_checkpoint_without_checksums_loads_with_a_warning(tmp_path):
    import json

    newest = _run_checkpoint(tmp_path / "run")
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["files"] = {name: entry["bytes"] for name, entry in manifest["files"].items()}  # the old format
    (newest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="no content checksums"):
        state, _ = load_checkpoint(newest)
    assert torch.equal(state["w"], torch.arange(1000.0))
    (newest / "meta.json").write_bytes(b"\x00" * (newest / "meta.json").stat().st_size)
    with pytest.raises(CheckpointError, match="meta.json is not JSON"):
        load_checkpoint(newest)


# --- bad input refused in seconds, exit 2, naming the field, before anything is built (issue 21, items 2-4) ---
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dreamer_dmc.py"


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--run.device", "cuda"], ["'run.device'", "'cuda'", "use cpu or auto"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["--env.action-repeat", "0"], ["'env.action_repeat' must be >= 1, got 0"]),
    (["--schedule.train-every", "0"], ["'schedule.train_every' must be >= 1, got 0"]),
    (["--run.run-dir", "/proc/xyz"], ["'run.run_dir'", "/proc/xyz", "cannot write"]),
])
def test_the_recipe_refuses_bad_input_at_once_naming_the_field(args, fragments, tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(RECIPE), "--preset", "debug", "--run.run-dir", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, out.stderr
    assert elapsed < 10, elapsed  # before envs are built (a traceback after 10-11 s before the fix)
    assert not any(tmp_path.iterdir()), "nothing was written for a refused run"
