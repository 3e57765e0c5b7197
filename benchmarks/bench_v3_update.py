"""One DreamerV3 update, dreamer_trl beside TorchRL 0.14.1's DreamerV3 at the same size, in one run.

    python benchmarks/bench_v3_update.py --size size1m --obs state                       # proprio, CPU
    python benchmarks/bench_v3_update.py --size size12m --obs pixels --action_dim 6 --steps 3
    python benchmarks/bench_v3_update.py --device cuda --size size12m --obs pixels --action_dim 6 --markdown

Each implementation runs in its own subprocess (so peak memory is its own), alternating ``--rounds`` times
(ours, TorchRL, ours, TorchRL, ...) so that both see the same machine; the figure is the median over all
timed updates of each, and the ratio is TorchRL's median over ours (> 1: ours is faster).

An update is the whole DreamerV3 training step at batch ``B x T`` (16 x 64): world model (encoder, observe,
decoder, reward, continue, dyn/rep KL), imagined actor and critic (15 steps from every posterior state), the
replay critic loss, one backward, the LaProp step over all parameters, the slow-critic EMA.
Ours: ``--preset dreamer_v3_proprio_current`` / ``dreamer_v3_current`` (the current official code, as TorchRL's
V3 follows it) with ``nets.size`` = ``--size``; ``--preset NAME --size preset --impl ours`` times another preset
at its own widths (``dreamer_v3_proprio``: the 2023 code behind the official score files); TorchRL's:
:mod:`torchrl_dreamer_v3` (its public classes at the official values). Synthetic batches in each one's
replay layout; the cost does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ours_step(args):
    import torch
    from tensordict import TensorDict

    import dreamer_trl as dt
    from dreamer_trl.config import PRESETS

    cfg = PRESETS[args.preset or ("dreamer_v3_current" if args.obs == "pixels" else "dreamer_v3_proprio_current")]()
    if args.size != "preset":
        cfg.nets.size = args.size
    if args.conv:
        cfg.world_model.image_encoder = f"conv_{args.conv}"
        cfg.world_model.image_decoder = "deconv_mse" if args.conv == "stride" else "upsample_mse"
    obs_key = "pixels" if args.obs == "pixels" else "observation"
    shape = (3, 64, 64) if args.obs == "pixels" else (args.obs_dim,)
    agent = dt.make_agent(obs_key, shape, args.action_dim, cfg, args.device)
    update = dt.make_update(agent, cfg.optim)
    B, T, A = args.batch, args.seq, args.action_dim
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8) if args.obs == "pixels"
           else torch.randn(B, T, args.obs_dim))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    batch = TensorDict({obs_key: obs, "action": torch.rand(B, T, A) * 2 - 1, "prev_action": torch.rand(B, T, A) * 2 - 1,
                        "is_init": is_init, ("next", "reward"): torch.rand(B, T, 1),
                        ("next", "terminated"): torch.zeros(B, T, 1, dtype=torch.bool)}, [B, T], device=args.device)
    if cfg.world_model.loss.window_start == "replay_context":  # the stored posterior of each window's row 0
        lat = cfg.world_model.latent
        state = lat.state_dim * (lat.classes if lat.kind == "categorical" else 1)
        batch.set("state", torch.zeros(B, T, state, device=args.device))
        batch.set("belief", torch.zeros(B, T, cfg.world_model.rssm.belief_dim, device=args.device))
    params = sum(p.numel() for m in (agent.world_model, agent.actor, agent.value) for p in m.parameters())
    return (lambda: update.update(batch)), params


def torchrl_step(args):
    sys.path.insert(0, str(HERE))
    from torchrl_dreamer_v3 import torchrl_v3_update

    step, params, make_batch = torchrl_v3_update(args.size, args.obs, args.device, args.batch, args.seq,
                                                 args.action_dim, args.obs_dim)
    batch = make_batch()
    return (lambda: step(batch)), params["total"]


def run_one(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from bench_update import peak_rss_mb

    torch.manual_seed(0)
    step, params = (ours_step if args.impl == "ours" else torchrl_step)(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    flops = None
    if args.flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    return {"impl": args.impl, "ms": [1e3 * t for t in times], "gflop": flops and flops / 1e9, "params": params, "peak_rss_mb": peak_rss_mb(),
            "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", choices=["both", "ours", "torchrl"], default="both")
    p.add_argument("--size", default="size1m")
    p.add_argument("--obs", choices=["state", "pixels"], default="state")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--obs_dim", type=int, default=5, help="vector observation size (cartpole: 5)")
    p.add_argument("--action_dim", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed updates per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="alternations ours / TorchRL (--impl both)")
    p.add_argument("--conv", choices=["maxpool", "stride"], default=None,
                   help="our image networks: the official current ones, or the 2023 / TorchRL stride-2 ones "
                        "(default: the preset's)")
    p.add_argument("--preset", default="", help="our preset (default: the current-code V3 preset for --obs)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--flops", action="store_true",
                   help="with --impl ours: also count one update's FLOPs (torch.utils.flop_counter), after the timing")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    if args.impl != "both":
        result = run_one(args)
        print(json.dumps(result))
        return result
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    runs = {"ours": [], "torchrl": []}
    for _ in range(args.rounds):
        for impl in ("ours", "torchrl"):
            out = subprocess.run([sys.executable, __file__, *passed, "--impl", impl], check=True, capture_output=True,
                                 text=True).stdout
            runs[impl].append(json.loads(out.strip().splitlines()[-1]))
    summary = {"size": args.size, "obs": args.obs, "batch": f"{args.batch}x{args.seq}", "device": args.device,
               "threads": args.threads}
    for impl, results in runs.items():
        ms = [t for r in results for t in r["ms"]]
        summary[impl] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "updates": len(ms),
                         "params": results[0]["params"], "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                         "peak_cuda_mb": results[0]["peak_cuda_mb"]}
    summary["torchrl_over_ours"] = summary["torchrl"]["median_ms"] / summary["ours"]["median_ms"]
    if args.markdown:
        o, t = summary["ours"], summary["torchrl"]
        print(f"| {args.size} {args.obs}{' (' + (args.conv or 'maxpool') + ')' if args.obs == 'pixels' else ''} | {summary['batch']} | {args.device} x{args.threads} | {o['median_ms']:.0f} | "
              f"{t['median_ms']:.0f} | {summary['torchrl_over_ours']:.2f}x | {o['peak_rss_mb']:.0f} / "
              f"{t['peak_rss_mb']:.0f} MB | {o['params']:,} / {t['params']:,} |")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
