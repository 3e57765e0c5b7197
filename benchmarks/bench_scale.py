"""Scaling out: env frames/s with N env workers, and learner updates/s with 1 and W data-parallel ranks.

    python benchmarks/bench_scale.py collect --workers 1 2 4 --steps 200                # pixels 64x64, ParallelEnv
    python benchmarks/bench_scale.py collect --workers 1 2 --state --steps 500
    python benchmarks/bench_scale.py learn --ranks 1 2 --preset state --updates 20     # gloo, 1 thread per rank
    python benchmarks/bench_scale.py learn --ranks 1 2 --device cuda --preset dreamer_v3_proprio   # NCCL, 1 GPU/rank

collect: :func:`dreamer_trl.make_envs` (``env.num_envs`` N in worker processes, the policy of the preset batched
over them) inside TorchRL's Collector, random-free policy steps as in training; frames = env steps after action
repeat (what the schedule counts), the median over ``--repeats`` after one warm-up batch.

learn: ``--ranks`` W processes spawned on localhost (gloo on CPU, NCCL on CUDA), each with its own synthetic batch of
the preset's size and the data-parallel update of :mod:`dreamer_trl.training.distributed`; updates/s is rank 0's after
``--warmup`` updates. Scaling efficiency = (W-rank sequences/s) / (W x 1-rank sequences/s): the per-rank batch is
the preset's, so W ranks train on W times the data per update.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def collect(args) -> list[dict]:
    import torch
    from torchrl.collectors import Collector
    from torchrl.envs.utils import ExplorationType

    import dreamer_trl as dt
    from dreamer_trl.builders.trainer import build
    from dreamer_trl.config import make_preset

    torch.set_num_threads(1)
    rows = []
    for n in args.workers:
        cfg = make_preset(args.preset)
        cfg.env.task, cfg.env.from_pixels = args.task, not args.state
        env = dt.make_envs(cfg, 0, n, parallel=True)
        try:
            _, policy, _ = build(cfg, env, torch.device("cpu"))
            per_batch = args.steps * n
            collector = Collector(env, policy, frames_per_batch=per_batch, total_frames=-1,
                                  exploration_type=ExplorationType.RANDOM)
            times, batches = [], iter(collector)
            next(batches)  # warm-up: worker start, first render
            for _ in range(args.repeats):
                start = time.perf_counter()
                next(batches)
                times.append(time.perf_counter() - start)
            collector.shutdown(close_env=False)
        finally:
            env.shutdown() if n > 1 else env.close()
        steps_s = per_batch / statistics.median(times)
        rows.append({"workers": n, "obs": "state" if args.state else "pixels", "agent_steps_s": steps_s,
                     "frames_s": steps_s * cfg.env.action_repeat})
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _learn_rank(rank, world, port, args, out):
    import torch
    import torch.distributed as dist
    from tensordict import TensorDict

    import dreamer_trl as dt
    from dreamer_trl import keys
    from dreamer_trl.config import make_preset
    from dreamer_trl.training.distributed import World, make_data_parallel

    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device == "cpu" else f"cuda:{rank}")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world)
    cfg = make_preset(args.preset)
    pixels = cfg.env.from_pixels
    obs_key, shape = (keys.PIXELS, (3, 64, 64)) if pixels else (keys.OBSERVATION, (args.obs_dim,))
    torch.manual_seed(0)
    agent = dt.make_agent(obs_key, shape, args.action_dim, cfg, device)
    updater = dt.make_update(agent, cfg.optim)
    make_data_parallel(agent, updater, World(rank, world), check_every=args.check_every)
    B, T, A = cfg.schedule.batch_size, cfg.schedule.seq_len, args.action_dim
    torch.manual_seed(rank)
    obs = (torch.randint(0, 256, (B, T, *shape), dtype=torch.uint8) if pixels else torch.randn(B, T, *shape))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[:, 0] = True
    batch = TensorDict({obs_key: obs, keys.ACTION: torch.rand(B, T, A) * 2 - 1,
                        keys.PREV_ACTION: torch.rand(B, T, A) * 2 - 1, keys.IS_INIT: is_init,
                        ("next", keys.REWARD): torch.randn(B, T, 1),
                        ("next", keys.TERMINATED): torch.zeros(B, T, 1, dtype=torch.bool)}, [B, T]).to(device)
    for i in range(args.warmup + args.updates):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        updater.update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if rank == 0:
        out.put({"ranks": world, "updates_s": args.updates / seconds, "sequences_s": args.updates * B * world / seconds})
    if world > 1:
        dist.destroy_process_group()


def learn(args) -> list[dict]:
    import torch.multiprocessing as mp

    ctx, rows = mp.get_context("spawn"), []
    for world in args.ranks:
        out = ctx.SimpleQueue()
        mp.start_processes(_learn_rank, args=(world, _free_port(), args, out), nprocs=world, join=True,
                           start_method="spawn")
        rows.append(out.get())
    base = next((r["sequences_s"] for r in rows if r["ranks"] == 1), None)
    for r in rows:
        r["efficiency"] = r["sequences_s"] / (r["ranks"] * base) if base else float("nan")
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    c.add_argument("--task", default="cheetah_run")
    c.add_argument("--preset", default="debug")
    c.add_argument("--state", action="store_true", help="state observations instead of 64x64 pixels")
    c.add_argument("--steps", type=int, default=200, help="agent steps per env per timed batch")
    c.add_argument("--repeats", type=int, default=3)
    lr = sub.add_parser("learn")
    lr.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    lr.add_argument("--preset", default="state")
    lr.add_argument("--device", default="cpu")
    lr.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    lr.add_argument("--updates", type=int, default=20)
    lr.add_argument("--warmup", type=int, default=3)
    lr.add_argument("--check_every", type=int, default=100)
    lr.add_argument("--obs_dim", type=int, default=5)
    lr.add_argument("--action_dim", type=int, default=1)
    for q in (c, lr):
        q.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    rows = collect(args) if args.mode == "collect" else learn(args)
    for r in rows:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    if args.markdown and rows:
        print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
        for r in rows:
            print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return rows


if __name__ == "__main__":
    main()
