"""Named starting configurations: plain functions returning a fresh :class:`DreamerConfig`."""
from __future__ import annotations

import inspect
from typing import Callable

from .schema import (BehaviorConfig, DreamerConfig, EnvConfig, LossConfig, ModelConfig, OptimConfig, RunConfig,
                     ScheduleConfig)


def paper() -> DreamerConfig:
    """Dreamer V1 from pixels, every default as in the paper (GPU work)."""
    return DreamerConfig()


def state() -> DreamerConfig:
    """Proprioceptive observations, smaller model and batch: learns cartpole_balance on 2 CPU cores.

    60k env steps; each evaluation is the mean of 10 noise-free episodes (single episodes swing widely).
    cartpole_balance reached 536.0 and 464.2 in two seeds (cartpole_swingup stays at the constant push
    within 60k; benchmarks/RESULTS.md, "The family architecture"). Free nats 0 instead of
    the paper's 3: from proprioception the posterior needs only about 0.5 nats (measured), so with a
    threshold of 3 the batch-mean KL never reaches it and the prior, trained only by the KL term, would get
    no gradient (benchmarks/RESULTS.md, "Learning on CPU").
    """
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="cartpole_balance", from_pixels=False)
    cfg.model = ModelConfig(state_dim=16, belief_dim=128, rssm_hidden=128, mlp_hidden=200)
    cfg.loss = LossConfig(free_nats=0.0)
    cfg.schedule = ScheduleConfig(total_env_steps=60_000, prefill_env_steps=5000, batch_size=8, seq_len=32,
                                  eval_every=10_000, eval_episodes=10, buffer_capacity=100_000)
    return cfg


def debug() -> DreamerConfig:
    """Tiny networks and schedule on real pixels: the whole loop in about a minute on CPU."""
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="cartpole_swingup", from_pixels=True, episode_frames=200)
    cfg.model = ModelConfig(state_dim=8, belief_dim=32, rssm_hidden=32, cnn_depth=4, mlp_hidden=32)
    cfg.loss = LossConfig(horizon=5)
    cfg.schedule = ScheduleConfig(total_env_steps=800, prefill_env_steps=400, train_every=200, updates_per_train=2,
                                  batch_size=4, seq_len=10, eval_every=400, buffer_capacity=2000)
    cfg.run = RunConfig(tensorboard=False)
    return cfg


# PlaNet's action repeat per DMC domain (Hafner et al. 2019, Sec. 5; shared/reference/DREAMER_V2_V3.md).
PLANET_ACTION_REPEAT = {"cartpole": 8, "reacher": 4, "cheetah": 4, "finger": 2, "ball_in_cup": 4, "walker": 2}


def planet_action_repeat(task: str) -> int:
    """PlaNet's action repeat for the task's domain; domains PlaNet did not run keep the default 2."""
    for domain, repeat in PLANET_ACTION_REPEAT.items():
        if task.startswith(domain + "_"):
            return repeat
    return EnvConfig().action_repeat


def planet(task: str = "cartpole_swingup") -> DreamerConfig:
    """PlaNet from pixels (Hafner et al. 2019): CEM planning in latent space, world model only (GPU work).

    The same RSSM as Dreamer V1; no actor or value. CEM with horizon 12, 1000 candidates, top 100, 10
    iterations; 100 updates per collected episode (1000 env steps), batch 50 x 50, free nats 3, Adam 1e-3
    (eps 1e-4), gradient clip 1000, exploration noise 0.3; action repeat per domain (cartpole 8, reacher 4,
    cheetah 4, finger 2, cup 4, walker 2), derived from ``task`` (also from ``--env.task`` on the command
    line) unless ``--env.action-repeat`` is given.
    """
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task=task, from_pixels=True, action_repeat=planet_action_repeat(task))
    cfg.optim = OptimConfig(model_lr=1e-3, adam_eps=1e-4, grad_clip=1000.0)
    cfg.behavior = BehaviorConfig(kind="planner")
    return cfg


def planet_state(task: str = "cartpole_balance") -> DreamerConfig:
    """PlaNet on proprioceptive observations with the state preset's model and batch: for 2 CPU cores.

    PlaNet's planner, optimizer and action repeat (:func:`planet`), 100 updates per episode; the world
    model, batch (8 x 32), free nats (0) and evaluation (10 episodes every 10k env steps) of the ``state``
    preset, so that beside it only the behaviour differs.
    """
    cfg = planet(task)
    base = state()
    cfg.env = EnvConfig(task=task, from_pixels=False, action_repeat=planet_action_repeat(task))
    cfg.model, cfg.loss, cfg.schedule = base.model, base.loss, base.schedule
    return cfg


PRESETS: dict[str, Callable[..., DreamerConfig]] = {"paper": paper, "state": state, "debug": debug,
                                                    "planet": planet, "planet_state": planet_state}


def make_preset(name: str, task: str | None = None) -> DreamerConfig:
    """The preset ``name``; presets that take a task (planet: its action repeat) are given ``task``."""
    make = PRESETS[name]
    if task is not None and "task" in inspect.signature(make).parameters:
        return make(task)
    return make()
