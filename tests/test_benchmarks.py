"""Fast smoke runs of every script in benchmarks/ (tiny sizes, a couple of iterations), so they cannot rot."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import csv  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
TINY_LEARN = ["--schedule.prefill-env-steps", "200", "--schedule.train-every", "200", "--schedule.updates-per-train",
              "1", "--schedule.batch-size", "2", "--schedule.seq-len", "8", "--schedule.eval-every", "200",
              "--env.episode-frames", "200", "--world-model.latent.state-dim", "4", "--world-model.rssm.belief-dim", "8", "--world-model.rssm.hidden",
              "8", "--world-model.units", "16", "--world-model.vector-units", "16", "--behavior.actor.units", "16",
              "--behavior.critic.units", "16", "--behavior.horizon", "3", "--schedule.buffer-capacity", "1000",
              "--run.threads", "1"]
PLANNER_LEARN = [a for i, a in enumerate(TINY_LEARN)  # the planner reads no imagination horizon, actor or critic
                 if not {a, TINY_LEARN[i - 1]} & {"--behavior.horizon", "--behavior.actor.units", "--behavior.critic.units"}]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _script(name):
    return importlib.import_module(name)


def test_bench_update_both_impls_side_by_side(capsys):
    results = _script("bench_update").main(["--preset", "debug", "--batch", "2", "--seq", "8", "--updates", "2",
                                            "--warmup", "1", "--split_updates", "1", "--threads", "1", "--markdown"])
    ours, trl = results["ours"], results["torchrl"]
    assert ours["params"] == trl["params"]  # same sizes on both sides
    assert set(ours["phase_ms"]) >= {"world_model", "actor", "value"} and set(trl["phase_ms"]) == {
        "world_model", "actor", "value"}
    assert ours["median_ms"] > 0 and trl["median_ms"] > 0 and ours["peak_rss_mb"] > 0
    out = capsys.readouterr().out
    assert "ratio torchrl/ours" in out and out.strip().splitlines()[-1].startswith("| debug pixels 2x8 |")


@pytest.mark.parametrize("impl", ["ours", "torchrl"])
def test_bench_update_vector_observations(impl):
    r = _script("bench_update").main(["--impl", impl, "--preset", "debug", "--obs", "observation", "--action_dim", "1",
                                      "--batch", "2", "--seq", "8", "--updates", "1", "--warmup", "1",
                                      "--split_updates", "1", "--threads", "1"])[impl]
    assert r["median_ms"] > 0 and r["params"]["world_model"] > 0


def test_profile_update_table_and_variant(capsys):
    out = _script("profile_update").main(["--preset", "debug", "--batch", "2", "--seq", "8", "--updates", "1",
                                          "--warmup", "1", "--threads", "1", "--variants", "subpixel_last"])
    table = out["profile"]
    parts = sum(v for k, v in table.items() if k != "total")
    assert table["encoder fwd"] > 0 and table["decoder bwd"] > 0 and table["encoder bwd"] > 0
    assert 0.8 * table["total"] < parts < 1.2 * table["total"]
    assert out["variants"]["subpixel_last"] > 0
    assert "| RSSM observe loop fwd |" in capsys.readouterr().out


def test_subpixel_deconv_equals_the_transposed_conv():
    profile_update = _script("profile_update")
    conv = torch.nn.ConvTranspose2d(8, 3, 6, 2)
    x = torch.randn(3, 8, 7, 7)
    torch.testing.assert_close(profile_update.SubpixelDeconv(conv)(x), conv(x), rtol=1e-5, atol=1e-5)


def test_bench_env_both_impls():
    results = _script("bench_env").main(["--task", "cartpole_swingup", "--steps", "3", "--repeats", "1",
                                         "--workers", "1"])
    assert [r["impl"] for r in results] == ["ours", "torchrl"]
    assert all(r["frames_per_s_per_env"] > 0 for r in results)
    assert all(r["pixels"].startswith("(3, 64, 64)") for r in results)


@pytest.mark.parametrize("impl", ["ours", "torchrl"])
def test_bench_replay_bytes_per_frame(impl, capsys):
    r = _script("bench_replay").main(["--frames", "500", "--chunk", "100", "--impl", impl])[impl]
    assert r["frames"] == 500
    # Ours: one uint8 frame per row plus small fields; TorchRL's layout: float32 pixels and next pixels.
    expected = 3 * 64 * 64 if impl == "ours" else 2 * 4 * 3 * 64 * 64
    assert expected <= r["bytes_per_frame"] < expected * 1.05


@pytest.mark.parametrize("impl", ["torchrl"])  # ours: test_learn_dmc_resumes_a_stopped_run_and_writes_the_whole_curve
def test_learn_dmc_smallest_budget(impl, tmp_path):
    out = tmp_path / impl
    summary = _script("learn_dmc").main(["--impl", impl, "--task", "cartpole_swingup", "--env_steps", "400",
                                         "--seed", "0", "--out", str(out), *TINY_LEARN])
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert all(abs(float(r["eval_return"])) < 1e4 for r in rows)
    assert summary["evaluations"][-1][0] == 400


def test_learn_dmc_resumes_a_stopped_run_and_writes_the_whole_curve(tmp_path):
    out, learn = tmp_path / "ours", _script("learn_dmc")
    args = ["--impl", "ours", "--task", "cartpole_swingup", "--env_steps", "400", "--seed", "0", "--out", str(out),
            *TINY_LEARN, "--run.checkpoint-every", "200"]
    learn.main([*args, "--run.stop-at-env-steps", "200"])
    summary = learn.main([*args, "--resume"])
    assert [s for s, _ in summary["evaluations"]] == [200, 400]
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert all(abs(float(r["eval_return"])) < 1e4 for r in rows)


def test_learn_dmc_plot(tmp_path):
    pytest.importorskip("matplotlib")
    learn_dmc = _script("learn_dmc")
    for name, ret in (("a", 1.0), ("b", 2.0)):
        learn_dmc.write_curve(tmp_path / name, [(200, ret), (400, ret + 1)],
                              {"impl": name, "task": "cartpole_swingup", "seed": 0})
    png = tmp_path / "curves.png"
    learn_dmc.main(["--plot", str(tmp_path / "a"), str(tmp_path / "b"), "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learn_dmc_labels_runs_by_their_variant_flags():
    learn_dmc = _script("learn_dmc")
    argv = ["--preset", "state", "--env.task", "cartpole_balance", "--run.seed", "1", "--run.threads", "1",
            "--behavior.value-estimate", "nstep", "--behavior.value-steps", "5", "--behavior.exploration.act-with-mode",
            "--schedule.eval-episodes", "10"]
    assert learn_dmc.variant_flags(argv) == ["behavior.value-estimate=nstep", "behavior.value-steps=5", "behavior.exploration.act-with-mode"]
    assert learn_dmc.variant_flags(["--preset", "state", "--run.threads", "1"]) == []
    assert learn_dmc.variant_flags(["--preset", "state", "--env.task", "cartpole_balance", "--env.action-repeat", "8",
                                    "--env.no-from-pixels"]) == ["env.action-repeat=8"]


def test_shared_machine_times_updates_alone_and_beside_a_busy_process(capsys):
    results = _script("shared_machine").main(["--settings", "one_thread_passive", "--preset", "debug", "--batch", "2",
                                              "--seq", "4", "--updates", "1", "--warmup", "1"])
    [r] = results
    assert r["setting"] == "one_thread_passive" and r["threads"] == 1 and r["wait_policy"] == "PASSIVE"
    assert r["alone_s"] > 0 and r["beside_s"] > 0
    assert "| one_thread_passive | 1 | PASSIVE |" in capsys.readouterr().out


def test_learn_dmc_runs_the_planet_preset(tmp_path):
    out = tmp_path / "planet"
    summary = _script("learn_dmc").main(["--impl", "ours", "--preset", "planet_state", "--task", "cartpole_balance",
                                         "--env_steps", "400", "--seed", "0", "--out", str(out), *PLANNER_LEARN,
                                         "--behavior.planner.horizon", "3", "--behavior.planner.candidates", "16",
                                         "--behavior.planner.top-k", "4", "--behavior.planner.iterations", "2"])
    assert [step for step, _ in summary["evaluations"]] == [200, 400]
    assert all(abs(ret) < 1e4 for _, ret in summary["evaluations"])
    assert _script("learn_dmc").variant_flags(summary["config_argv"])[:1] == ["planet_state"]


def test_plan_speed_splits_the_step_into_its_parts(capsys):
    results = _script("plan_speed").main(["--envs", "1", "2", "--steps", "2", "--warmup", "1", "--threads", "1",
                                          "--behavior.planner.candidates", "20", "--behavior.planner.top-k", "4",
                                          "--behavior.planner.iterations", "2", "--behavior.planner.horizon", "3"])
    assert [r["envs"] for r in results] == [1, 2]
    for r in results:
        parts = r["rollout_ms"] + r["score_ms"] + r["refit_ms"]
        assert r["rollout_ms"] > 0 and r["score_ms"] > 0 and r["refit_ms"] > 0 and parts <= 1.5 * r["median_ms"]
    assert "| 2 |" in capsys.readouterr().out


@pytest.mark.parametrize("obs", ["state", "pixels"])
def test_torchrl_v3_update_runs_one_full_update(obs):
    torch.manual_seed(0)
    step, params, make_batch = _script("torchrl_dreamer_v3").torchrl_v3_update("debug", obs, batch=2, seq=4)
    batch = make_batch()
    assert batch.batch_size == torch.Size([2, 4]) and batch["is_init"].shape == (2, 4, 1)
    metrics = step(batch)
    losses = {k: v for k, v in metrics.items() if k.startswith("loss_")}
    assert {"loss_model_reco", "loss_model_dynamic", "loss_model_representation", "loss_model_continue",
            "loss_actor", "loss_value", "loss_replay_value"} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert batch["replay_context", "belief"].shape == (2, 4, 64)  # posterior written back, as the recipe reads it
    assert params["total"] == params["world_model"] + params["actor"] + params["value"] > 0


def test_torchrl_v3_size1m_matches_torchrl_walker_parameter_count():
    # TorchRL's dreamer_v3 README: its walker preset (24 observation dims in 3 keys, 6 actions) has 640,867.
    trl = _script("torchrl_dreamer_v3").make_torchrl_dreamer_v3("observation", 24, 6, "size1m", event_dims=(1, 14, 9))
    assert trl.params["total"] == 640_867


def test_torchrl_v3_bench_cli_prints_json(capsys):
    r = _script("torchrl_dreamer_v3").main(["--size", "debug", "--obs", "state", "--steps", "1", "--warmup", "0",
                                            "--batch", "2", "--seq", "4", "--threads", "1"])
    assert r["median_ms"] > 0 and r["peak_rss_mb"] > 0 and r["params"]["total"] > 0
    assert '"impl": "torchrl_v3"' in capsys.readouterr().out


def test_learn_dmc_torchrl_v3_smallest_budget_resumes_with_its_replay(tmp_path):
    out = tmp_path / "torchrl_v3"
    argv = ["--impl", "torchrl_v3", "--torchrl_v3_size", "debug", "--train_ratio", "8", "--task", "cartpole_balance",
            "--seed", "0", "--out", str(out), *TINY_LEARN, "--schedule.eval-episodes", "1",
            "--schedule.prefill-env-steps", "100", "--schedule.train-every", "100"]
    first = _script("learn_dmc").main([*argv, "--env_steps", "200"])
    assert first["evaluations"][0][0] == 200
    # the replay context is written back in place: the buffer holds the 100 policy steps stored, no more
    sys.path.insert(0, str(BENCH))
    from torchrl_dreamer import make_replay_buffer

    saved = make_replay_buffer(1000, 2, 9, scratch_dir=str(tmp_path / "scratch"))
    saved.loads(out / "resume" / "replay")
    assert len(saved) == 100 and saved.storage.get(torch.arange(100))["belief"].abs().sum() > 0
    summary = _script("learn_dmc").main([*argv, "--env_steps", "400", "--resume"])
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert float(rows[0]["eval_return"]) == first["evaluations"][0][1]  # the first point came back whole
    assert all(abs(float(r["eval_return"])) < 1e4 for r in rows)
    assert summary["impl"] == "torchrl_v3" and summary["size"] == "debug" and summary["wall_clock_s"] > 0


def test_bench_scale_collects_with_env_workers_and_learns_on_two_ranks():
    rows = _script("bench_scale").main(["collect", "--workers", "2", "--state", "--task", "cartpole_balance",
                                        "--steps", "10", "--repeats", "1"])
    assert rows[0]["workers"] == 2 and rows[0]["frames_s"] > 0
    rows = _script("bench_scale").main(["learn", "--ranks", "2", "--preset", "debug", "--updates", "1", "--warmup",
                                        "1", "--check_every", "1"])
    assert rows[0]["ranks"] == 2 and rows[0]["updates_s"] > 0


def test_bench_atari_env_both_impls():
    pytest.importorskip("ale_py")
    results = _script("bench_atari_env").main(["--game", "pong", "--steps", "3", "--repeats", "1"])
    assert [r["impl"] for r in results] == ["ours", "torchrl"]
    assert all(r["frames_per_s"] > 0 for r in results)
    assert results[0]["pixels"].startswith("(3, 64, 64) uint8") and results[1]["pixels"].startswith("(3, 64, 64)")


def test_bench_v3_update_times_the_current_preset_with_its_replay_context():
    result = _script("bench_v3_update").main(["--impl", "ours", "--size", "size1m", "--batch", "2", "--seq", "8",
                                              "--threads", "1", "--steps", "1", "--warmup", "0"])
    assert result["impl"] == "ours" and result["params"] > 0
