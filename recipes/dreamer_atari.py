"""Train DreamerV3 on an Atari game (the Arcade Learning Environment; pip install 'dreamer_trl[atari]').

    python recipes/dreamer_atari.py                                    # Atari 100k, Pong (GPU work)
    python recipes/dreamer_atari.py --env.task breakout                # another game (ale-py's ROM names)
    python recipes/dreamer_atari.py --env.atari.sticky --env.atari.gray --env.atari.actions all   # atari57's settings
    python recipes/dreamer_atari.py --nets.size size12m --run.device cpu   # a smaller model
    python recipes/dreamer_atari.py --resume runs/RUN                  # continue from the latest checkpoint
    python recipes/dreamer_atari.py --help                             # every field, at the preset's values

The preset is ``dreamer_v3_atari100k`` (danijar/dreamerv3 e3f0224 ``atari100k``: 64x64 RGB, action repeat 4,
no sticky actions, the minimal action set, 30 no-ops, the max over the last two frames, 440k frames, train
ratio 256); the env suite is ``atari`` (dreamer_trl/data/atari.py) and the trainer is the one every recipe
runs (dreamer_trl/training/trainer.py). Actions are one-hot; the actor samples them (1% unimix) and evaluates
with their mode. Env steps are emulator frames (after action repeat).
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dreamer_trl.run.preflight import parse_args  # noqa: E402  (light: torch is imported only after parsing)


def main(argv=None) -> dict:
    """Train as configured by ``argv`` (default: the command line); returns the run's summary."""
    cfg, preset = parse_args(argv, description=__doc__, default_preset="dreamer_v3_atari100k",
                             defaults=["--env.suite", "atari"])
    from dreamer_trl.builders.trainer import train

    return train(cfg, preset)


if __name__ == "__main__":
    main()
