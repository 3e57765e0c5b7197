"""Exact resume and preemption of whole runs (docs/reliability.md P1, P3), through the recipe in subprocesses."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from dreamer_trl.run.checkpoint import checkpoint_dirs, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RECIPE = [sys.executable, str(ROOT / "recipes" / "dreamer_dmc.py")]
# State-observation debug preset: fast, real dm_control physics; one thread so CPU math is bit-reproducible.
BASE = ["--preset", "debug", "--env.no-from-pixels", "--run.no-progress", "--run.threads", "1",
        "--run.checkpoint-every", "200", "--run.checkpoints-kept", "10"]
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def recipe(*args, check=True):
    out = subprocess.run(RECIPE + list(args), env=ENV, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"recipe failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def assert_same_checkpoint(a: Path, b: Path):
    sa, ma = load_checkpoint(a)
    sb, mb = load_checkpoint(b)
    fa, fb = flatten(sa), flatten(sb)
    assert fa.keys() == fb.keys()
    for k in fa:
        if torch.is_tensor(fa[k]):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k
    for k in ("counters", "rng", "env_rng", "updater"):
        assert ma[k] == mb[k], k
    ma["config"].pop("run"), mb["config"].pop("run")  # run name, resume path, stop point differ
    assert ma["config"] == mb["config"]
    rows_a = TensorDict.load_memmap(a / "replay" / "rows", allow_pickle=False)
    rows_b = TensorDict.load_memmap(b / "replay" / "rows", allow_pickle=False)
    assert rows_a.shape == rows_b.shape
    for key in rows_a.keys(include_nested=True, leaves_only=True):
        assert torch.equal(rows_a[key], rows_b[key]), key
    assert json.loads((a / "replay" / "buffer.json").read_text()) == json.loads((b / "replay" / "buffer.json").read_text())


@pytest.mark.slow
def test_resume_twice_is_bit_exact(tmp_path):
    recipe(*BASE, "--run.run-dir", str(tmp_path), "--run.run-name", "straight")
    recipe(*BASE, "--run.run-dir", str(tmp_path), "--run.run-name", "resumed", "--run.stop-at-env-steps", "400")
    resumed = tmp_path / "resumed"
    assert [d.name for d in checkpoint_dirs(resumed / "checkpoints")] == ["0000000200", "0000000400"]
    recipe("--resume", str(resumed), "--run.stop-at-env-steps", "600", "--run.no-progress")
    recipe("--resume", str(resumed), "--run.no-progress")
    straight = checkpoint_dirs(tmp_path / "straight" / "checkpoints")
    again = checkpoint_dirs(resumed / "checkpoints")
    assert [d.name for d in straight] == [d.name for d in again] == ["0000000200", "0000000400", "0000000600",
                                                                      "0000000800"]
    for a, b in zip(straight, again):
        assert_same_checkpoint(a, b)
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["env_steps"] == 800 and summary["updates"] == 6


@pytest.mark.slow
def test_planner_run_resumes_bit_exact(tmp_path):
    """PlaNet's planner draws from the global random stream, which the checkpoint saves: resume is exact."""
    planner = [*BASE, "--behavior.kind", "planner", "--behavior.planner.horizon", "3", "--behavior.planner.candidates", "16",
               "--behavior.planner.top-k", "4", "--behavior.planner.iterations", "2", "--run.run-dir", str(tmp_path)]
    recipe(*planner, "--run.run-name", "straight")
    recipe(*planner, "--run.run-name", "resumed", "--run.stop-at-env-steps", "400")
    recipe("--resume", str(tmp_path / "resumed"), "--run.no-progress", "--run.stop-at-env-steps", "0")
    straight = checkpoint_dirs(tmp_path / "straight" / "checkpoints")
    again = checkpoint_dirs(tmp_path / "resumed" / "checkpoints")
    assert [d.name for d in straight] == [d.name for d in again] and len(straight) == 4
    for a, b in zip(straight, again):
        assert_same_checkpoint(a, b)
    assert set(load_checkpoint(straight[-1])[0]) == {"world_model", "optimizers", "rng"}


def test_resume_refuses_a_different_config(tmp_path):
    recipe(*BASE, "--run.run-dir", str(tmp_path), "--run.run-name", "r", "--run.stop-at-env-steps", "400")
    out = recipe("--resume", str(tmp_path / "r"), "--schedule.batch-size", "3", "--schedule.seq-len", "4",
                 check=False)
    assert out.returncode != 0
    assert "batch_size: 4 -> 3" in out.stderr and "seq_len" in out.stderr


