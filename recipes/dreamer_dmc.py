"""Train Dreamer V1 (Hafner et al., ICLR 2020) on a DeepMind Control Suite task.

    python recipes/dreamer_dmc.py --preset state                         # CPU: proprioceptive cartpole_balance
    python recipes/dreamer_dmc.py --preset paper --env.task walker_walk  # GPU: pixels, paper defaults
    python recipes/dreamer_dmc.py --preset state --schedule.batch-size 16 --loss.free-nats 0.5
    python recipes/dreamer_dmc.py --resume runs/RUN                      # continue from the latest checkpoint
    python recipes/dreamer_dmc.py --preset state --help                  # every field, at the preset's values

Loop (Dreamer Algorithm 1): prefill with random actions; then every ``train_every`` env steps run
``updates_per_train`` updates (world model, actor, value) and keep collecting with the noisy policy;
a noise-free evaluation every ``eval_every`` env steps. Env steps are frames after action repeat.
Every ``checkpoint_every`` env steps, and on SIGTERM/SIGINT, the whole run is checkpointed.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs.utils import ExplorationType, check_env_specs  # noqa: E402
from torchrl.record.loggers import CSVLogger, TensorboardLogger  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import keys  # noqa: E402
from dreamer_trl.acceleration import autocast_context, compile_networks  # noqa: E402
from dreamer_trl.config import DreamerConfig, to_dict  # noqa: E402
from dreamer_trl.data import check_disk_space  # noqa: E402
from dreamer_trl.preflight import parse_args  # noqa: E402
from dreamer_trl.visualize import (  # noqa: E402
    log_image, log_video, open_loop, record_episode, write_open_loop, write_video,
)


def make_run_dir(cfg: DreamerConfig, preset: str) -> Path:
    if cfg.run.resume:
        return Path(cfg.run.resume).parent.parent  # RUN/checkpoints/STEP
    name = cfg.run.run_name or f"{cfg.env.task}-{preset}-s{cfg.run.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run.run_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"preset": preset, **to_dict(cfg)}, indent=2))
    return run_dir


def evaluate(env, policy, episodes: int, stop) -> tuple[float, np.ndarray] | None:
    """Mean return of noise-free episodes and the first one's frames; None if ``stop()`` interrupts."""
    returns, frames = [], None
    for i in range(episodes):
        result = record_episode(env, policy, video_size=64 if i == 0 else 0, stop=stop)
        if result is None:
            return None
        returns.append(result[0])
        frames = result[1] if i == 0 else frames
    return float(np.mean(returns)), frames


def show_world_model(world_model, buffer, obs_key: str, videos: Path, loggers, step: int) -> dict:
    """Open-loop prediction (Dreamer Fig. 5) on replayed sequences: error per horizon step, and for pixels
    the true | predicted | error strip as an image and a video."""
    try:
        batch = buffer.sample()[:4]
    except ValueError:  # no stored episode fills a sequence yet
        return {}
    out = open_loop(world_model, batch, context=min(5, batch.shape[-1] - 1))
    if obs_key == keys.PIXELS:
        paths = write_open_loop(out, videos / f"open_loop_{step:010d}")
        log_image(loggers, "eval/open_loop", imageio.imread(paths[0]), step)
    return {f"eval/open_loop_mse_h{h:02d}": v for h, v in enumerate(out["mse_per_step"].tolist(), 1)}


