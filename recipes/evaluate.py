"""Evaluate a trained Dreamer (V1, V2, V3) or PlaNet checkpoint: noise-free episodes, their return, and videos.

    python recipes/evaluate.py --checkpoint runs/RUN --episodes 10           # the run's newest checkpoint
    python recipes/evaluate.py --checkpoint runs/RUN/checkpoints/0000060000 --episodes 1 --video_dir docs/

Rebuilds the env, world model and behaviour from the config stored in the checkpoint (tensors loaded with
``torch.load(weights_only=True)``: no pickled code runs; checkpoints of an older format are migrated with
:func:`~dreamer_trl.run.state.migrate_state`, as resuming does), prints ``return: mean ± std over N episodes``,
and writes ``episode_<i>.mp4``/``.gif``; for pixel models also the open-loop imagination strip
(``open_loop.png``/``.mp4``/``.gif``: 5 observed frames, then the prior alone with the recorded actions).

Actor diagnostics (a saturation check): the latent states ("state", "belief") the policy visits during the
episodes are recorded, the actor's distribution ``actor.module.dist(state, belief)`` is evaluated on them, and the
5/50/95% quantiles of its location and scale (over states and action dims) are printed:

- Dreamer V1 (``TanhNormal``): the pre-tanh Gaussian's mean, within +-``actor_mean_scale`` (5), and std; a mean
  at the bound with a tiny std is a saturated actor, whose gradient has all but vanished.
- DreamerV3 (``BoundedNormal``): the mean of N, tanh-squashed into [-1, 1], and the std, in
  [``actor_min_std``, ``actor_max_std``].
- DreamerV2 (``TruncatedNormal``): the truncated normal's loc, in [-1, 1], and scale, in
  [``actor_min_std``, 2 + ``actor_min_std``].
- one-hot actors (``OneHotCategorical``, discrete actions): the largest action probability and the entropy (nats).

PlaNet (``behavior.kind planner``) has no actor: it plans by CEM on the world model, and the diagnostics are
skipped with a line saying so. Runs on the CPU by default, whatever device trained the checkpoint.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import keys  # noqa: E402
from dreamer_trl.behavior.actors import (  # noqa: E402
    BoundedNormal,
    OneHotCategorical,
    TanhNormal,  # noqa: E402
)
from dreamer_trl.builders.trainer import build  # noqa: E402
from dreamer_trl.config import DreamerConfig, from_dict  # noqa: E402
from dreamer_trl.config.legacy import migrate_config  # noqa: E402
from dreamer_trl.model.trunc_normal import TruncatedNormal  # noqa: E402
from dreamer_trl.report.visualize import open_loop, real_sequences, record_episode, write_open_loop, write_video  # noqa: E402
from dreamer_trl.run.checkpoint import MANIFEST, CheckpointError, checkpoint_dirs  # noqa: E402
from dreamer_trl.run.state import migrate_state  # noqa: E402

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
    try:
        fmt = meta.get("format")
        cfg = from_dict(migrate_config(meta["config"], fmt))
        state = migrate_state(state, fmt, cfg)  # older formats: today's parameter names
    except ValueError as err:
        raise SystemExit(f"error: checkpoint {checkpoint}: {err}") from None
    needed = ("world_model",) if cfg.behavior.kind == "planner" else ("world_model", "actor")  # PlaNet: no actor
    missing = [k for k in needed if k not in state]
    if missing:
        raise SystemExit(f"error: checkpoint {checkpoint} is incomplete: {', '.join(missing)} missing")
    return checkpoint, cfg, state


class VisitedStates(nn.Module):
    """The acting policy, keeping the latent ("state", "belief") it filtered at each step (what the actor saw)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy, self.states, self.beliefs = policy, [], []

    def forward(self, tensordict):
        tensordict = self.policy(tensordict)
        state, belief = tensordict.get(keys.STATE), tensordict.get(keys.BELIEF)
        self.states.append(state.detach().reshape(-1, state.shape[-1]))  # [1, S] per step of a single env
        self.beliefs.append(belief.detach().reshape(-1, belief.shape[-1]))
        return tensordict