def test_resume_of_a_missing_run_is_refused(tmp_path):
    out = recipe("--resume", str(tmp_path / "nothing"), check=False)
    assert out.returncode != 0 and "resume" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_exits_and_resumes_without_gap(tmp_path, sig, code):
    args = [*BASE, "--run.run-dir", str(tmp_path), "--run.run-name", "job", "--schedule.total-env-steps", "2000",
            "--schedule.updates-per-train", "10", "--run.checkpoint-every", "2000"]
    proc = subprocess.Popen(RECIPE + args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    updates_csv = tmp_path / "job" / "logs" / "scalars" / "train" / "updates.csv"
    deadline = time.time() + 120
    while not updates_csv.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-3000:]
    assert "preempted" in stdout
    lines = stdout.splitlines()
    said = lines.index(f"run directory: {tmp_path / 'job'}")  # said at the start, not only at the end
    assert said < next(i for i, line in enumerate(lines) if "preempted" in line)
    assert "at the next safe point" in stderr and "again to quit now" in stderr  # the first signal acknowledged
    [ckpt] = checkpoint_dirs(tmp_path / "job" / "checkpoints")
    _, meta = load_checkpoint(ckpt)
    stopped_at = meta["counters"]
    assert 0 < stopped_at["env_steps"] < 2000
    recipe("--resume", str(tmp_path / "job"), "--run.no-progress")
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    # no gap, no duplicate: the same totals as an uninterrupted run of this schedule
    phases = (2000 - 400) // 200 + 1
    assert summary["env_steps"] == 2000 and summary["updates"] == phases * 10
    steps = [int(line.split(",")[0]) for line in
             (tmp_path / "job" / "logs" / "scalars" / "time" / "env_steps_per_s.csv").read_text().split()]
    assert steps == list(range(200, 2001, 200))


# A checkpoint written by the code of format 1 (commit 4942e40: `--preset debug --env.no-from-pixels
# --run.checkpoint-every 400 --run.threads 1`, the 400-step checkpoint of that run), and the parameter fingerprint
# of the same run's 800-step checkpoint. Resuming it with today's code must continue that run exactly.
FORMAT1 = ROOT / "tests" / "fixtures" / "format1_debug_state"
# A checkpoint of format 2 (commit 189f362, the flat config): a tiny DreamerV3 2023 run from state, written by
# `--preset dreamer_v3_proprio --model.belief-dim 32 --model.rssm-hidden 32 --model.state-dim 4 --model.classes 4
# --model.mlp-hidden 32 --model.vector-units 32 --model.vector-layers 1 --model.mlp-layers 1 --model.head-layers 1
# --env.task cartpole_swingup --env.episode-frames 200 --schedule.total-env-steps 800 --schedule.prefill-env-steps 400
# --schedule.train-every 200 --schedule.train-ratio 0 --schedule.updates-per-train 2 --schedule.batch-size 4
# --schedule.seq-len 10 --schedule.eval-every 400 --schedule.eval-episodes 1 --schedule.buffer-capacity 2000
# --run.checkpoint-every 400 --run.threads 1 --run.no-tensorboard` (the flat flag names of that commit): its
# 400-step checkpoint and the fingerprint of the same run's 800-step one.
FORMAT2 = ROOT / "tests" / "fixtures" / "format2_v3_state"


def fingerprint(state: dict) -> dict:
    return {mod: sorted([[v.numel(), float(v.double().sum()), float(v.double().abs().sum())]
                         for v in state[mod].values() if v.is_floating_point()]) for mod in ("world_model", "actor", "value")}


@pytest.mark.parametrize("fixture", [FORMAT1, FORMAT2], ids=["format1_v1", "format2_v3"])
def test_a_checkpoint_of_an_older_format_resumes_and_continues_its_run(tmp_path, fixture):
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(fixture / "checkpoints" / "0000000400", run / "checkpoints" / "0000000400")
    recipe("--resume", str(run), "--run.no-progress")
    final = max(checkpoint_dirs(run / "checkpoints"))
    assert final.name == "0000000800"
    state, _ = load_checkpoint(final)
    expected = json.loads((fixture / "final_800.json").read_text())["fingerprint"]
    got = fingerprint(state)
    for mod, rows in expected.items():
        assert len(got[mod]) == len(rows), mod
        for g, e in zip(got[mod], rows):
            assert g[0] == e[0] and g[1] == pytest.approx(e[1], rel=1e-6, abs=1e-7) and \
                g[2] == pytest.approx(e[2], rel=1e-6, abs=1e-7), mod


