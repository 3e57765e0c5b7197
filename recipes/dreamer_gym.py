"""Train Dreamer on any gymnasium environment, or on your own TorchRL env (pip install 'dreamer_trl[gym]').

    python recipes/dreamer_gym.py                                       # DreamerV3 (size1m) on CartPole-v1
    python recipes/dreamer_gym.py --env.task Pendulum-v1                # continuous actions in [-1, 1]
    python recipes/dreamer_gym.py --env.task CartPole-v1 --env.from-pixels   # from its rendered frames
    python recipes/dreamer_gym.py --env.suite torchrl --env.task my_pkg.envs:make_env   # your TorchRL env
    python recipes/dreamer_gym.py --preset dreamer_v2 --env.no-from-pixels   # another member of the family
    python recipes/dreamer_gym.py --resume runs/RUN                     # continue from the latest checkpoint

Defaults: ``--preset dreamer_v3_proprio_current --env.suite gym --env.task CartPole-v1 --env.no-from-pixels``
(every one overridable). Discrete actions are one-hot (the actor samples them with V3's 1% unimix);
terminations and truncations stay apart (docs/environments.md); your own env: docs/own_env.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dreamer_trl.run.preflight import parse_args  # noqa: E402  (light: torch is imported only after parsing)


def main(argv=None) -> dict:
    """Train as configured by ``argv`` (default: the command line); returns the run's summary."""
    cfg, preset = parse_args(argv, description=__doc__, default_preset="dreamer_v3_proprio_current",
                             defaults=["--env.suite", "gym", "--env.task", "CartPole-v1", "--env.no-from-pixels"])
    from dreamer_trl.builders.trainer import train

    return train(cfg, preset)


if __name__ == "__main__":
    main()
