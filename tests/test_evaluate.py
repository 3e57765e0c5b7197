"""recipes/evaluate.py on tiny checkpoints written by recipes/dreamer_dmc.py (real dm_control): Dreamer V1 (debug,
state and pixels), PlaNet, DreamerV2, DreamerV3 and DreamerV3 current from state, and an older-format checkpoint."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import imageio.v2 as imageio  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
FORMAT1 = ROOT / "tests" / "fixtures" / "format1_debug_state" / "checkpoints" / "0000000400"  # tests/test_state.py

# Tiny runs of each preset family from state: the debug preset's schedule (800 env steps, 400 of prefill, a train
# phase every 200) with one update per phase, 200-frame episodes and tiny widths (the CLI takes only the fields the
# chosen parts read; a named model.size sets the widths).
TINY_SCHEDULE = ["--env.no-from-pixels", "--env.episode-frames", "200", "--schedule.total-env-steps", "800",
                 "--schedule.prefill-env-steps", "400", "--schedule.train-every", "200", "--schedule.train-ratio", "0",
                 "--schedule.updates-per-train", "1", "--schedule.batch-size", "2", "--schedule.seq-len", "4",
                 "--schedule.eval-every", "800", "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "1000"]
TINY_LATENT = ["--nets.size", "custom", "--world-model.latent.state-dim", "4", "--world-model.latent.classes", "4", "--world-model.rssm.belief-dim", "16",
               "--world-model.rssm.hidden", "8", "--model.mlp-hidden", "16", "--behavior.horizon", "3"]
PRESET_RUNS = {
    "planet_state": ["--world-model.latent.state-dim", "4", "--world-model.rssm.belief-dim", "8", "--world-model.rssm.hidden", "8",
                     "--model.mlp-hidden", "16", "--behavior.planner.candidates", "20", "--behavior.planner.top-k", "5",
                     "--behavior.planner.iterations", "2", "--behavior.planner.horizon", "3"],
    "dreamer_v2": [*TINY_LATENT, "--schedule.pretrain-updates", "0"],
    "dreamer_v3": TINY_LATENT,
    "dreamer_v3_current": ["--nets.size", "size1m", "--behavior.horizon", "3"],
}


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


def _train_preset(run_dir: Path, preset: str) -> Path:
    """A tiny run of ``preset`` from state (PRESET_RUNS); returns its final checkpoint directory."""
    argv = ["--preset", preset, *TINY_SCHEDULE, *PRESET_RUNS[preset], "--run.run-dir", str(run_dir), "--run.run-name",
            "run", "--run.no-progress", "--run.threads", "1"]
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


def _check_actor_quantiles(out: str, result: dict, dist: str, loc_name: str, loc_range, scale_range) -> None:
    """The returned 5/50/95% quantiles of the actor's location and scale are finite, ordered, within their ranges,
    and printed with the distribution's name."""
    assert result["actor_dist"] == dist
    match = re.search(rf"^actor {dist} over (\d+) visited states, 5/50/95%: {loc_name} (.*)$", out, re.M)
    assert match and int(match.group(1)) > 0, out
    for quantiles, (low, high) in ((result["actor_mean_quantiles"], loc_range),
                                   (result["actor_std_quantiles"], scale_range)):
        assert len(quantiles) == 3 and all(math.isfinite(v) for v in quantiles), quantiles
        assert low <= quantiles[0] <= quantiles[1] <= quantiles[2] <= high, (quantiles, low, high)
    assert f"{result['actor_mean_quantiles'][1]:.3f}" in match.group(2)


@pytest.mark.slow
def test_evaluate_prints_return(state_evaluation):
    result, out = state_evaluation
    _check_printed_return(out, result)
    assert len(result["returns"]) == 1 and "open-loop" not in out   # no open-loop strip for state models
    _check_actor_quantiles(out, result, "TanhNormal", "pre-tanh mean", (-5, 5), (0, float("inf")))  # mean scale 5
    assert "(bound 5)" in out


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


@pytest.fixture(scope="module", params=["planet_state", "dreamer_v2", "dreamer_v3", "dreamer_v3_current"])
def preset_evaluation(request, tmp_path_factory) -> tuple[str, dict, str]:
    """(preset, result, stdout) of evaluate.py on a tiny state run of the preset: 1 episode, no video."""
    root = tmp_path_factory.mktemp(request.param)
    checkpoint = _train_preset(root, request.param)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = _evaluate(checkpoint, root / "videos", "--videos", "0")
    return request.param, result, out.getvalue()


# preset: (distribution, what its location is called, location range, scale range)
ACTORS = {"dreamer_v2": ("TruncatedNormal", "truncated-normal loc", (-1, 1), (0.1, 2.1)),  # 2 sigmoid + min_std 0.1
          "dreamer_v3": ("BoundedNormal", "mean of N", (-1, 1), (0.1, 1.0)),  # std in [min_std, max_std]
          "dreamer_v3_current": ("BoundedNormal", "mean of N", (-1, 1), (0.1, 1.0))}


@pytest.mark.slow
def test_evaluate_every_preset_prints_its_actor_diagnostics(preset_evaluation):
    """V2 / V3 actors: the quantiles of their distribution's loc and scale over the visited states (V1: above);
    a planner (PlaNet) acts by CEM without an actor, and says that it skips them."""
    preset, result, out = preset_evaluation
    _check_printed_return(out, result)
    assert result["videos"] == [] and "open-loop" not in out
    if preset == "planet_state":
        assert result["actor_dist"] is None and result["actor_mean_quantiles"] == result["actor_std_quantiles"] == []
        assert re.search(r"^actor diagnostics: skipped, no actor \(behavior.kind planner", out, re.M), out
    else:
        _check_actor_quantiles(out, result, *ACTORS[preset])


def test_evaluate_migrates_an_older_checkpoint_format(tmp_path, capsys):
    """A format-1 V1 checkpoint (its RSSM under older parameter names) is migrated, as resuming migrates it."""
    checkpoint = tmp_path / "checkpoints" / FORMAT1.name
    shutil.copytree(FORMAT1, checkpoint)
    result = _evaluate(checkpoint, tmp_path / "videos", "--videos", "0")
    out = capsys.readouterr().out
    _check_printed_return(out, result)
    _check_actor_quantiles(out, result, "TanhNormal", "pre-tanh mean", (-5, 5), (0, float("inf")))


def test_one_hot_actor_diagnostics_are_its_largest_probability_and_entropy():
    from dreamer_trl.behavior.actors import OneHotActor

    torch.manual_seed(0)
    actor = OneHotActor(torch.nn.Linear(4 + 6, 3))
    diag = _load("evaluate").actor_diagnostics(actor, None, torch.randn(50, 4), torch.randn(50, 6))
    assert diag["dist"] == "OneHotCategorical" and diag["loc"].shape == diag["scale"].shape == (50,)
    assert bool(((diag["loc"] >= 1 / 3) & (diag["loc"] <= 1)).all())
    assert bool(((diag["scale"] >= 0) & (diag["scale"] <= math.log(3) + 1e-6)).all())
