"""Milliseconds per planned agent step: PlaNet's CEM planner, split into rollout, reward scoring and refit.

    python benchmarks/plan_speed.py --preset planet_state --envs 1 8 --threads 2   # state model (16/128/128)
    python benchmarks/plan_speed.py --preset planet --envs 1 8 --threads 2         # PlaNet's RSSM (30/200/200)

One agent step is one call of the planner (:class:`dreamer_trl.behavior.planner.LatentCEMPlanner`) on N filtered
latents: ``iterations`` x (sample candidates and roll the prior ``plan_horizon`` steps on N x candidates
rows; score them with the reward head; refit to the top k). The sizes are the preset's (PlaNet: horizon
12, 1000 candidates, top 100, 10 iterations); any config field can be overridden after the script's own
flags (``--behavior.planner.candidates 500``). Only the RSSM and the reward head take part in planning, so the
model is built for vector observations whatever the preset (the encoder never runs here).

Reports, per number of environments: the median wall-clock ms per agent step, the mean ms of each part
(rollout includes drawing the candidates and the prior noise), and the ratio of N envs to 1 env (the
candidates of all envs are batched, so 8 envs should cost well under 8x one env). Random latents stand in
for filtered ones: the cost does not depend on their values.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import dreamer_trl as dt  # noqa: E402
from dreamer_trl.behavior.planner import make_planner  # noqa: E402
from dreamer_trl.config import parse_args  # noqa: E402

PARTS = ("rollout", "score", "refit")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def measure(planner, n_envs: int, steps: int, warmup: int, seed: int = 0) -> dict:
    """Plan ``steps`` agent steps for ``n_envs`` envs after ``warmup`` untimed ones; ms per agent step."""
    rssm = planner.rssm
    g = torch.Generator().manual_seed(seed)
    state, belief = torch.randn(n_envs, rssm.state_dim, generator=g), torch.randn(n_envs, rssm.belief_dim, generator=g)
    for _ in range(warmup):
        planner.plan(state, belief)
    planner.timings, totals = {}, []
    for _ in range(steps):
        start = time.perf_counter()
        planner.plan(state, belief)
        totals.append(time.perf_counter() - start)
    parts = {k: 1000 * planner.timings.get(k, 0.0) / steps for k in PARTS}
    planner.timings = None
    return {"envs": n_envs, "median_ms": 1000 * statistics.median(totals), **{f"{k}_ms": v for k, v in parts.items()}}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--preset", default="planet_state", help="sizes of the model and the planner")
    p.add_argument("--envs", type=int, nargs="+", default=[1, 8], help="numbers of environments planned at once")
    p.add_argument("--steps", type=int, default=20, help="timed agent steps per setting")
    p.add_argument("--warmup", type=int, default=2, help="untimed agent steps first")
    p.add_argument("--action_dim", type=int, default=1, help="A (cartpole 1, cheetah and walker 6)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args, overrides = p.parse_known_args(argv)
    cfg, _ = parse_args(["--preset", args.preset, *overrides], description=__doc__)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.run.seed)
    b, m = cfg.behavior.planner, cfg.world_model
    world_model = dt.make_world_model("observation", (5,), args.action_dim, cfg)
    planner = make_planner(world_model, horizon=b.horizon, candidates=b.candidates, top_k=b.top_k,
                           iterations=b.iterations).module
    results = [measure(planner, n, args.steps, args.warmup) for n in args.envs]
    one = next((r["median_ms"] for r in results if r["envs"] == 1), None)
    print(f"CEM planner, preset {args.preset}: RSSM {m.latent.state_dim}/{m.rssm.belief_dim}/{m.rssm.hidden}, reward "
          f"head {m.head_layers}x{m.units}, A {args.action_dim}; horizon {b.horizon}, {b.candidates} "
          f"candidates, top {b.top_k}, {b.iterations} iterations; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"commit {commit()}")
    print("| envs | ms / agent step (median) | rollout ms | reward scoring ms | refit ms | vs 1 env |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['median_ms'] / one:.2f}x" if one else "-"
        print(f"| {r['envs']} | {r['median_ms']:.1f} | {r['rollout_ms']:.1f} | {r['score_ms']:.1f} | "
              f"{r['refit_ms']:.1f} | {ratio} |")
    return results


if __name__ == "__main__":
    main()
