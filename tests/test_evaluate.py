"""recipes/evaluate.py on debug checkpoints written by recipes/dreamer_dmc.py (real dm_control)."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import imageio.v2 as imageio  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_one_thread(fn, argv):
    # One torch thread: on 2 shared cores two intra-op threads make the tiny convs ~4x slower.
    threads = torch.get_num_threads()
    try:
        return fn(argv)
    finally:
        torch.set_num_threads(threads)


def _train(run_dir: Path, from_pixels: bool) -> Path:
    """A debug run; returns its (final) checkpoint directory."""
    argv = ["--preset", "debug", "--env.from-pixels" if from_pixels else "--env.no-from-pixels",
            "--run.run-dir", str(run_dir), "--run.run-name", "run", "--run.no-progress", "--run.threads", "1"]
    return Path(_with_one_thread(_load("dreamer_dmc").main, argv)["checkpoint"])


def _evaluate(checkpoint: Path, video_dir: Path, *extra) -> dict:
    argv = ["--checkpoint", str(checkpoint), "--episodes", "1", "--video_dir", str(video_dir), "--threads", "1",
            *extra]
    return _with_one_thread(_load("evaluate").main, argv)


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("state"), from_pixels=False)


@pytest.fixture(scope="module")
def state_evaluation(state_checkpoint) -> tuple[dict, str]:
    """evaluate.py on the run directory (its newest checkpoint), default video dir, 32-pixel frames."""
    run_dir = state_checkpoint.parents[1]   # RUN/checkpoints/STEP
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = _evaluate(run_dir, "", "--video_size", "32")
    return result, out.getvalue()


def _check_printed_return(out: str, result: dict) -> None:
    match = re.search(r"^return: (-?[\d.]+) ± ([\d.]+) over 1 episodes$", out, re.M)
    assert match, out
    assert float(match.group(1)) == pytest.approx(result["mean"], abs=0.05) and result["std"] == 0.0


@pytest.mark.slow
def test_evaluate_prints_return(state_evaluation):
    result, out = state_evaluation
    _check_printed_return(out, result)
    assert len(result["returns"]) == 1 and "open-loop" not in out   # no open-loop strip for state models
    lo, mid, hi = result["actor_mean_quantiles"]
    assert -5 <= lo <= mid <= hi <= 5 and "actor pre-tanh mean" in out   # within the mean scale of 5
    assert all(s > 0 for s in result["actor_std_quantiles"])


@pytest.mark.slow
def test_evaluate_writes_playable_videos(state_evaluation, state_checkpoint):
    result, _ = state_evaluation
    mp4, gif = map(Path, result["videos"])
    assert (mp4.name, gif.name) == ("episode_0.mp4", "episode_0.gif")
    assert mp4.parent == state_checkpoint.parents[1].resolve() / "eval"
    frames = imageio.mimread(mp4, format="FFMPEG", memtest=False)
    assert len(frames) == 101 and frames[0].shape == (256, 256, 3)   # 200 frames / action repeat 2, + reset
    assert imageio.mimread(gif)[0].shape[:2] == (32, 32)


def test_evaluate_missing_or_incomplete_checkpoint(state_checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        _evaluate(tmp_path / "nope", tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(state_checkpoint, broken)
    (broken / "state.pt").unlink()
    with pytest.raises(SystemExit, match="state.pt is missing"):
        _evaluate(broken, tmp_path)


@pytest.mark.slow
def test_evaluate_pixel_checkpoint_writes_open_loop(tmp_path, capsys):
    checkpoint = _train(tmp_path / "run", from_pixels=True)
    result = _evaluate(checkpoint, tmp_path / "videos")
    out = capsys.readouterr().out
    _check_printed_return(out, result)
    assert "open-loop MSE per imagined step" in out
    names = [Path(p).name for p in result["videos"]]
    assert names == ["episode_0.mp4", "episode_0.gif", "open_loop.png", "open_loop.mp4", "open_loop.gif"]
    strip = imageio.imread(tmp_path / "videos" / "open_loop.png")
    assert strip.shape == (2 * 3 * 64, 50 * 64, 3)   # 100-step debug episodes give 2 windows of 50
    assert len(imageio.mimread(tmp_path / "videos" / "open_loop.mp4", format="FFMPEG", memtest=False)) == 50


@pytest.mark.slow
def test_evaluate_planet_checkpoint_plans_without_an_actor(tmp_path, capsys):
    """A planet_state run (tiny planner) saves no actor: evaluation acts by CEM on the world model."""
    argv = ["--preset", "planet_state", "--env.episode-frames", "80", "--schedule.total-env-steps", "160",
            "--schedule.prefill-env-steps", "80", "--schedule.train-every", "80", "--schedule.updates-per-train", "1",
            "--schedule.batch-size", "2", "--schedule.seq-len", "4", "--schedule.eval-every", "160",
            "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "400", "--model.state-dim", "4",
            "--model.belief-dim", "8", "--model.rssm-hidden", "8", "--model.mlp-hidden", "16",
            "--behavior.plan-horizon", "3", "--behavior.candidates", "16", "--behavior.top-k", "4",
            "--behavior.iterations", "2", "--run.run-dir", str(tmp_path), "--run.run-name", "run", "--run.no-progress",
            "--run.threads", "1"]
    checkpoint = Path(_with_one_thread(_load("dreamer_dmc").main, argv)["checkpoint"])
    result = _evaluate(checkpoint, tmp_path / "videos", "--video_size", "32")
    _check_printed_return(capsys.readouterr().out, result)
    assert result["actor_mean_quantiles"] == [] and [Path(p).name for p in result["videos"]] == [
        "episode_0.mp4", "episode_0.gif"]
