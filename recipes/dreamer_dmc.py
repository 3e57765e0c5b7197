"""Train Dreamer (Hafner et al., ICLR 2020; V1 and the paper's ablations) or PlaNet (ICML 2019) on a DMC task.

    python recipes/dreamer_dmc.py --preset state                         # CPU: proprioceptive cartpole_balance
    python recipes/dreamer_dmc.py --preset paper --env.task walker_walk  # GPU: pixels, paper defaults
    python recipes/dreamer_dmc.py --preset state --schedule.batch-size 16 --loss.free-nats 0.5
    python recipes/dreamer_dmc.py --preset state --loss.value-estimate reward   # V_R (Eq. 4): no value network
    python recipes/dreamer_dmc.py --preset state --loss.representation contrastive   # InfoNCE world model
    python recipes/dreamer_dmc.py --preset planet_state                  # PlaNet: CEM planning, world model only (CPU)
    python recipes/dreamer_dmc.py --preset planet --env.task walker_walk # PlaNet from pixels; action repeat 2 (walker)
    python recipes/dreamer_dmc.py --resume runs/RUN                      # continue from the latest checkpoint
    torchrun --nproc-per-node 2 recipes/dreamer_dmc.py --preset state   # 2 data-parallel ranks (parallel_trainer.py)
    python recipes/dreamer_dmc.py --preset state --help                  # every field, at the preset's values

Loop (Dreamer Algorithm 1, dreamer_trl/trainer.py): prefill with random actions; then every
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
    """Train as configured by ``argv`` (default: the command line); returns the run's summary."""
    cfg, preset = parse_args(argv, description=__doc__)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: data-parallel ranks
        from dreamer_trl.training.parallel_trainer import train_data_parallel

        return train_data_parallel(cfg, preset)
    # Heavy imports only once the config is known good, so that bad arguments are refused in about a second.
    import torch
    from torchrl.envs.utils import check_env_specs

    import dreamer_trl as dt
    from dreamer_trl.training.acceleration import compile_networks
    from dreamer_trl.training.distributed import World
    from dreamer_trl.training.parallel_trainer import check_world_size
    from dreamer_trl.training.trainer import (
        Trainer,
        build,
        make_buffer,
        make_loggers,
        make_run_dir,
        resolve_device,
        seed_everything,
    )

    check_world_size(cfg, World())  # a checkpoint of a data-parallel run resumes only under torchrun
    device = resolve_device(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)

    # Environments, then the agent, its policy and updater (build() smoke-tests the policy on a fake step).
    faults = dict(max_physics_errors=cfg.run.max_physics_errors, physics_error_window=cfg.run.physics_error_window)
    env = dt.make_envs(cfg.env, cfg.model, cfg.run.seed, cfg.env.num_envs, cfg.env.parallel_envs, **faults)
    eval_env = dt.make_env(cfg.env, cfg.model, cfg.run.seed + 10_000, **faults)
    check_env_specs(env)
    agent, policy, updater = build(cfg, env, device)
    if cfg.run.compile:
        compile_networks(agent.world_model, agent.actor, agent.value, backend=cfg.run.compile_backend, device=device)

    # Where the run lives: config.json, the replay buffer (disk space checked first), logs.
    run_dir = make_run_dir(cfg, preset)
    buffer = make_buffer(cfg, env, run_dir, device)
    loggers = make_loggers(cfg.run, run_dir)

    if cfg.run.async_collection:  # collection in a worker process, overlapping the updates
        from dreamer_trl.training.async_trainer import AsyncTrainer as Trainer  # noqa: N813
    trainer = Trainer(cfg, preset, run_dir, env=env, eval_env=eval_env, agent=agent, policy=policy,
                      updater=updater, buffer=buffer, loggers=loggers, device=device)
    try:
        return trainer.run()
    finally:
        getattr(env, "shutdown", lambda: None)()  # env.num_envs > 1: end the env workers (vector_env.py)


if __name__ == "__main__":
    main()
