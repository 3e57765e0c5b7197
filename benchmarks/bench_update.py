"""Time one full Dreamer update (world model + actor + value, three optimizer steps): dreamer_trl and TorchRL.

    python benchmarks/bench_update.py --obs pixels --batch 16 --seq 50
    python benchmarks/bench_update.py --preset state --obs observation --batch 8 --seq 32 --action_dim 1
    python benchmarks/bench_update.py --device cuda --batch 50 --seq 50 --markdown

``--impl both`` (default) runs each implementation in its own subprocess, so that peak memory (VmHWM of
the process; ``max_memory_allocated`` on CUDA) is per implementation, then prints the ratio torchrl/ours.
TorchRL's Dreamer is built by ``benchmarks/torchrl_dreamer.py`` at the same sizes and hyperparameters.
Synthetic batches in each implementation's replay layout (the cost does not depend on the values):
ours uint8 pixels stored once, TorchRL's float32 pixels and next pixels.

Printed: median ms per update after warm-up, the median split per phase (world model / actor / value,
each its forward, backward and optimizer step), peak memory and parameter counts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dreamer_trl as dt  # noqa: E402
from dreamer_trl.config import PRESETS  # noqa: E402
from dreamer_trl.training.acceleration import autocast_context, compile_networks  # noqa: E402

PHASES = ("world_model", "actor", "value")


def synthetic_batch(B, T, A, obs_key, obs_dim, device):
    """A ``[B, T]`` batch in dreamer_trl's replay layout."""
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8) if obs_key == "pixels"
           else torch.randn(B, T, obs_dim))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    return TensorDict({obs_key: obs, "prev_action": torch.rand(B, T, A) * 2 - 1, "is_init": is_init,
                       ("next", "reward"): torch.rand(B, T, 1)}, [B, T], device=device)


def make_ours(args, cfg):
    obs_shape = (3, 64, 64) if args.obs == "pixels" else (args.obs_dim,)
    agent = dt.make_agent(args.obs, obs_shape, args.action_dim, cfg, args.device)
    wm, actor, value = agent.world_model, agent.actor, agent.value
    precision = getattr(args, "precision", "fp32")
    upd = dt.DreamerUpdate(agent.model_loss, agent.actor_loss, agent.value_loss, cfg.optim,
                           autocast=lambda: autocast_context(precision, args.device))
    if getattr(args, "compile", False):
        compile_networks(wm, actor, value, device=args.device)
    params = {"world_model": wm, "actor": actor, "value": value}
    return upd, params


