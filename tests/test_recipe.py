"""recipes/dreamer_dmc.py end to end on real dm_control (debug preset), and its early failures."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import keys  # noqa: E402
from dreamer_trl.config import parse_args, to_dict  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dreamer_dmc.py"
# Metrics the recipe logs (CSVLogger writes logs/scalars/<name>.csv, one "step,value" row per call).
EXPECTED_METRICS = ["eval/return", "train/updates", "train/episodes", "train/episode_return", "loss/actor",
                    "loss/value", "train/grad_norm_model", "train/grad_norm_actor", "train/grad_norm_value", "time/env_steps_per_s",
                    "loss/kl", "loss/kl_clamped"]


def _load_recipe():
    spec = importlib.util.spec_from_file_location("dreamer_dmc", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(run_dir, *extra) -> list[str]:
    # One torch thread: on 2 shared cores two intra-op threads make the tiny convs ~4x slower.
    return ["--preset", "debug", "--run.run-dir", str(run_dir), "--run.run-name", "run", "--run.no-progress",
            "--run.threads", "1", *extra]


def _run(run_dir, *extra) -> tuple[dict, list[str]]:
    """Run the recipe's main; torch's global thread count is restored afterwards."""
    threads = torch.get_num_threads()
    argv = _argv(run_dir, *extra)
    try:
        return _load_recipe().main(argv), argv
    finally:
        torch.set_num_threads(threads)


def _read_csv(path: Path) -> list[tuple[int, float]]:
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    return [(int(float(step)), float(value)) for step, value in rows]


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    summary, argv = _run(tmp_path_factory.mktemp("pixels"))
    return summary, argv, Path(summary["run_dir"])


@pytest.mark.slow
def test_pixel_run_summary(pixel_run):
    summary, _, run_dir = pixel_run
    assert summary["env_steps"] == 800
    assert summary["updates"] == 6  # 2 updates at each of env steps 400 (after prefill), 600 and 800
    assert math.isfinite(summary["final_eval_return"])
    assert [step for step, _ in summary["evaluations"]] == [400, 800]
    assert summary["evaluations"][-1][1] == summary["final_eval_return"]
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))


@pytest.mark.slow
def test_pixel_run_config_json_is_the_resolved_config(pixel_run):
    _, argv, run_dir = pixel_run
    cfg, preset = parse_args(argv)
    written = json.loads((run_dir / "config.json").read_text())
    assert written == json.loads(json.dumps({"preset": preset, **to_dict(cfg)}))
    assert written["preset"] == "debug" and written["run"]["progress"] is False
    assert written["env"]["from_pixels"] is True


@pytest.mark.slow
@pytest.mark.parametrize("metric", EXPECTED_METRICS)
def test_pixel_run_csv_metrics(pixel_run, metric):
    summary, _, run_dir = pixel_run
    rows = _read_csv(run_dir / "logs" / "scalars" / f"{metric}.csv")
    assert rows, metric
    assert all(math.isfinite(v) for _, v in rows), rows
    assert all(0 < step <= summary["env_steps"] for step, _ in rows)
    if metric == "train/updates":
        assert rows[-1] == (800, summary["updates"])
    if metric == "eval/return":
        assert rows == [tuple(e) for e in summary["evaluations"]]


@pytest.mark.slow
def test_pixel_run_checkpoint_loads_into_fresh_modules(pixel_run):
    summary, argv, run_dir = pixel_run
    cfg, _ = parse_args(argv)
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert Path(summary["checkpoint"]).parent == run_dir / "checkpoints"
    assert meta["env_steps"] == 800 and meta["updates"] > 0 and meta["updates"] == summary["updates"]
    assert meta["config"] == json.loads(json.dumps(to_dict(cfg)))
    assert set(state) == {"world_model", "actor", "value", "optimizers", "rng"}
    assert set(state["optimizers"]) == {"model", "actor", "value"}

    feature_dim = cfg.world_model.latent.state_dim + cfg.world_model.rssm.belief_dim
    action_dim = 1  # cartpole
    dt.make_world_model("pixels", (3, 64, 64), action_dim, cfg).load_state_dict(state["world_model"])
    dt.make_actor(feature_dim, action_dim, cfg).load_state_dict(state["actor"])
    dt.make_value(feature_dim, cfg).load_state_dict(state["value"])
    for group in state["optimizers"].values():
        assert all(s["step"] == summary["updates"] for s in group["state"].values())


@pytest.mark.slow
def test_state_observation_run(tmp_path):
    summary, argv = _run(tmp_path, "--env.no-from-pixels")
    cfg, _ = parse_args(argv)
    run_dir = Path(summary["run_dir"])
    assert summary["env_steps"] == 800 and summary["updates"] > 0
    assert math.isfinite(summary["final_eval_return"])
    assert json.loads((run_dir / "config.json").read_text())["env"]["from_pixels"] is False
    assert (run_dir / "logs" / "scalars" / "eval" / "return.csv").is_file()
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert meta["env_steps"] == 800 and meta["config"]["env"]["from_pixels"] is False
    obs_dim, action_dim = 5, 1  # cartpole: position (3) + velocity (2)
    dt.make_world_model("observation", (obs_dim,), action_dim, cfg).load_state_dict(state["world_model"])


@pytest.mark.slow
def test_variants_from_the_command_line_train_and_checkpoint(tmp_path):
    """Reward-only world model (no decoder, so no open-loop view) with V_R (no value phase), on pixels."""
    summary, _ = _run(tmp_path, "--world-model.loss.representation", "reward", "--behavior.value-estimate", "reward")
    run_dir = Path(summary["run_dir"])
    assert summary["env_steps"] == 800 and summary["updates"] > 0 and math.isfinite(summary["final_eval_return"])
    logged = {p.stem for p in (run_dir / "logs" / "scalars" / "loss").glob("*.csv")}
    assert {"model_reward", "model_kl", "actor"} <= logged and not logged & {"model_reco", "value"}
    assert not list((run_dir / "videos").glob("open_loop_*"))
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert meta["config"]["world_model"]["loss"]["representation"] == "reward" and "value" not in state["optimizers"]


@pytest.mark.slow
def test_warns_when_free_nats_keep_the_prior_untrained(tmp_path, capsys):
    # 10 training phases with the batch-mean KL below 1000 free nats: the clamp never lets a gradient through.
    _run(tmp_path, "--env.no-from-pixels", "--world-model.loss.free-nats", "1000", "--schedule.train-every", "40",
         "--schedule.updates-per-train", "1", "--schedule.eval-every", "400", "--run.checkpoint-every", "400")
    out = capsys.readouterr().out
    assert out.count("stayed below free_nats (1000.0)") == 1, out


PLANET_TINY = ["--preset", "planet_state", "--env.episode-frames", "200", "--schedule.total-env-steps", "800",
               "--schedule.prefill-env-steps", "400", "--schedule.train-every", "200", "--schedule.updates-per-train",
               "2", "--schedule.batch-size", "4", "--schedule.seq-len", "10", "--schedule.eval-every", "400",
               "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "2000", "--world-model.latent.state-dim", "4",
               "--world-model.rssm.belief-dim", "8", "--world-model.rssm.hidden", "8", "--model.mlp-hidden", "16",
               "--behavior.planner.horizon", "4", "--behavior.planner.candidates", "32", "--behavior.planner.top-k", "4",
               "--behavior.planner.iterations", "2"]


@pytest.mark.slow
def test_planet_preset_trains_the_world_model_and_evaluates_by_planning(tmp_path):
    summary, argv = _run(tmp_path, *PLANET_TINY)  # the later --preset wins over _argv's debug
    run_dir = Path(summary["run_dir"])
    assert summary["env_steps"] == 800 and summary["updates"] == 6 and math.isfinite(summary["final_eval_return"])
    assert [step for step, _ in summary["evaluations"]] == [400, 800]
    written = json.loads((run_dir / "config.json").read_text())
    assert written["preset"] == "planet_state" and written["behavior"]["kind"] == "planner"
    assert written["env"]["action_repeat"] == 8  # PlaNet's cartpole value
    logged = {str(p.relative_to(run_dir / "logs" / "scalars").with_suffix("")) for p in
              (run_dir / "logs" / "scalars").rglob("*.csv")}
    assert {"loss/model_reco", "loss/model_reward", "train/grad_norm_model", "eval/return"} <= logged
    assert not {"loss/actor", "loss/value", "train/grad_norm_actor"} & logged
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert set(state) == {"world_model", "optimizers", "rng"} and set(state["optimizers"]) == {"model"}
    assert list((run_dir / "videos").glob("eval_*"))


@pytest.mark.parametrize("extra, fragment", [
    (["--env.task", "nonexistent_task"], "nonexistent_task"),
    (["--env.task", "cartpole"], "cartpole"),
    (["--schedule.batch-size", "0"], "batch_size"),
])
def test_bad_input_fails_before_any_work(tmp_path, capsys, extra, fragment):
    with pytest.raises((SystemExit, ValueError)) as exc:
        _run(tmp_path, *extra)
    message = str(exc.value) if isinstance(exc.value, ValueError) else capsys.readouterr().err
    assert fragment in message
    if isinstance(exc.value, SystemExit):
        assert exc.value.code != 0
    assert list(tmp_path.iterdir()) == []  # no run directory, no replay files


# docs/reliability.md P6/P10 from the command line: exit code 2, one message naming the field, no traceback, and
# before torch is even imported (about a second; the bound leaves room for a loaded machine).
COMMAND_LINE_ERRORS = {
    "unknown_option": (["--batch_size", "4"], "did you mean --schedule.batch-size"),
    "wrong_type": (["--schedule.batch-size", "four"], "--schedule.batch-size"),
    "impossible_value": (["--schedule.seq-len", "1"], "'schedule.seq_len' must be >= 2"),
    "unknown_task": (["--env.task", "cheetah_fly"], "did you mean cheetah_run"),
    "switch_with_value": (["--run.progress", "false"], "--run.no-progress"),
    "missing_run": (["--resume", "/nonexistent/run"], "'run.resume': /nonexistent/run does not exist"),
    "no_close_task": (["--env.task", "nonexistent_task"], "no task is close"),
}


@pytest.mark.parametrize("argv, fragment", COMMAND_LINE_ERRORS.values(), ids=COMMAND_LINE_ERRORS.keys())
def test_command_line_errors_are_fast_and_plain(tmp_path, argv, fragment):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(RECIPE), "--run.run-dir", str(tmp_path), *argv],
                         capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    err = " ".join(out.stderr.replace("│", " ").split())
    assert out.returncode == 2, out.stderr
    assert fragment in err and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and "--help" in lines[1], out.stderr  # the error, one line on --help, no usage
    assert elapsed < 6, f"{elapsed:.1f} s to refuse {argv}"
    assert list(tmp_path.iterdir()) == []


def test_the_cpu_presets_run_one_thread():
    """Issue 14, item 13: with torch's two spinning OpenMP threads an update was 3.6-4.1x slower beside one busy
    process; one thread has no barriers and slowed 1.0x (benchmarks/RESULTS.md, "Sharing the machine")."""
    from dreamer_trl.config import PRESETS

    assert PRESETS["state"]().run.threads == 1 and PRESETS["planet_state"]().run.threads == 1


V3_TINY = ["--preset", "dreamer_v3_proprio_current", "--env.episode-frames", "200", "--schedule.total-env-steps", "600",
           "--schedule.prefill-env-steps", "400", "--schedule.train-every", "40", "--schedule.train-ratio", "8",
           "--schedule.batch-size", "4", "--schedule.seq-len", "10", "--schedule.eval-every", "600",
           "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "2000", "--nets.size", "custom",
           "--world-model.latent.state-dim", "4", "--world-model.latent.classes", "4", "--world-model.rssm.belief-dim", "16", "--world-model.rssm.hidden", "8",
           "--model.mlp-hidden", "16", "--world-model.rssm.blocks", "2", "--nets.twohot-bins", "21", "--behavior.horizon", "4"]


def test_dreamer_v3_preset_trains_from_the_recipe_at_its_replay_ratio(tmp_path):
    summary, _ = _run(tmp_path, *V3_TINY)
    run_dir = Path(summary["run_dir"])
    # train_ratio 8 replayed steps per policy step, 4 x 10 per update: 200 policy steps after the prefill -> 40
    assert summary["env_steps"] == 600 and summary["updates"] == 40 and math.isfinite(summary["final_eval_return"])
    logged = {str(p.relative_to(run_dir / "logs" / "scalars").with_suffix("")) for p in
              (run_dir / "logs" / "scalars").rglob("*.csv")}
    assert {"loss/model_dyn", "loss/model_rep", "loss/model_continue", "loss/actor", "loss/value",
            "loss/replay_value", "train/replay_ratio", "train/grad_norm_agent"} <= logged
    assert _read_csv(run_dir / "logs" / "scalars" / "train" / "replay_ratio.csv")[-1][1] == 8.0
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert meta["preset"] == "dreamer_v3_proprio_current" and set(state["optimizers"]) >= {"agent", "hooks"}


def test_dreamer_v3_2023_preset_trains_from_the_recipe_per_policy_step(tmp_path):
    """dreamer_v3_proprio (the 2023 code behind the score files): three Adam phases; train_ratio counts policy
    steps, so at action repeat 2 the 200 env steps after the prefill earn 100 * 8 / (4 * 10) = 20 updates."""
    tiny = [a for a in V3_TINY if a not in ("dreamer_v3_proprio_current", "--world-model.rssm.blocks", "2")]
    tiny[tiny.index("--preset") + 1:tiny.index("--preset") + 1] = ["dreamer_v3_proprio"]
    summary, _ = _run(tmp_path, *tiny, "--world-model.vector-layers", "1", "--world-model.vector-units", "16")
    assert summary["env_steps"] == 600 and summary["updates"] == 20 and math.isfinite(summary["final_eval_return"])
    state, meta = dt.load_checkpoint(summary["checkpoint"])
    assert meta["config"]["nets"]["style"] == "v3_2023" and meta["config"]["env"]["action_repeat"] == 2
    assert {"model", "actor", "value"} <= set(state["optimizers"])
    assert meta["config"]["schedule"]["replay_windows"] == "stream"  # windows along the env's stream
    rows = TensorDict.load_memmap(Path(summary["checkpoint"]) / "replay" / "rows", allow_pickle=False)
    assert torch.equal(rows.get(keys.STREAM_IDS), torch.zeros(rows.shape[0], dtype=torch.long))  # one env


def test_dreamer_v3_run_resumes_bit_exactly(tmp_path):
    """The V3 update's hooks (slow critic, return statistics) and LaProp's state travel in the checkpoint."""
    whole, _ = _run(tmp_path / "whole", *V3_TINY, "--run.checkpoint-every", "200")
    _run(tmp_path / "cut", *V3_TINY, "--run.checkpoint-every", "200", "--run.stop-at-env-steps", "400")
    resumed = _load_recipe().main(["--resume", str(tmp_path / "cut" / "run"), "--run.no-progress"])
    assert resumed["updates"] == whole["updates"] and resumed["evaluations"] == whole["evaluations"]
    a, _ = dt.load_checkpoint(whole["checkpoint"])
    b, _ = dt.load_checkpoint(resumed["checkpoint"])
    for part in ("world_model", "actor", "value"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    slow_a, slow_b = a["optimizers"]["hooks"]["0"]["target"], b["optimizers"]["hooks"]["0"]["target"]
    assert all(torch.equal(slow_a[k], slow_b[k]) for k in slow_a)


def test_dreamer_v3_2023_stream_windows_resume_bit_exactly(tmp_path):
    """dreamer_v3_proprio replays windows along the env's stream (across episode ends and checkpoint segments,
    each of which starts a fresh episode): a run stopped at a checkpoint and resumed equals the uninterrupted one."""
    tiny = [a for a in V3_TINY if a not in ("dreamer_v3_proprio_current", "--world-model.rssm.blocks", "2")]
    tiny[tiny.index("--preset") + 1:tiny.index("--preset") + 1] = ["dreamer_v3_proprio"]
    tiny += ["--world-model.vector-layers", "1", "--world-model.vector-units", "16", "--run.checkpoint-every", "200",
             "--env.episode-frames", "60"]  # 30-step episodes: windows of 10 rows often cross an episode end
    whole, _ = _run(tmp_path / "whole", *tiny)
    _run(tmp_path / "cut", *tiny, "--run.stop-at-env-steps", "400")
    resumed = _load_recipe().main(["--resume", str(tmp_path / "cut" / "run"), "--run.no-progress"])
    assert resumed["updates"] == whole["updates"] == 20 and resumed["evaluations"] == whole["evaluations"]
    a, meta = dt.load_checkpoint(whole["checkpoint"])
    b, _ = dt.load_checkpoint(resumed["checkpoint"])
    assert meta["config"]["schedule"]["replay_windows"] == "stream"
    for part in ("world_model", "actor", "value"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


V2_TINY = ["--preset", "dreamer_v2", "--env.task", "cartpole_balance", "--env.no-from-pixels", "--env.episode-frames",
           "200", "--schedule.total-env-steps", "600", "--schedule.prefill-env-steps", "400", "--schedule.train-every",
           "40", "--schedule.train-ratio", "8", "--schedule.batch-size", "4", "--schedule.seq-len", "10",
           "--schedule.eval-every", "600", "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "2000",
           "--world-model.latent.state-dim", "4", "--world-model.latent.classes", "4", "--world-model.rssm.belief-dim", "16", "--world-model.rssm.hidden", "8",
           "--model.mlp-hidden", "16", "--behavior.horizon", "4", "--run.checkpoint-every", "200"]


@pytest.mark.slow
def test_dreamer_v2_pretraining_updates_count_once(tmp_path):
    """The dreamer_v2 preset's 101 updates after the prefill (danijar/dreamerv2 07d906e train.py: one creating the
    variables, then pretrain 100), on top of the 100 policy steps x 8 / (4 x 10) = 20 regular updates and left out
    of the logged replay ratio (their resume: tests/test_trainer.py)."""
    whole, _ = _run(tmp_path / "whole", *V2_TINY)
    assert whole["env_steps"] == 600 and whole["updates"] == 20 + 101
    run_dir = Path(whole["run_dir"])
    assert _read_csv(run_dir / "logs" / "scalars" / "train" / "replay_ratio.csv")[-1][1] == 8.0


def test_the_printed_plot_command_runs_as_shown_without_an_active_venv(tmp_path):
    """The run's closing lines name the interpreter that ran it, so the plot command works without `source`."""
    import shlex

    out = subprocess.run([sys.executable, str(RECIPE), "--preset", "debug", "--env.no-from-pixels", "--run.no-progress",
                          "--run.run-dir", str(tmp_path), "--run.run-name", "r", "--schedule.total-env-steps", "600",
                          "--run.no-tensorboard"], capture_output=True, text=True, timeout=300, cwd=RECIPE.parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if "plots:" in l).split("plots:", 1)[1].strip()
    plot = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=300, cwd=RECIPE.parents[1],
                          env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")})
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert (tmp_path / "r" / "plots").is_dir()
