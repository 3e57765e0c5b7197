"""N envs per learner: the env facts come back from the workers, the Collector cannot close them between
segments, and the replay ratio stays exact whatever N (the recipe end to end, state observations)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torchrl.collectors import Collector

import dreamer_trl as dt
from dreamer_trl.builders.agent import make_envs
from dreamer_trl.config import make_preset
from dreamer_trl.data.vector_env import ParallelDMC, SerialDMC

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dreamer_dmc.py"


def small_env_cfg():
    cfg = make_preset("debug")
    cfg.env.from_pixels = False
    return cfg


@pytest.mark.parametrize("parallel", [False, True])
def test_env_facts_come_back_from_each_env_and_survive_the_collector(parallel):
    cfg = small_env_cfg()
    env = make_envs(cfg, 0, 2, parallel=parallel)
    try:
        assert isinstance(env, ParallelDMC if parallel else SerialDMC) and tuple(env.batch_size) == (2,)
        collector = Collector(env, None, frames_per_batch=20, total_frames=40)
        for data in collector:
            assert tuple(data.batch_size) == (2, 10)
        collector.shutdown(close_env=False)
        assert not env.is_closed  # the Collector's close at the end of its frames is ignored
        states = env.task_random_state()
        assert len(states) == 2 and states[0] != states[1]  # seeds seed and seed + 1000
        assert env.physics_errors == 0
        env.reset()  # draws initial states: the task streams move on
        assert env.task_random_state() != states
        env.set_task_random_state(states)
        assert env.task_random_state() == states
        with pytest.raises(ValueError, match="env.num_envs"):
            env.set_task_random_state(states[:1])
    finally:
        env.shutdown()
    assert env.is_closed


def test_one_env_is_the_plain_env_and_bad_counts_are_refused():
    cfg = small_env_cfg()
    env = make_envs(cfg, 0, 1)
    assert not isinstance(env, (ParallelDMC, SerialDMC)) and env.batch_size == torch.Size([])
    with pytest.raises(ValueError, match="env.num_envs"):
        make_envs(cfg, 0, 0)
    with pytest.raises(SystemExit):
        dt.config.parse_args(["--preset", "debug", "--env.num-envs", "3"])  # 200 env steps / repeat 2 = 100


def _main(argv):
    spec = importlib.util.spec_from_file_location("dreamer_dmc", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        return module.main(argv)
    finally:
        torch.set_num_threads(threads)


def _argv(run_dir, name, *extra):
    return ["--preset", "debug", "--env.no-from-pixels", "--run.run-dir", str(run_dir), "--run.run-name", name,
            "--run.no-progress", "--run.threads", "1", "--run.device", "cpu", "--schedule.train-every", "120",
            "--schedule.prefill-env-steps", "240", "--schedule.total-env-steps", "720",
            "--schedule.eval-every", "720", "--run.checkpoint-every", "360", "--schedule.train-ratio", "8", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("num_envs, parallel", [(1, True), (2, True), (3, False)])
def test_the_replay_ratio_is_exact_whatever_the_number_of_envs(tmp_path, num_envs, parallel):
    extra = ["--env.num-envs", str(num_envs)] + ([] if parallel else ["--env.no-parallel-envs"])
    summary = _main(_argv(tmp_path, "run", *extra))
    # (720 - 240 prefill) env steps / action repeat 2 = 240 policy steps; 240 * 8 / (4 x 10 replayed) = 48 updates
    assert (summary["env_steps"], summary["updates"]) == (720, 48)
    rows = (tmp_path / "run" / "logs" / "scalars" / "train" / "replay_ratio.csv").read_text().split()
    assert float(rows[-1].split(",")[-1]) == 8.0
    _, meta = dt.load_checkpoint(summary["checkpoint"])
    train_rng = meta["env_rng"]["train"]
    assert (len(train_rng) == num_envs) if num_envs > 1 else isinstance(train_rng[0], str)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["env"]["num_envs"] == num_envs


@pytest.mark.slow
def test_a_resumed_run_with_two_envs_reproduces_the_uninterrupted_one(tmp_path):
    extra = ["--env.num-envs", "2", "--env.no-parallel-envs"]
    whole = _main(_argv(tmp_path, "whole", *extra))
    _main(_argv(tmp_path, "split", *extra, "--run.stop-at-env-steps", "360"))
    resumed = _main(["--resume", str(tmp_path / "split"), "--run.no-progress", "--run.threads", "1"])
    (sa, ma), (sb, mb) = dt.load_checkpoint(whole["checkpoint"]), dt.load_checkpoint(resumed["checkpoint"])
    for name in ("world_model", "actor", "value"):
        for key, value in sa[name].items():
            assert torch.equal(value, sb[name][key]), (name, key)
    assert ma["counters"] == mb["counters"] and ma["env_rng"] == mb["env_rng"] and ma["rng"] == mb["rng"]
