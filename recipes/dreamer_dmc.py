"""Train Dreamer V1 (Hafner et al., ICLR 2020) on a DeepMind Control Suite task.

    python recipes/dreamer_dmc.py --preset state                 # CPU: proprioceptive cartpole_swingup
    python recipes/dreamer_dmc.py --preset paper --task walker_walk   # GPU: pixels, paper defaults
    python recipes/dreamer_dmc.py --help                         # every config field

Loop (Dreamer Algorithm 1): prefill with random actions; then every ``train_every`` env steps run
``updates_per_train`` updates (world model, actor, value) and keep collecting with the noisy policy;
a noise-free evaluation every ``eval_every`` env steps. Env steps are frames after action repeat.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs import RewardSum  # noqa: E402
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type  # noqa: E402
from torchrl.record.loggers import CSVLogger, TensorboardLogger  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import keys  # noqa: E402
from dreamer_trl.config import DreamerConfig, parse_args, to_dict  # noqa: E402


def make_env(cfg: DreamerConfig, seed: int):
    """The DMC env plus the transforms that carry the policy's recurrent state."""
    domain, task = dt.split_task(cfg.env.task)
    env = dt.make_dmc_env(domain, task, from_pixels=cfg.env.from_pixels, image_size=cfg.env.image_size,
                          action_repeat=cfg.env.action_repeat, episode_frames=cfg.env.episode_frames, seed=seed)
    env.append_transform(dt.policy_carry_transform(cfg.model.state_dim, cfg.model.belief_dim,
                                                   env.action_spec.shape[-1]))
    env.append_transform(RewardSum())
    return env


def make_run_dir(cfg: DreamerConfig, preset: str) -> Path:
    name = cfg.run.run_name or f"{cfg.env.task}-{preset}-s{cfg.run.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run.run_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"preset": preset, **to_dict(cfg)}, indent=2))
    return run_dir


def evaluate(env, policy, episodes: int) -> float:
    """Mean return of noise-free episodes (actor mode, no exploration noise)."""
    returns = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(max_steps=10**6, policy=policy, break_when_any_done=True)
            returns.append(rollout[keys.NEXT_REWARD].sum().item())
    return float(np.mean(returns))


def main(argv=None) -> dict:
    cfg, preset = parse_args(argv, description=__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if cfg.run.device == "auto" \
        else torch.device(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    s, a = cfg.schedule, cfg.env.action_repeat

    # Environments and networks; one smoke call on a fake tensordict shows wiring errors before collection.
    env, eval_env = make_env(cfg, cfg.run.seed), make_env(cfg, cfg.run.seed + 10_000)
    check_env_specs(env)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    obs_shape = tuple(env.observation_spec[obs_key].shape)
    action_dim = env.action_spec.shape[-1]
    world_model = dt.make_world_model(obs_key, obs_shape, action_dim, cfg.model).to(device)
    imagination_env = dt.make_imagination_env(world_model, device=device)
    feature_dim = cfg.model.state_dim + cfg.model.belief_dim
    actor = dt.make_actor(feature_dim, action_dim, cfg.model).to(device)
    value = dt.make_value(feature_dim, cfg.model).to(device)
    policy = dt.make_policy(world_model, actor, env.action_spec.to(device), cfg.loss.exploration_noise)
    policy(env.fake_tensordict().to(device))

    model_loss = dt.WorldModelLoss(world_model, kl_scale=cfg.loss.kl_scale, free_nats=cfg.loss.free_nats)
    if obs_key == keys.OBSERVATION:
        model_loss.set_keys(observation=keys.OBSERVATION, reco_observation=keys.RECO_OBSERVATION)
    actor_loss = dt.ActorLoss(actor, value, imagination_env, horizon=cfg.loss.horizon, gamma=cfg.loss.gamma,
                              lmbda=cfg.loss.lmbda)
    value_loss = dt.ValueLoss(value, gamma=cfg.loss.gamma)
    updater = dt.DreamerUpdate(model_loss, actor_loss, value_loss, cfg.optim)

    run_dir = make_run_dir(cfg, preset)
    buffer_dir = cfg.run.buffer_dir or str(run_dir / "replay")
    buffer = dt.make_replay_buffer(s.buffer_capacity, s.batch_size, s.seq_len, scratch_dir=buffer_dir, device=device)
    loggers = [CSVLogger(exp_name="", log_dir=str(run_dir / "logs"))]
    if cfg.run.tensorboard:
        loggers.append(TensorboardLogger(exp_name="", log_dir=str(run_dir / "tensorboard")))

    def log(metrics: dict, step: int) -> None:
        for name, value_ in metrics.items():
            for logger in loggers:
                logger.log_scalar(name, float(value_), step=step)

    collector = Collector(
        env, policy, frames_per_batch=s.train_every // a, total_frames=s.total_env_steps // a,
        init_random_frames=s.prefill_env_steps // a, policy_device=device, env_device="cpu",
        storing_device="cpu", exploration_type=ExplorationType.RANDOM,
    )
    env_steps = updates = episodes = 0
    last_eval, evals, start = float("nan"), [], time.perf_counter()
    bar = tqdm(total=s.total_env_steps, unit="env step", disable=not cfg.run.progress, dynamic_ncols=True)
    for data in collector:
        buffer.extend(data)
        new_steps = data.numel() * a
        env_steps += new_steps
        finished = data["next", "done"].squeeze(-1)
        for ret in data["next", "episode_reward"][finished].flatten().tolist():
            log({"train/episode_return": ret}, env_steps)
        episodes += int(finished.sum())
        if env_steps >= s.prefill_env_steps:
            for _ in range(s.updates_per_train):
                metrics = updater.update(buffer.sample())
                updates += 1
            log({**metrics, "train/updates": updates}, env_steps)
        if env_steps // s.eval_every > (env_steps - new_steps) // s.eval_every or env_steps >= s.total_env_steps:
            last_eval = evaluate(eval_env, policy, s.eval_episodes)
            evals.append((env_steps, last_eval))
            log({"eval/return": last_eval}, env_steps)
        elapsed = time.perf_counter() - start
        log({"time/env_steps_per_s": env_steps / elapsed, "train/episodes": episodes}, env_steps)
        bar.update(new_steps)
        bar.set_postfix(updates=updates, eval_return=f"{last_eval:.1f}", steps_per_s=f"{env_steps / elapsed:.0f}")
    bar.close()
    collector.shutdown()

    state = {"world_model": world_model.state_dict(), "actor": actor.state_dict(), "value": value.state_dict(),
             "optimizers": updater.state_dict()}
    meta = {"config": to_dict(cfg), "preset": preset, "env_steps": env_steps, "updates": updates,
            "evaluations": evals}
    ckpt = dt.save_checkpoint(run_dir / "checkpoint", state, meta)
    summary = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "env_steps": env_steps, "updates": updates,
               "final_eval_return": last_eval, "evaluations": evals,
               "wall_clock_s": round(time.perf_counter() - start, 1)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done: {env_steps} env steps, {updates} updates, final eval return {last_eval:.1f}, "
          f"{summary['wall_clock_s']} s; files in {run_dir}")
    return summary


if __name__ == "__main__":
    main()
