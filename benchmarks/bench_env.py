"""Pixel env throughput: dreamer_trl's DMC env against TorchRL's ``DMControlEnv`` pixel path.

    python benchmarks/bench_env.py --task cheetah_run --steps 200 --repeats 3 --workers 1 2

Ours: ``dreamer_trl.make_dmc_env(domain, task, from_pixels=True)`` (64x64 rendered once per agent step,
action repeat 2, uint8). TorchRL: ``DMControlEnv(domain, task, from_pixels=True, pixels_only=True,
frame_skip=2)`` (its default 240x320 render) then, as its Dreamer recipe does, ``ToTensorImage`` and a
resize to 64x64. TorchRL's ``Resize`` needs torchvision, which is not installed here, so the resize is
:class:`InterpolateResize` below (``torch.nn.functional.interpolate``, bilinear, antialiased, like
torchvision's tensor resize).

Both run the same uniform random actions through ``env.rollout`` (auto-reset at episode ends), single
env and with N workers in a TorchRL ``ParallelEnv``. Prints agent steps/s and frames/s (frames = DMC
control steps = agent steps x action repeat) per env, the median over repeats, and the ratio ours/torchrl.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torchrl.envs import DMControlEnv, ParallelEnv, ToTensorImage, Transform, TransformedEnv  # noqa: E402

import dreamer_trl as dt  # noqa: E402

ACTION_REPEAT = 2


class InterpolateResize(Transform):
    """Resize ``[*N, C, H, W]`` float images to ``size`` x ``size`` (stand-in for torchrl's ``Resize``)."""

    def __init__(self, size: int, in_keys=("pixels",)):
        super().__init__(in_keys=list(in_keys), out_keys=list(in_keys))
        self.size = size

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[:-3]
        x = F.interpolate(obs.reshape(-1, *obs.shape[-3:]), size=(self.size, self.size), mode="bilinear",
                          align_corners=False, antialias=True)
        return x.reshape(*batch, *x.shape[-3:])

    def _reset(self, tensordict, tensordict_reset):
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec):
        for key in self.in_keys:
            spec = observation_spec[key]
            spec.shape = torch.Size([*spec.shape[:-2], self.size, self.size])
            if hasattr(spec.space, "low") and spec.space.low.ndim:
                spec.space.low = spec.space.low[..., : self.size, : self.size]
                spec.space.high = spec.space.high[..., : self.size, : self.size]
        return observation_spec


def make_ours(domain: str, task: str, seed: int = 0):
    return dt.make_dmc_env(domain, task, from_pixels=True, action_repeat=ACTION_REPEAT, seed=seed)


def make(impl: str, domain: str, task: str, workers: int):
    factory = make_ours if impl == "ours" else make_torchrl_env
    if workers == 1:
        return factory(domain, task)
    return ParallelEnv(workers, [functools.partial(factory, domain, task, seed=i) for i in range(workers)])


def make_torchrl_env(domain: str, task: str, seed: int = 0):
    env = TransformedEnv(DMControlEnv(domain, task, from_pixels=True, pixels_only=True, frame_skip=ACTION_REPEAT),
                         ToTensorImage(in_keys=["pixels"], from_int=True))
    env.append_transform(InterpolateResize(64))
    env.set_seed(seed)
    return env


def rollout_rate(env, steps: int, repeats: int) -> tuple[float, torch.Tensor]:
    """(median agent steps/s over ``repeats`` random rollouts of ``steps`` after a warm-up, the last pixels);
    closes ``env``."""
    torch.manual_seed(0)
    try:
        env.rollout(3, break_when_any_done=False)  # warm-up: rendering context, worker start
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            td = env.rollout(steps, break_when_any_done=False)
            rates.append(steps / (time.perf_counter() - start))
        return statistics.median(rates), td["next", "pixels"]
    finally:
        env.close()


def measure(impl: str, domain: str, task: str, workers: int, steps: int, repeats: int) -> dict:
    """Median agent steps/s per env over ``repeats`` rollouts of ``steps`` agent steps (after a warm-up)."""
    rate, pixels = rollout_rate(make(impl, domain, task, workers), steps, repeats)  # per env (lockstep)
    return {"impl": impl, "workers": workers, "agent_steps_per_s_per_env": rate,
            "frames_per_s_per_env": ACTION_REPEAT * rate, "frames_per_s_total": ACTION_REPEAT * rate * workers,
            "pixels": f"{tuple(pixels.shape[-3:])} {pixels.dtype}".replace("torch.", "")}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cheetah_run")
    p.add_argument("--steps", type=int, default=200, help="agent steps per timed rollout")
    p.add_argument("--repeats", type=int, default=3, help="timed rollouts (median reported)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="1: plain env; N > 1: ParallelEnv(N)")
    p.add_argument("--impl", default="both", choices=["ours", "torchrl", "both"])
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    p.add_argument("--markdown", action="store_true", help="also print RESULTS.md table rows")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    domain, task = dt.split_task(args.task)
    impls = ["ours", "torchrl"] if args.impl == "both" else [args.impl]
    results = []
    for workers in args.workers:
        row = {impl: measure(impl, domain, task, workers, args.steps, args.repeats) for impl in impls}
        for r in row.values():
            print(f"{r['impl']:>7} workers={workers}: {r['agent_steps_per_s_per_env']:.1f} agent steps/s per env, "
                  f"{r['frames_per_s_per_env']:.1f} frames/s per env ({r['frames_per_s_total']:.1f} total); "
                  f"pixels {r['pixels']}", flush=True)
            results.append(r)
        if len(row) == 2:
            ratio = row["ours"]["frames_per_s_per_env"] / row["torchrl"]["frames_per_s_per_env"]
            print(f"ratio ours/torchrl (frames/s per env), workers={workers}: {ratio:.2f}x", flush=True)
            if args.markdown:
                print(f"| {args.task} | {workers} | {row['ours']['frames_per_s_per_env']:.0f} | "
                      f"{row['torchrl']['frames_per_s_per_env']:.0f} | {ratio:.2f}x |")
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
