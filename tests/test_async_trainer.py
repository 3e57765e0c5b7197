"""Asynchronous collection: the replay ratio is exact over a few thousand env steps with the collector in its own
process, and every segment's env gets its own seed."""
import importlib.util
from pathlib import Path

import pytest
import torch

from dreamer_trl.training.collection import segment_seed

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "dreamer_dmc.py"


def test_each_segment_and_run_seed_gets_its_own_env_seed():
    seeds = {segment_seed(seed, steps) for seed in range(3) for steps in range(0, 10_000, 1000)}
    assert len(seeds) == 30 and all(0 <= s < 2**31 for s in seeds)
    assert segment_seed(0, 1000) == segment_seed(0, 1000)


@pytest.mark.slow
def test_the_replay_ratio_is_exact_with_the_async_collector(tmp_path):
    spec = importlib.util.spec_from_file_location("dreamer_dmc", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        summary = module.main([
            "--preset", "debug", "--env.no-from-pixels", "--run.run-dir", str(tmp_path), "--run.run-name", "run",
            "--run.no-progress", "--run.threads", "1", "--run.device", "cpu", "--run.async-collection",
            "--schedule.train-every", "120", "--schedule.prefill-env-steps", "240", "--schedule.total-env-steps",
            "2400", "--schedule.eval-every", "2400", "--run.checkpoint-every", "1200", "--schedule.train-ratio", "8"])
    finally:
        torch.set_num_threads(threads)
    # (2400 - 240) env steps / action repeat 2 = 1080 policy steps; 1080 * 8 / (4 x 10 replayed) = 216 updates
    assert (summary["env_steps"], summary["updates"]) == (2400, 216)
    ratios = [float(row.split(",")[-1]) for row in
              (tmp_path / "run" / "logs" / "scalars" / "train" / "replay_ratio.csv").read_text().split()]
    assert len(ratios) == 18 and max(ratios) <= 8.0 and ratios[-1] == 8.0  # never ahead of the data, exact at the end
