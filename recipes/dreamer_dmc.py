"""Train Dreamer (Hafner et al., ICLR 2020; V1 and the paper's ablations) or PlaNet (ICML 2019) on a DMC task.

    python recipes/dreamer_dmc.py --preset state                         # CPU: proprioceptive cartpole_balance
    python recipes/dreamer_dmc.py --preset paper --env.task walker_walk  # GPU: pixels, paper defaults
    python recipes/dreamer_dmc.py --preset state --schedule.batch-size 16 --world-model.loss.free-nats 0.5
    python recipes/dreamer_dmc.py --preset state --behavior.value-estimate reward   # V_R (Eq. 4): no value network
    python recipes/dreamer_dmc.py --preset state --world-model.loss.representation contrastive   # InfoNCE world model
    python recipes/dreamer_dmc.py --preset planet_state                  # PlaNet: CEM planning, world model only (CPU)
    python recipes/dreamer_dmc.py --preset planet --env.task walker_walk # PlaNet from pixels; action repeat 2 (walker)
    python recipes/dreamer_dmc.py --resume runs/RUN                      # continue from the latest checkpoint
    torchrun --nproc-per-node 2 recipes/dreamer_dmc.py --preset state   # 2 data-parallel ranks (builders/trainer.py)
    python recipes/dreamer_dmc.py --preset state --help                  # every field, at the preset's values

Loop (Dreamer Algorithm 1, dreamer_trl/training/trainer.py): prefill with random actions; then every
``schedule.train_every`` env steps run ``schedule.updates_per_train`` updates (world model, actor, value; PlaNet's
``--behavior.kind planner``: the world model alone, and CEM planning acts) and
keep collecting with the noisy policy; a noise-free evaluation every ``schedule.eval_every`` env steps. Env
steps are frames after action repeat. Every ``run.checkpoint_every`` env steps, and on SIGTERM/SIGINT, the
whole run is checkpointed.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from dreamer_trl.run.preflight import parse_args  # noqa: E402  (light: torch is imported only after parsing)


def main(argv=None) -> dict:
    """Train as configured by ``argv`` (default: the command line); returns the run's summary (under torchrun:
    rank 0's; the other ranks return their counts)."""
    cfg, preset = parse_args(argv, description=__doc__)
    # Heavy imports only once the config is known good, so that bad arguments are refused in about a second.
    from dreamer_trl.builders.trainer import train

    return train(cfg, preset)


if __name__ == "__main__":
    main()
