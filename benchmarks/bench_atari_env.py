"""Atari env throughput: dreamer_trl's Atari env against TorchRL's ``GymEnv`` with its image transforms.

    python benchmarks/bench_atari_env.py --game pong --steps 500 --repeats 3

Ours: ``dreamer_trl.data.atari.AtariEnv`` with the atari100k preprocessing (one emulator frame per gymnasium
step, action repeat 4, the max over the last two screens, Pillow bilinear resize to 64x64 RGB, uint8, no sticky
actions, the minimal action set). TorchRL: ``GymEnv("ALE/<Game>-v5", frameskip=4, repeat_action_probability=0)``
(the emulator repeats the action itself, no max-pooling) with ``ToTensorImage`` and a 64x64 resize
(:class:`bench_env.InterpolateResize`: torchvision, which TorchRL's ``Resize`` needs, is not installed), the
pipeline a TorchRL user writes for Atari. Both roll out uniform random actions with ``env.rollout``
(auto-reset). Prints agent steps/s and frames/s (emulator frames = agent steps x 4), the median over repeats,
and the ratio ours/torchrl (> 1: ours is faster). Ours does more work per step (two screen copies and the max).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_env import InterpolateResize, rollout_rate  # noqa: E402

REPEAT = 4


def make(impl: str, game: str):
    if impl == "ours":
        from dreamer_trl.data.atari import make_atari_env

        return make_atari_env(game, image_size=64, action_repeat=REPEAT, sticky=False, gray=False, actions="needed")
    import ale_py
    import gymnasium
    from torchrl.envs import GymEnv, ToTensorImage, TransformedEnv

    gymnasium.register_envs(ale_py)
    name = "".join(part.capitalize() for part in game.split("_"))
    env = TransformedEnv(GymEnv(f"ALE/{name}-v5", frameskip=REPEAT, repeat_action_probability=0.0),
                         ToTensorImage(in_keys=["pixels"], from_int=True))
    env.append_transform(InterpolateResize(64))
    return env


def measure(impl: str, game: str, steps: int, repeats: int) -> dict:
    rate, pixels = rollout_rate(make(impl, game), steps, repeats)
    return {"impl": impl, "agent_steps_per_s": rate, "frames_per_s": REPEAT * rate,
            "pixels": f"{tuple(pixels.shape[-3:])} {pixels.dtype}".replace("torch.", "")}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="pong")
    p.add_argument("--steps", type=int, default=500, help="agent steps per timed rollout")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impl", default="both", choices=["ours", "torchrl", "both"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = [measure(impl, args.game, args.steps, args.repeats)
               for impl in (["ours", "torchrl"] if args.impl == "both" else [args.impl])]
    for r in results:
        print(f"{r['impl']:>7}: {r['agent_steps_per_s']:.1f} agent steps/s, {r['frames_per_s']:.1f} frames/s; "
              f"pixels {r['pixels']}", flush=True)
    if len(results) == 2:
        print(f"ratio ours/torchrl (frames/s): {results[0]['frames_per_s'] / results[1]['frames_per_s']:.2f}x")
    return results


if __name__ == "__main__":
    main()
