"""dreamer_trl.preflight: the recipe's command line, with the DMC task check and the run to resume."""
import shutil

import pytest

from dreamer_trl import config
from dreamer_trl.checkpoint import save_checkpoint
from dreamer_trl.preflight import check_task, parse_args, saved_run


@pytest.mark.parametrize("task, fragments", [
    ("cheetah_fly", ["'env.task'", "cheetah_fly", "did you mean", "cheetah_run"]),
    ("walker_wlak", ["walker_walk"]),
    ("nonexistent_task", ["nonexistent_task", "cartpole_swingup"]),  # no close match: every task is listed
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
    assert cfg.model == config.debug().model


@pytest.mark.parametrize("layout, fragment", [
    ("missing", "neither a run directory nor a complete checkpoint"),
    ("empty", "no complete checkpoint under"),
    ("incomplete", "no complete checkpoint under"),
    ("no_config", "holds no run config"),
])
def test_saved_run_refuses_by_field(tmp_path, layout, fragment, capsys):
    run = tmp_path / "run"
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

