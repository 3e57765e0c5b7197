"""Evaluate a trained Dreamer (or PlaNet) checkpoint: noise-free episodes, their return, and videos.

    python recipes/evaluate.py --checkpoint runs/RUN --episodes 10           # the run's newest checkpoint
    python recipes/evaluate.py --checkpoint runs/RUN/checkpoints/0000060000 --episodes 1 --video_dir docs/

Rebuilds the env, world model and actor from the config stored in the checkpoint (tensors loaded with
``torch.load(weights_only=True)``: no pickled code runs), prints ``return: mean ± std over N episodes``
and the actor's pre-tanh mean and std over the visited states (saturation check), and writes ``episode_<i>.mp4``/``.gif``; for pixel models also the open-loop imagination strip
(``open_loop.png``/``.mp4``/``.gif``: 5 observed frames, then the prior alone with the recorded actions).
Runs on the CPU by default, whatever device trained the checkpoint.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import keys  # noqa: E402
from dreamer_trl.config import DreamerConfig, from_dict  # noqa: E402
from dreamer_trl.report.visualize import open_loop, real_sequences, record_episode, write_open_loop, write_video  # noqa: E402
from dreamer_trl.run.checkpoint import MANIFEST, CheckpointError, checkpoint_dirs  # noqa: E402
from dreamer_trl.builders.trainer import build  # noqa: E402

OPEN_LOOP_CONTEXT, OPEN_LOOP_LENGTH = 5, 50  # Dreamer Fig. 5: observe 5 frames, predict 45


def find_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint, a ``checkpoints/`` directory or a run directory (newest)."""
    if not path.is_dir():
        raise SystemExit(f"error: checkpoint directory {path} does not exist")
    if (path / "meta.json").exists() or (path / MANIFEST).exists():
        return path
    for candidate in (path, path / "checkpoints"):
        found = checkpoint_dirs(candidate)
        if found:
            return found[-1]
    raise SystemExit(f"error: no checkpoint in {path} (expected meta.json, or checkpoints/STEP/ below it)")


def load(path: Path, device: torch.device) -> tuple[Path, DreamerConfig, dict]:
    """(checkpoint dir, config, state); a missing, incomplete or damaged checkpoint exits with an error."""
    checkpoint = find_checkpoint(path)
    try:
        state, meta = dt.load_checkpoint(checkpoint, map_location=device)
    except (FileNotFoundError, CheckpointError) as err:
        raise SystemExit(f"error: {err}") from None
    if "config" not in meta:
        raise SystemExit(f"error: checkpoint {checkpoint} is incomplete: config missing")
    cfg = from_dict(meta["config"])
    needed = ("world_model",) if cfg.behavior.kind == "planner" else ("world_model", "actor")  # PlaNet: no actor
    missing = [k for k in needed if k not in state]
    if missing:
        raise SystemExit(f"error: checkpoint {checkpoint} is incomplete: {', '.join(missing)} missing")
    return checkpoint, cfg, state


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory (holding config.json) above a checkpoint, else the checkpoint's parent."""
    for parent in checkpoint.resolve().parents:
        if (parent / "config.json").is_file():
            return parent
    return checkpoint.resolve().parent


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory, or a run directory (its newest checkpoint)")
    parser.add_argument("--episodes", type=int, default=10, help="noise-free episodes to run")
    parser.add_argument("--video_dir", default="", help="where videos go (default: RUN_DIR/eval)")
    parser.add_argument("--video_size", type=int, default=64, help="video frame side in pixels (rendered)")
    parser.add_argument("--videos", type=int, default=1, help="episodes to write as video (0: none)")
    parser.add_argument("--seed", type=int, default=None, help="env seed (default: the run's seed + 10000, "
                        "as the recipe's evaluation env)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    checkpoint, cfg, state = load(Path(args.checkpoint), device)
    seed = cfg.run.seed + 10_000 if args.seed is None else args.seed
    torch.manual_seed(seed)

    env = dt.make_env(cfg.env, cfg.model, seed)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    agent, policy, _ = build(cfg, env, device)  # as the training recipe builds them; the updater goes unused
    world_model, actor = agent.world_model, agent.actor
    world_model.load_state_dict(state["world_model"])
    world_model.eval()
    dist, hook = [], None
    if actor is not None:  # None: a planning agent (PlaNet), which acts by CEM on the world model alone
        actor.load_state_dict(state["actor"])
        actor.eval()
        # The actor's pre-tanh Gaussian on every visited state: a mean at the bound of 5 with a tiny std is a
        # saturated actor, whose gradient has all but vanished (benchmarks/RESULTS.md, "Learning on CPU").
        actor_net = actor.module.net
        hook = actor_net.net.register_forward_hook(lambda m, i, out: dist.append(actor_net.squash(out.detach())))

    video_dir = Path(args.video_dir) if args.video_dir else run_dir_of(checkpoint) / "eval"
    returns, videos = [], []
    for i in range(args.episodes):
        ret, frames = record_episode(env, policy, video_size=args.video_size)
        returns.append(ret)
        print(f"episode {i}: return {ret:.1f} ({len(frames) - 1} agent steps)")
        if i < args.videos:
            videos += write_video(frames, video_dir / f"episode_{i}")
    if hook is not None:
        hook.remove()
    if obs_key == keys.PIXELS and world_model.decoder is not None:
        length = min(OPEN_LOOP_LENGTH, cfg.env.episode_frames // cfg.env.action_repeat)
        out = open_loop(world_model, real_sequences(env, policy, batch_size=4, length=length), OPEN_LOOP_CONTEXT)
        videos += write_open_loop(out, video_dir / "open_loop")
        print("open-loop MSE per imagined step:", " ".join(f"{v:.4f}" for v in out["mse_per_step"].tolist()))
    actor_mean = actor_std = []
    if dist:
        q = torch.tensor([0.05, 0.5, 0.95])
        actor_mean = torch.cat([m.reshape(-1) for m, _ in dist]).quantile(q).tolist()
        actor_std = torch.cat([s.reshape(-1) for _, s in dist]).quantile(q).tolist()
        print("actor pre-tanh mean, 5/50/95%: " + " / ".join(f"{v:.3f}" for v in actor_mean)
              + f" (bound {actor_net.mean_scale:g}); std: " + " / ".join(f"{v:.4f}" for v in actor_std))
    mean, std = float(np.mean(returns)), float(np.std(returns))
    print(f"return: {mean:.1f} ± {std:.1f} over {len(returns)} episodes")
    for path in videos:
        print(path)
    return {"returns": returns, "mean": mean, "std": std, "videos": [str(p) for p in videos],
            "actor_mean_quantiles": actor_mean, "actor_std_quantiles": actor_std}


if __name__ == "__main__":
    main()