def main(argv=None) -> dict:
    cfg, preset = parse_args(argv, description=__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if cfg.run.device == "auto" \
        else torch.device(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)
    s, a = cfg.schedule, cfg.env.action_repeat

    # Environments and networks; one smoke call on a fake tensordict shows wiring errors before collection.
    faults = dict(max_physics_errors=cfg.run.max_physics_errors, physics_error_window=cfg.run.physics_error_window)
    env = dt.make_env(cfg.env, cfg.model, cfg.run.seed, **faults)
    eval_env = dt.make_env(cfg.env, cfg.model, cfg.run.seed + 10_000, **faults)
    check_env_specs(env)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    obs_shape = tuple(env.observation_spec[obs_key].shape)
    action_dim = env.action_spec.shape[-1]
    agent = dt.make_agent(obs_key, obs_shape, action_dim, cfg.model, cfg.loss, device)
    world_model, actor, value = agent.world_model, agent.actor, agent.value
    policy = dt.make_policy(world_model, actor, env.action_spec.to(device), cfg.loss.exploration_noise)
    with torch.no_grad():
        policy(env.fake_tensordict().to(device))

    updater = dt.DreamerUpdate(agent.model_loss, agent.actor_loss, agent.value_loss, cfg.optim,
                               cfg.run.max_nonfinite_updates,
                               autocast=lambda: autocast_context(cfg.run.precision, device))
    if cfg.run.compile:
        compile_networks(world_model, actor, value, backend=cfg.run.compile_backend, device=device)

    run_dir = make_run_dir(cfg, preset)
    buffer_dir = Path(cfg.run.buffer_dir or run_dir / "replay")
    row_bytes = int(np.prod(obs_shape)) * (1 if cfg.env.from_pixels else 4) + 8 * action_dim + 32
    check_disk_space(buffer_dir, s.buffer_capacity, row_bytes, copies=2 + cfg.run.checkpoints_kept)
    buffer = dt.make_replay_buffer(s.buffer_capacity, s.batch_size, s.seq_len, scratch_dir=str(buffer_dir),
                                   device=device)
    loggers = [CSVLogger(exp_name="", log_dir=str(run_dir / "logs"))]
    if cfg.run.tensorboard:
        loggers.append(TensorboardLogger(exp_name="", log_dir=str(run_dir / "tensorboard")))
    if cfg.run.wandb_project:
        from torchrl.record.loggers import WandbLogger

        loggers.append(WandbLogger(exp_name=run_dir.name, project=cfg.run.wandb_project, save_dir=str(run_dir)))
    videos = run_dir / "videos"

    def log(metrics: dict, step: int) -> None:
        for name, value_ in metrics.items():
            for logger in loggers:
                logger.log_scalar(name, float(value_), step=step)

    run_parts = dict(modules={"world_model": world_model, "actor": actor, "value": value}, updater=updater,
                     buffer=buffer, envs={"train": env, "eval": eval_env})
    c = {"env_steps": 0, "updates": 0, "episodes": 0, "traj_offset": 0, "pending_updates": 0, "eval_due": False,
         "evals": [], "physics_errors": 0}
    if cfg.run.resume:
        c = dt.restore_run(cfg.run.resume, **run_parts, map_location=device)
    checkpoints = run_dir / "checkpoints"
    last_eval = c["evals"][-1][1] if c["evals"] else float("nan")
    start, start_steps = time.perf_counter(), c["env_steps"]
    bar = tqdm(total=s.total_env_steps, initial=c["env_steps"], unit="env step", disable=not cfg.run.progress,
               dynamic_ncols=True)

    with dt.Preemption() as preempt:
        stop = lambda: preempt.requested is not None  # noqa: E731

        def show_progress(**extra) -> None:
            bar.set_postfix(phase="prefill" if c["env_steps"] < s.prefill_env_steps else "train",
                            updates=c["updates"], eval_return=f"{last_eval:.1f}", **extra)

        clamped = {"streak": 0}

        def warn_if_prior_untrained(is_clamped: float, kl: float) -> None:
            """Warn once when the KL has sat below the free nats for 10 training phases in a row."""
            clamped["streak"] = clamped["streak"] + 1 if is_clamped else 0
            if clamped["streak"] == 10:
                tqdm.write(f"warning: the batch-mean KL ({kl:.2f} nats) has stayed below free_nats "
                           f"({cfg.loss.free_nats}) for 10 training phases, so the prior gets no gradient and "
                           "imagination runs on an untrained prior; try a lower --loss.free-nats (the state preset uses 0)")

        def run_due_work() -> None:
            nonlocal last_eval
            metrics = None
            while c["pending_updates"] > 0 and not stop():
                metrics = updater.update(buffer.sample())
                c["updates"] += 1
                c["pending_updates"] -= 1
            if metrics is not None:
                log({**metrics, "train/updates": c["updates"]}, c["env_steps"])
                warn_if_prior_untrained(float(metrics["loss/kl_clamped"]), float(metrics["loss/kl"]))
            show_progress()
            if c["eval_due"] and not stop():
                bar.set_postfix_str(f"evaluating ({s.eval_episodes} noise-free episodes)")
                result = evaluate(eval_env, policy, s.eval_episodes, stop)
                if result is not None:
                    (last_eval, frames), c["eval_due"], step = result, False, c["env_steps"]
                    c["evals"].append((step, last_eval))
                    write_video(frames, videos / f"eval_{step:010d}")
                    log_video(loggers, "eval/video", frames, step)
                    log({"eval/return": last_eval, **show_world_model(world_model, buffer, obs_key, videos,
                                                                       loggers, step)}, step)

        def checkpoint() -> Path:
            path = dt.save_run(checkpoints / f"{c['env_steps']:010d}", **run_parts, counters=c,
                               config=to_dict(cfg), preset=preset)
            dt.prune_checkpoints(checkpoints, cfg.run.checkpoints_kept)
            return path

        ckpt = cfg.run.resume
        while c["env_steps"] < s.total_env_steps:
            run_due_work()  # left over from a preempted segment
            if stop():
                ckpt = checkpoint()
                break
            segment_end = min((c["env_steps"] // cfg.run.checkpoint_every + 1) * cfg.run.checkpoint_every,
                              s.total_env_steps)
            collector = Collector(
                env, policy, frames_per_batch=s.train_every // a, total_frames=(segment_end - c["env_steps"]) // a,
                init_random_frames=max(0, s.prefill_env_steps - c["env_steps"]) // a, policy_device=device,
                env_device="cpu", storing_device="cpu", exploration_type=ExplorationType.RANDOM,
            )
            max_traj = c["traj_offset"] - 1
            for data in collector:
                data["collector", "traj_ids"] += c["traj_offset"]
                max_traj = max(max_traj, int(data["collector", "traj_ids"].max()))
                buffer.extend(data)
                new_steps = data.numel() * a
                c["env_steps"] += new_steps
                finished = data["next", "done"].squeeze(-1)
                for ret in data["next", "episode_reward"][finished].flatten().tolist():
                    log({"train/episode_return": ret}, c["env_steps"])
                c["episodes"] += int(finished.sum())
                if c["env_steps"] >= s.prefill_env_steps:
                    c["pending_updates"] += s.updates_per_train
                crossed = c["env_steps"] // s.eval_every > (c["env_steps"] - new_steps) // s.eval_every
                c["eval_due"] = c["eval_due"] or crossed or c["env_steps"] >= s.total_env_steps
                run_due_work()
                c["physics_errors"] = env.base_env.physics_errors
                elapsed = time.perf_counter() - start
                rate = (c["env_steps"] - start_steps) / elapsed
                log({"time/env_steps_per_s": rate, "time/updates_per_s": c["updates"] / elapsed,
                     "train/episodes": c["episodes"], "train/physics_errors": c["physics_errors"]}, c["env_steps"])
                bar.update(new_steps)
                show_progress(steps_per_s=f"{rate:.0f}")
                if stop():
                    break
            collector.shutdown(close_env=False)
            c["traj_offset"] = max_traj + 1
            ckpt = checkpoint()
            if stop() or (cfg.run.stop_at_env_steps and c["env_steps"] >= cfg.run.stop_at_env_steps):
                break
    bar.close()
    if preempt.requested is not None:
        print(f"preempted: checkpoint at {c['env_steps']} env steps in {ckpt}; resume with --resume {run_dir}")
        raise SystemExit(preempt.exit_code)

    summary = {"run_dir": str(run_dir), "checkpoint": str(ckpt), "env_steps": c["env_steps"],
               "updates": c["updates"], "skipped_updates": updater.skipped, "final_eval_return": last_eval,
               "evaluations": c["evals"], "wall_clock_s": round(time.perf_counter() - start, 1)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done: {c['env_steps']} env steps, {c['updates']} updates, final eval return {last_eval:.1f}, "
          f"{summary['wall_clock_s']} s\n  run directory: {run_dir}\n  checkpoint: {ckpt}\n  videos: {videos}\n"
          f"  metrics: {run_dir / 'logs'}; plots: python recipes/plot_runs.py {run_dir} --out {run_dir / 'plots'}")
    return summary


if __name__ == "__main__":
    main()