def ours_timed_update(upd: dt.DreamerUpdate, batch, timings: dict, sync) -> None:
    """``DreamerUpdate.update`` step by step, timing each loss's forward + backward and the optimizer steps.

    Same operations in the same order as the library's update (each backward right after its forward,
    the optimizer steps at the end; ``optim`` is reported separately)."""
    marks = [time.perf_counter()]

    def mark():
        sync()
        marks.append(time.perf_counter())

    upd.losses(batch, backward=True, after_phase=lambda name: mark())
    for name, opt in upd.optimizers.items():
        torch.nn.utils.clip_grad_norm_(upd.groups[name], upd.clip)
        opt.step()
    mark()
    d = [b - a for a, b in zip(marks, marks[1:])]  # model, actor, value (forward + backward); optim
    for i, name in enumerate(PHASES):
        timings.setdefault(name, []).append(d[i])
    timings.setdefault("optim", []).append(d[3])


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(args) -> dict:
    """Build one implementation, time its updates; returns the figures."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]()
    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if args.impl == "ours":
        upd, nets = make_ours(args, cfg)
        batch = synthetic_batch(args.batch, args.seq, args.action_dim, args.obs, args.obs_dim, args.device)
        step = lambda: upd.update(batch)
        split = lambda timings: ours_timed_update(upd, batch, timings, sync)
    else:
        from torchrl_dreamer import fake_batch, make_torchrl_dreamer

        trl = make_torchrl_dreamer(args.obs, args.obs_dim, args.action_dim, cfg, args.device)
        nets = {"world_model": trl.world_model, "actor": trl.actor, "value": trl.value}
        batch = fake_batch(args.obs, args.obs_dim, args.action_dim, args.batch, args.seq,
                           (cfg.world_model.latent.state_dim, cfg.world_model.rssm.belief_dim), args.device)
        step = lambda: trl.update(batch)
        split = lambda timings: trl.update(batch, timings, sync)
    warmup_ms = []
    for _ in range(args.warmup):
        sync()
        start = time.perf_counter()
        step()
        sync()
        warmup_ms.append(1e3 * (time.perf_counter() - start))
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
    times, timings = [], {}
    for _ in range(args.updates):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    for _ in range(args.split_updates):
        split(timings)
    return {
        "impl": args.impl, "preset": args.preset, "obs": args.obs, "batch": f"{args.batch}x{args.seq}",
        "threads": torch.get_num_threads(), "device": args.device, "updates": args.updates,
        "median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times),
        "phase_ms": {k: 1e3 * statistics.median(v) for k, v in timings.items()}, "warmup_ms": warmup_ms,
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in nets.items()},
    }


def describe(r: dict) -> str:
    phases = "  ".join(f"{k} {v:.0f}" for k, v in r["phase_ms"].items())
    mem = f"peak RSS {r['peak_rss_mb']:.0f} MB" + (f", peak CUDA {r['peak_cuda_mb']:.0f} MB"
                                                    if r["peak_cuda_mb"] is not None else "")
    return (f"{r['impl']:>7}: median {r['median_ms']:.0f} ms/update (min {r['min_ms']:.0f}, max {r['max_ms']:.0f}, "
            f"n={r['updates']}; warm-up {', '.join(f'{w:.0f}' for w in r['warmup_ms'])}); phases ms: {phases}; {mem}; params {r['params']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", default="both", choices=["ours", "torchrl", "both"])
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="model sizes from this preset")
    p.add_argument("--obs", default="pixels", choices=["pixels", "observation"])
    p.add_argument("--obs_dim", type=int, default=5, help="vector observation size")
    p.add_argument("--action_dim", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--updates", type=int, default=5, help="timed updates (median reported)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed updates first (TorchRL's first 2-3 updates are several times slower)")
    p.add_argument("--split_updates", type=int, default=2, help="extra updates timed phase by phase")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile the networks (CUDA graphs on GPU)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="ours: autocast of the forwards")
    p.add_argument("--markdown", action="store_true", help="also print a RESULTS.md table row")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line (used by --impl both)")
    args = p.parse_args(argv)

    if args.impl != "both":
        r = run_one(args)
        print(json.dumps(r) if args.json else describe(r), flush=True)
        return {args.impl: r}

    results = {}
    base = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--markdown", "--json")]
    for impl in ("ours", "torchrl"):
        cmd = [sys.executable, str(Path(__file__).resolve()), *base, "--impl", impl, "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        if out.returncode:
            sys.exit(f"{impl} failed:\n{out.stderr[-4000:]}")
        results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        print(describe(results[impl]), flush=True)
    ours, trl = results["ours"], results["torchrl"]
    speed = trl["median_ms"] / ours["median_ms"]
    mem_key = "peak_cuda_mb" if ours["peak_cuda_mb"] is not None else "peak_rss_mb"
    mem = trl[mem_key] / ours[mem_key]
    print(f"ratio torchrl/ours: time {speed:.2f}x, {mem_key} {mem:.2f}x")
    if args.markdown:
        split = lambda r: " / ".join(f"{r['phase_ms'].get(k, float('nan')):.0f}" for k in PHASES)
        print(f"| {ours['preset']} {ours['obs']} {ours['batch']} | {ours['device']} {ours['threads']} thr | "
              f"{ours['median_ms']:.0f} | {trl['median_ms']:.0f} | {speed:.2f}x | {split(ours)} | {split(trl)} | "
              f"{ours[mem_key]:.0f} | {trl[mem_key]:.0f} | {mem:.2f}x |")
    return results


if __name__ == "__main__":
    main()