def actor_diagnostics(behavior: nn.Module, cfg, state: torch.Tensor, belief: torch.Tensor) -> dict:
    """The actor's distribution on visited latents ``[N, S]``, ``[N, D]``: its name, and the location and scale
    (what they are, and their values over states and action dims) that tell a saturated or collapsed actor."""
    with torch.no_grad():
        dist = behavior.dist(state, belief)
    name = type(dist).__name__
    if isinstance(dist, OneHotCategorical):
        probs = dist.logits.exp()
        return {"dist": name, "loc": probs.max(-1).values, "scale": dist.entropy(),
                "loc_name": "largest action probability", "scale_name": "entropy (nats)",
                "loc_range": f"in [1/A, 1], A = {probs.shape[-1]}",
                "scale_range": f"in [0, {np.log(probs.shape[-1]):.3f}]"}
    if isinstance(dist, TanhNormal):
        bound = cfg.behavior.actor.mean_scale
        loc_name, scale_name = "pre-tanh mean", "pre-tanh std"
        loc_range = f"bound {bound:g}" if bound > 0 else "unbounded (actor_mean_scale 0)"
        scale_range = "> 0"
    elif isinstance(dist, BoundedNormal):
        loc_name, scale_name, loc_range = "mean of N", "std", "in [-1, 1]"
        scale_range = f"in [{behavior.min_std:g}, {behavior.max_std:g}]"
    elif isinstance(dist, TruncatedNormal):
        loc_name, scale_name, loc_range = "truncated-normal loc", "scale", f"in [{dist.low:g}, {dist.high:g}]"
        scale_range = f"in [{behavior.min_std:g}, {2 + behavior.min_std:g}]"
    else:  # another distribution with loc and scale
        loc_name, scale_name, loc_range, scale_range = "loc", "scale", "", ""
    return {"dist": name, "loc": dist.loc, "scale": dist.scale, "loc_name": loc_name, "scale_name": scale_name,
            "loc_range": loc_range, "scale_range": scale_range}


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

    env = dt.make_env(cfg, seed)
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    agent, policy, _ = build(cfg, env, device)  # as the training recipe builds them; the updater goes unused
    world_model, actor = agent.world_model, agent.actor
    world_model.load_state_dict(state["world_model"])
    world_model.eval()
    if actor is not None:  # None: a planning agent (PlaNet), which acts by CEM on the world model alone
        actor.load_state_dict(state["actor"])
        actor.eval()
    visited = VisitedStates(policy)

    video_dir = Path(args.video_dir) if args.video_dir else run_dir_of(checkpoint) / "eval"
    returns, videos = [], []
    for i in range(args.episodes):
        before = len(visited.states)  # one row per agent step
        ret, frames = record_episode(env, visited, video_size=args.video_size if i < args.videos else 0)
        returns.append(ret)
        print(f"episode {i}: return {ret:.1f} ({len(visited.states) - before} agent steps)")
        if i < args.videos:
            videos += write_video(frames, video_dir / f"episode_{i}")
    if obs_key == keys.PIXELS and world_model.decoder is not None:
        length = min(OPEN_LOOP_LENGTH, cfg.env.episode_frames // cfg.env.action_repeat)
        out = open_loop(world_model, real_sequences(env, policy, batch_size=4, length=length), OPEN_LOOP_CONTEXT)
        videos += write_open_loop(out, video_dir / "open_loop")
        print("open-loop MSE per imagined step:", " ".join(f"{v:.4f}" for v in out["mse_per_step"].tolist()))
    actor_mean = actor_std = []
    actor_dist = None
    if actor is None:
        print(f"actor diagnostics: skipped, no actor (behavior.kind {cfg.behavior.kind}: the agent acts by CEM "
              "planning on the world model, as PlaNet)")
    elif visited.states:
        states, beliefs = torch.cat(visited.states), torch.cat(visited.beliefs)
        diag = actor_diagnostics(actor.module, cfg, states, beliefs)
        q = torch.tensor([0.05, 0.5, 0.95])
        actor_dist = diag["dist"]
        actor_mean = diag["loc"].reshape(-1).float().cpu().quantile(q).tolist()
        actor_std = diag["scale"].reshape(-1).float().cpu().quantile(q).tolist()
        print(f"actor {actor_dist} over {states.shape[0]} visited states, 5/50/95%: "
              f"{diag['loc_name']} " + " / ".join(f"{v:.3f}" for v in actor_mean) + f" ({diag['loc_range']}); "
              f"{diag['scale_name']} " + " / ".join(f"{v:.4f}" for v in actor_std) + f" ({diag['scale_range']})")
    mean, std = float(np.mean(returns)), float(np.std(returns))
    print(f"return: {mean:.1f} ± {std:.1f} over {len(returns)} episodes")
    for path in videos:
        print(path)
    return {"returns": returns, "mean": mean, "std": std, "videos": [str(p) for p in videos],
            "actor_dist": actor_dist, "actor_mean_quantiles": actor_mean, "actor_std_quantiles": actor_std}


if __name__ == "__main__":
    main()
