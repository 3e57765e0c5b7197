"""Time one full dreamer_trl update (world model + actor + value, three optimizer steps).

    python benchmarks/bench_update.py --obs pixels --batch 16 --seq 50
    python benchmarks/bench_update.py --preset state --obs observation --batch 8 --seq 32

Synthetic batches in the replay layout (the update's cost does not depend on the pixel values).
Prints the median seconds per update after warm-up, and the split per phase.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from tensordict import TensorDict

import dreamer_trl as dt
from dreamer_trl.config import PRESETS


def synthetic_batch(B, T, A, obs_key, obs_dim, device):
    obs = (torch.randint(0, 256, (B, T, 3, 64, 64), dtype=torch.uint8) if obs_key == "pixels"
           else torch.randn(B, T, obs_dim))
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    return TensorDict({obs_key: obs, "prev_action": torch.rand(B, T, A) * 2 - 1, "is_init": is_init,
                       ("next", "reward"): torch.rand(B, T, 1)}, [B, T], device=device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="model sizes from this preset")
    p.add_argument("--obs", default="pixels", choices=["pixels", "observation"])
    p.add_argument("--obs_dim", type=int, default=5, help="vector observation size")
    p.add_argument("--action_dim", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]()
    torch.manual_seed(0)
    obs_shape = (3, 64, 64) if args.obs == "pixels" else (args.obs_dim,)
    wm = dt.make_world_model(args.obs, obs_shape, args.action_dim, cfg.model).to(args.device)
    feat = cfg.model.state_dim + cfg.model.belief_dim
    actor = dt.make_actor(feat, args.action_dim, cfg.model).to(args.device)
    value = dt.make_value(feat, cfg.model).to(args.device)
    model_loss = dt.WorldModelLoss(wm, kl_scale=cfg.loss.kl_scale, free_nats=cfg.loss.free_nats)
    if args.obs == "observation":
        model_loss.set_keys(observation="observation", reco_observation="reco_observation")
    upd = dt.DreamerUpdate(model_loss, dt.ActorLoss(actor, value, dt.make_imagination_env(wm, args.device),
                                                    horizon=cfg.loss.horizon), dt.ValueLoss(value), cfg.optim)
    batch = synthetic_batch(args.batch, args.seq, args.action_dim, args.obs, args.obs_dim, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(args.warmup + args.updates):
        sync()
        t = time.perf_counter()
        upd.update(batch)
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"dreamer_trl update: preset={args.preset} obs={args.obs} batch={args.batch}x{args.seq} "
          f"threads={torch.get_num_threads()} device={args.device}: median {med:.3f} s/update "
          f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})")
    return med


if __name__ == "__main__":
    main()