def test_migration_renames_only_v1_world_models_and_refuses_unknown_formats():
    from dreamer_trl.config import DreamerConfig
    from dreamer_trl.run.state import FORMAT, migrate_state

    v1 = {"module.0.module.0.rssm.gru.weight_ih": 1, "module.0.module.0.rssm.img_out.2.bias": 2,
          "module.0.module.0.rssm.obs_out.weight": 3, "module.0.module.0.rssm.img_in.bias": 4}
    v3 = {"module.0.module.0.rssm.core.gru.weight": 1, "module.0.module.0.rssm.img_out.2.weight": 2}
    out = migrate_state({"world_model": v1, "value": v3, "rng": [1]}, 1, DreamerConfig())
    assert out["world_model"] == {"module.transition.module.observe.rssm.core.gru.weight_ih": 1,
                                  "module.transition.module.observe.rssm.img_out.1.bias": 2,
                                  "module.transition.module.observe.rssm.obs_out.2.weight": 3,
                                  "module.transition.module.observe.rssm.core.img_in.bias": 4}
    assert out["rng"] == [1]
    assert migrate_state({"world_model": v1}, FORMAT) == {"world_model": v1}
    with pytest.raises(ValueError, match="format 7"):
        migrate_state({}, 7)
    with pytest.raises(ValueError, match="needs its config"):
        migrate_state({}, 3)


def test_format3_v1_networks_on_another_style_are_refused_by_name():
    from dreamer_trl.config import DreamerConfig, set_field
    from dreamer_trl.run.state import migrate_state

    cfg = DreamerConfig()
    set_field(cfg, "nets.style", "v3")
    with pytest.raises(ValueError, match="nets.style 'v3'"):
        migrate_state({"actor": {}}, 3, cfg)


# The parameter names and shapes of every preset's modules as the code of format 3 built them (commit 632ec1e,
# small widths: the generator's settings are in FORMAT3_WIDTHS), before V1's networks moved onto the shared
# layers and the world model's parts were named.
FORMAT3_NAMES = ROOT / "tests" / "fixtures" / "format3_names.json"
FORMAT3_WIDTHS = {"world_model.latent.state_dim": 4, "world_model.rssm.belief_dim": 16, "world_model.rssm.hidden": 16,
                  "world_model.units": 16, "behavior.actor.units": 16, "behavior.critic.units": 16,
                  "world_model.cnn_depth": 8, "world_model.vector_units": 16}


def _format3_cases():
    return list(json.loads(FORMAT3_NAMES.read_text()))


@pytest.mark.parametrize("case", _format3_cases())
def test_format3_parameter_names_migrate_to_todays_in_order(case):
    """Every preset (state and pixels; V1, V2 and V3 contrastive too): the old names, migrated, are today's names
    with the same shapes in the same order (optimizer states are kept by parameter position)."""
    from dreamer_trl.builders.agent import make_agent
    from dreamer_trl.config import make_preset, set_field
    from dreamer_trl.run.state import migrate_state

    old = json.loads(FORMAT3_NAMES.read_text())[case]["rec"]
    name, obs, *rep = case.split("/")
    px = obs == "pixels"
    cfg = make_preset(name, "cartpole_balance", px)
    for k, v in FORMAT3_WIDTHS.items():
        set_field(cfg, k, v)
    if rep:
        set_field(cfg, "world_model.loss.representation", rep[0])
    set_field(cfg, "world_model.rssm.initial", "zeros")  # format 3 had no learned initial state
    if name == "dreamer_v2" and px:  # the image parts format 3's V2 preset saved (today's preset: conv / deconv)
        set_field(cfg, "world_model.image_encoder", "conv_stride")
        set_field(cfg, "world_model.image_decoder", "deconv_normal")
    if cfg.world_model.latent.kind == "categorical":
        set_field(cfg, "world_model.latent.classes", 4)
    if cfg.world_model.rssm.core == "block_gru":
        set_field(cfg, "world_model.rssm.blocks", 2)
    torch.manual_seed(0)
    agent = make_agent("pixels" if px else "observation", (3, 64, 64) if px else (5,), 1, cfg, "cpu")
    state = {mod: {k: torch.zeros(shape) for k, shape in keys_.items()} for mod, keys_ in old.items()}
    migrated = migrate_state(state, 3, cfg)
    for mod in old:
        today = {k: list(v.shape) for k, v in getattr(agent, mod).state_dict().items()}
        got = {k: list(v.shape) for k, v in migrated[mod].items()}
        assert list(got.items()) == list(today.items()), mod
