"""Update time alone vs beside one CPU-bound process, per thread setting and OpenMP wait policy.

    python benchmarks/shared_machine.py                       # state preset sizes, every setting
    python benchmarks/shared_machine.py --settings default passive --updates 20

Why: on a 2-core machine the state preset's update took about 0.35 s alone and 1.7 to 2.7 s while one
single-threaded CPU-bound process ran beside it (issue 14). torch's CPU wheels run intra-op parallel
regions on OpenMP (libgomp) with one thread per core, and libgomp's default wait policy spins up to
GOMP_SPINCOUNT (300,000) iterations at each barrier before sleeping. Beside another busy process, one of
the two threads waits for a time slice while the other spins on its core, so every parallel region costs
scheduler latency (milliseconds) instead of microseconds, and an update runs thousands of regions.
``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once; ``--run.threads 1``
has no barriers at all.

Each setting runs in its own subprocess (the wait policy is read when libgomp loads, before torch is
imported): ``--warmup`` updates, then ``--updates`` timed alone, then the same beside a busy process
(a Python loop on one core). Printed: median seconds per update alone and beside, and their ratio. With
one other job on a 2-core machine a robust setting slows about in proportion to the lost share of the CPUs,
not tenfold. Take figures on an otherwise quiet machine.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (environment for the worker, torch threads; 0: torch's default)
SETTINGS = {
    "default": ({"OMP_WAIT_POLICY": ""}, 0),          # torch's defaults: a thread per core, libgomp spins
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "one_thread": ({"OMP_WAIT_POLICY": ""}, 1),
    "one_thread_passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
    "short_spin": ({"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"}, 0),  # spin briefly, then sleep
}


def busy() -> None:
    """One CPU-bound process: a pure Python loop, single-threaded, until terminated."""
    x = 0
    while True:
        x = (x + 1) % 1_000_003


def time_updates(args) -> dict:
    """Worker: median seconds per update alone, then beside ``args.competitors`` busy processes."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_update import make_ours, synthetic_batch

    from dreamer_trl.config import PRESETS

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]()
    torch.manual_seed(0)
    upd, _ = make_ours(argparse.Namespace(obs="observation", obs_dim=args.obs_dim, action_dim=args.action_dim,
                                          device="cpu"), cfg)
    batch = synthetic_batch(args.batch, args.seq, args.action_dim, "observation", args.obs_dim, "cpu")

    def median_update_s(n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            upd.update(batch)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    median_update_s(args.warmup)
    alone = median_update_s(args.updates)
    others = [multiprocessing.get_context("spawn").Process(target=busy, daemon=True) for _ in range(args.competitors)]
    for p in others:
        p.start()
    try:
        time.sleep(0.2)  # let them reach their loops
        beside = median_update_s(args.updates)
    finally:
        for p in others:
            p.terminate()
            p.join()
    return {"threads": torch.get_num_threads(), "wait_policy": os.environ.get("OMP_WAIT_POLICY") or "(unset)",
            "alone_s": alone, "beside_s": beside, "slowdown": beside / alone}


def run_setting(name: str, argv: list[str]) -> dict:
    env_changes, threads = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in env_changes and k != "OMP_NUM_THREADS"}
    env.update({k: v for k, v in env_changes.items() if v})  # an empty value: unset
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return {"setting": name, **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--preset", default="state", help="model and loss sizes from this preset")
    p.add_argument("--batch", type=int, default=8, help="sequences per batch (state preset: 8)")
    p.add_argument("--seq", type=int, default=32, help="sequence length (state preset: 32)")
    p.add_argument("--obs_dim", type=int, default=5, help="vector observation size (cartpole: 5)")
    p.add_argument("--action_dim", type=int, default=1)
    p.add_argument("--updates", type=int, default=10, help="timed updates in each condition (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--competitors", type=int, default=1, help="CPU-bound processes beside the updates")
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(time_updates(args)))
        return []
    forwarded = ["--preset", args.preset, "--batch", str(args.batch), "--seq", str(args.seq), "--obs_dim",
                 str(args.obs_dim), "--action_dim", str(args.action_dim), "--updates", str(args.updates),
                 "--warmup", str(args.warmup), "--competitors", str(args.competitors)]
    results = [run_setting(name, forwarded) for name in args.settings]
    print(f"{args.preset} sizes, batch {args.batch}x{args.seq}, {args.competitors} CPU-bound process(es) beside, "
          f"{os.cpu_count()} CPUs")
    print("| setting | threads | OMP_WAIT_POLICY | alone s/update | beside s/update | slowdown |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['threads']} | {r['wait_policy']} | {r['alone_s']:.3f} | {r['beside_s']:.3f} "
              f"| {r['slowdown']:.1f}x |")
    return results


if __name__ == "__main__":
    main()
