"""Replay memory: bytes per stored frame and peak RSS while filling a pixel buffer, ours against TorchRL's layout.

    python benchmarks/bench_replay.py --frames 100000

Ours: ``dreamer_trl.make_replay_buffer`` fed collector rows (uint8 ``"pixels"`` plus ``("next", "pixels")``,
which it drops on write: the next frame is the next row's). TorchRL's Dreamer recipe layout:
``LazyMemmapStorage`` rows with float32 ``"pixels"`` and ``("next", "pixels")`` (after ``ToTensorImage``),
the carried ``"state"``/``"belief"`` at root and under ``"next"``, action, reward and flags (about 98 KB a row).

Each implementation runs in its own subprocess (so VmHWM, the peak RSS, is its own), writing ``--chunk``
rows per ``extend`` as a collector would, into a scratch directory under /tmp that is deleted afterwards.
Peak RSS counts the memory-mapped pages the process touched (file-backed, reclaimable by the kernel).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tensordict import TensorDict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STATE, BELIEF, ACTION_DIM = 30, 200, 6  # paper sizes; cheetah_run actions


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ours_chunk(n: int) -> TensorDict:
    """``n`` collector rows in dreamer_trl's layout (one trajectory)."""
    pixels = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8)
    flag = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict({
        "pixels": pixels, "action": torch.rand(n, ACTION_DIM), "prev_action": torch.rand(n, ACTION_DIM),
        "is_init": flag.clone(), "collector": {"traj_ids": torch.zeros(n, dtype=torch.int64)},
        "next": {"pixels": pixels, "reward": torch.rand(n, 1), "done": flag.clone(), "terminated": flag.clone(),
                 "truncated": flag.clone(), "is_init": flag.clone()},
    }, [n])


def torchrl_chunk(n: int) -> TensorDict:
    """``n`` rows in TorchRL's Dreamer recipe layout (float32 pixels and next pixels)."""
    def obs():
        return {"pixels": torch.rand(n, 3, 64, 64), "state": torch.zeros(n, STATE), "belief": torch.zeros(n, BELIEF)}

    flag = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict({
        **obs(), "action": torch.rand(n, ACTION_DIM), "done": flag.clone(), "terminated": flag.clone(),
        "collector": {"traj_ids": torch.zeros(n, dtype=torch.int64)},
        "next": {**obs(), "reward": torch.rand(n, 1), "done": flag.clone(), "terminated": flag.clone(),
                 "episode_reward": torch.rand(n, 1), "step_count": torch.zeros(n, 1, dtype=torch.int64)},
    }, [n])


def leaf_bytes_per_row(storage) -> float:
    leaves = storage._storage.values(include_nested=True, leaves_only=True)
    return float(sum(leaf.element_size() * leaf[0].numel() for leaf in leaves))


def fill(impl: str, frames: int, chunk: int, scratch: str) -> dict:
    """Fill one buffer of ``frames`` rows; returns bytes per frame, disk use and peak RSS."""
    from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer

    import dreamer_trl as dt

    rss_start = status_mb("VmRSS")
    if impl == "ours":
        rb = dt.make_replay_buffer(capacity=frames, batch_size=1, seq_len=2, scratch_dir=scratch)
        make_chunk = ours_chunk
    else:
        rb = TensorDictReplayBuffer(storage=LazyMemmapStorage(frames, scratch_dir=scratch), batch_size=1)
        make_chunk = torchrl_chunk
    start = time.perf_counter()
    for first in range(0, frames, chunk):
        rb.extend(make_chunk(min(chunk, frames - first)))
    fill_s = time.perf_counter() - start
    per_frame = (dt.data.replay.bytes_per_frame(rb) if impl == "ours" else leaf_bytes_per_row(rb.storage))
    rb.sample()  # the buffer is usable
    disk = sum(f.stat().st_size for f in Path(scratch).rglob("*") if f.is_file())
    return {"impl": impl, "frames": len(rb), "bytes_per_frame": per_frame, "disk_mb": disk / 2**20,
            "rss_start_mb": rss_start, "peak_rss_mb": status_mb("VmHWM"), "fill_s": fill_s}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=100_000, help="rows (agent steps) stored")
    p.add_argument("--chunk", type=int, default=500, help="rows per extend (one collector batch)")
    p.add_argument("--impl", default="both", choices=["ours", "torchrl", "both"])
    p.add_argument("--markdown", action="store_true", help="also print a RESULTS.md table row")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.impl != "both":
        scratch = tempfile.mkdtemp(prefix=f"bench_replay_{args.impl}_", dir="/tmp")
        try:
            r = fill(args.impl, args.frames, args.chunk, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps(r))
        return {args.impl: r}
    results = {}
    for impl in ("ours", "torchrl"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--frames", str(args.frames), "--chunk",
               str(args.chunk), "--impl", impl]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        if out.returncode:
            sys.exit(f"{impl} failed:\n{out.stderr[-4000:]}")
        r = results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{impl:>7}: {r['frames']} frames, {r['bytes_per_frame']:.0f} bytes/frame, {r['disk_mb']:.0f} MB on disk, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (at start {r['rss_start_mb']:.0f} MB), fill {r['fill_s']:.1f} s",
              flush=True)
    ours, trl = results["ours"], results["torchrl"]
    ratio = trl["bytes_per_frame"] / ours["bytes_per_frame"]
    rss = trl["peak_rss_mb"] / ours["peak_rss_mb"]
    print(f"ratio torchrl/ours: bytes/frame {ratio:.2f}x, peak RSS {rss:.2f}x")
    if args.markdown:
        print(f"| {args.frames} | {ours['bytes_per_frame']:.0f} | {trl['bytes_per_frame']:.0f} | {ratio:.2f}x | "
              f"{ours['peak_rss_mb']:.0f} | {trl['peak_rss_mb']:.0f} | {rss:.2f}x |")
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
