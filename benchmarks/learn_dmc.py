"""Learning on CPU: evaluation return against env steps, dreamer_trl and TorchRL's Dreamer at the same settings.

    python benchmarks/learn_dmc.py --impl ours    --task cartpole_swingup --env_steps 60000 --seed 0 --out runs/learn/ours-swingup-s0
    python benchmarks/learn_dmc.py --impl torchrl --task cartpole_swingup --env_steps 60000 --seed 0 --out runs/learn/trl-swingup-s0
    python benchmarks/learn_dmc.py --impl ours --preset planet_state --task cartpole_balance --env_steps 60000 --seed 0 --out runs/learn/planet-balance-s0
    python benchmarks/learn_dmc.py --plot runs/learn/* --png benchmarks/learn_cartpole.png

``--preset planet_state`` runs PlaNet (CEM planning, world model only) with the same world model and batch.
Settings are the ``state`` preset (proprioceptive observations, model 16/128/128, MLPs 200, batch 8x32,
prefill 5000, 100 updates per 1000 env steps, noise-free evaluation every 10k env steps); any config
field can be overridden after the script's own flags, as in the recipe (``--schedule.batch-size 16
--run.threads 1``). The script's ``--task``, ``--env_steps`` and ``--seed`` become ``--env.task``,
``--schedule.total-env-steps`` and ``--run.seed``.

- ``ours`` runs ``recipes/dreamer_dmc.py``'s ``main`` (loaded with importlib) and reads its evaluations.
- ``torchrl`` trains TorchRL's Dreamer V1 (``benchmarks/torchrl_dreamer.py``) on the same env
  (``dreamer_trl.make_dmc_env``, state observations), with the same schedule, sizes, learning rates and
  loss hyperparameters. Acting uses TorchRL's recipe policy wiring (encoder -> RSSMPosterior -> actor ->
  RSSMPrior for the next belief, AdditiveGaussianModule noise 0.3); evaluation is noise-free (actor mode).
  Its free nats stay at its recipe's 3 (``--torchrl_free_nats``): TorchRL clamps each element's KL, so
  its prior keeps learning from the elements above the threshold, whereas our batch-mean clamp (the
  official code's) at 3 would switch the prior's training off at this size; the state preset uses 0.

- ``torchrl_v3`` trains TorchRL's DreamerV3 (``benchmarks/torchrl_dreamer_v3.py``, ``run_torchrl_v3``) on the
  same env from state, at ``--torchrl_v3_size`` (size1m) and ``--train_ratio`` (1024) with every other value
  official; it reads the task, action repeat, budget, batch, sequence length, prefill and evaluation settings
  from the config. The official dmc_proprio settings: ``--env.action-repeat 1 --schedule.batch-size 16
  --schedule.seq-len 64 --schedule.prefill-env-steps 1000 --schedule.eval-episodes 10`` (updates start at
  1040 steps, one sampled window of 16 x 65; official: 1024).

``--resume`` (ours) continues ``OUT/run`` from its latest checkpoint: stop a long run with SIGTERM (it
checkpoints first) and call the same command with ``--resume`` in the next session.

All write ``OUT/curve.csv`` (``env_steps,eval_return``) and ``OUT/summary.json``. Env steps are frames
after action repeat.
"""
from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule, TensorDictSequential  # noqa: E402
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp  # noqa: E402
from torchrl.modules import AdditiveGaussianModule  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dreamer_trl as dt  # noqa: E402
from dreamer_trl.config import DreamerConfig  # noqa: E402
from dreamer_trl.run.preflight import parse_args  # noqa: E402

RECIPE = HERE.parent / "recipes" / "dreamer_dmc.py"


def write_curve(out: Path, evaluations: list[tuple[int, float]], summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "eval_return"])
        w.writerows(evaluations)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def run_ours(argv: list[str], out: Path, resume: bool = False) -> list[tuple[int, float]]:
    """The recipe in ``OUT/run``; ``resume``: continue ``OUT/run`` from its latest checkpoint (a run stopped by
    SIGTERM checkpoints first), whose evaluations come back whole."""
    spec = importlib.util.spec_from_file_location("dreamer_dmc", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    if resume:
        summary = recipe.main(["--resume", str(out / "run"), "--run.no-progress"])
    else:
        summary = recipe.main([*argv, "--run.run-dir", str(out), "--run.run-name", "run", "--run.no-progress",
                               "--run.no-tensorboard"])
    return [(int(s), float(r)) for s, r in summary["evaluations"]]


def make_torchrl_policy(trl, action_spec, noise: float) -> tuple[TensorDictSequential, TensorDictSequential]:
    """The recipe's real-env policy (``_dreamer_make_actors``' actor_real), and the same with exploration noise.

    Reads "observation" ``[O, 1, 1]``, "state", "belief"; writes "state" (posterior s_t), "action",
    "next_belief" (h_{t+1} from the prior)."""
    p = trl.parts
    actor_real = TensorDictSequential(
        TensorDictModule(p["encoder"], in_keys=["observation"], out_keys=["encoded_latents"]),
        TensorDictModule(p["posterior"], in_keys=["belief", "encoded_latents"], out_keys=["_", "_", "state"]),
        trl.actor,
        TensorDictModule(p["prior"], in_keys=["state", "belief", "action"], out_keys=["_", "_", "_", "next_belief"]),
    )
    noisy = TensorDictSequential(actor_real, AdditiveGaussianModule(
        spec=action_spec, sigma_init=1.0, sigma_end=1.0, annealing_num_steps=1, mean=0.0, std=noise))
    return actor_real, noisy


def run_torchrl(cfg: DreamerConfig, out: Path, free_nats: float) -> list[tuple[int, float]]:
    from torchrl_dreamer import make_replay_buffer, make_torchrl_dreamer

    s, a, m = cfg.schedule, cfg.env.action_repeat, cfg.world_model
    domain, task = dt.split_task(cfg.env.task)
    make_env = lambda seed: dt.make_dmc_env(domain, task, from_pixels=False, action_repeat=a,
                                            episode_frames=cfg.env.episode_frames, seed=seed)
    env, eval_env = make_env(cfg.run.seed), make_env(cfg.run.seed + 10_000)
    obs_dim, action_dim = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    cfg = copy.deepcopy(cfg)
    cfg.world_model.loss.free_nats = free_nats
    trl = make_torchrl_dreamer("observation", obs_dim, action_dim, cfg)
    policy, noisy_policy = make_torchrl_policy(trl, env.action_spec, cfg.behavior.exploration.noise)
    buffer = make_replay_buffer(s.buffer_capacity, s.batch_size, s.seq_len, scratch_dir=str(out / "replay"))

    def start(env_):
        td = env_.reset()
        td["state"], td["belief"] = torch.zeros(m.latent.state_dim), torch.zeros(m.rssm.belief_dim)
        return td

    def act(td, module) -> TensorDict:
        obs = td.select("state", "belief")
        obs["observation"] = td["observation"][..., None, None]
        with torch.no_grad():
            module(obs)
        td["state"], td["action"] = obs["state"], obs["action"]
        return obs["next_belief"]

    def evaluate() -> float:
        td, total = start(eval_env), 0.0
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            while True:
                next_belief = act(td, policy)
                td = eval_env.step(td)
                total += td["next", "reward"].item()
                if td["next", "done"].item():
                    return total
                td = step_mdp(td)
                td["belief"] = next_belief

    evaluations, rows = [], []
    env_steps = episode = 0
    td = start(env)
    while env_steps < s.total_env_steps:
        if env_steps < s.prefill_env_steps:
            td["action"] = env.action_spec.rand()
            next_belief = td["belief"]
        else:
            with set_exploration_type(ExplorationType.RANDOM):
                next_belief = act(td, noisy_policy)
        td = env.step(td)
        rows.append(TensorDict({
            "observation": td["observation"][..., None, None], "state": td["state"], "belief": td["belief"],
            "action": td["action"], "episode": torch.tensor(episode),
            "next": {"observation": td["next", "observation"][..., None, None], "reward": td["next", "reward"],
                     "done": td["next", "done"], "terminated": td["next", "terminated"]},
        }, []))
        env_steps += a
        if td["next", "done"].item():
            episode += 1
            td = start(env)
        else:
            td = step_mdp(td)
            td["belief"] = next_belief
        if env_steps % s.train_every == 0 or env_steps >= s.total_env_steps:
            buffer.extend(torch.stack(rows))
            rows = []
            if env_steps >= s.prefill_env_steps:
                for _ in range(s.updates_per_train):
                    trl.update(buffer.sample().reshape(-1, s.seq_len))
            if env_steps % s.eval_every == 0 or env_steps >= s.total_env_steps:
                evaluations.append((env_steps, evaluate()))
                print(f"torchrl: {env_steps} env steps, eval return {evaluations[-1][1]:.1f}", flush=True)
    return evaluations


def variant_flags(config_argv: list[str]) -> list[str]:
    """The model, loss, optimizer and behaviour flags and the action repeat of a run's command line (what makes
    it a variant), e.g. ["behavior.value-estimate=reward"], led by the preset when it is not ``state`` (e.g.
    "planet_state"); the task, budget, seed and run-time flags are left out."""
    out, i = [], 0
    while i < len(config_argv):
        arg = config_argv[i]
        if arg == "--preset" and i + 1 < len(config_argv):
            out += [] if config_argv[i + 1] == "state" else [config_argv[i + 1]]
            i += 2
        elif arg.startswith(("--nets.", "--world-model.", "--optim.", "--behavior.", "--env.action-repeat",
                             "--loss.", "--model.")):  # the last two: format-2 names, still accepted
            has_value = i + 1 < len(config_argv) and not config_argv[i + 1].startswith("--")
            out.append(f"{arg[2:]}={config_argv[i + 1]}" if has_value else arg[2:])
            i += 2 if has_value else 1
        else:
            i += 1
    return out


def plot(dirs: list[str], png: str) -> None:
    try:
        import matplotlib
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for d in (d for d in dirs if Path(d).is_dir()):  # a glob like learning/* also matches the PNG
        if not (Path(d) / "curve.csv").is_file():
            sys.exit(f"{d} has no curve.csv (an unfinished run?)")
        rows = list(csv.DictReader(open(Path(d) / "curve.csv")))
        meta = json.loads((Path(d) / "summary.json").read_text()) if (Path(d) / "summary.json").exists() else {}
        label = "dreamer_trl" if meta.get("impl") == "ours" else meta.get("impl", "?")
        label = meta.get("label") or " ".join([label, *variant_flags(meta.get("config_argv", []))])
        runs.append((meta.get("task", Path(d).name), label, meta.get("seed", "?"),
                     [int(r["env_steps"]) for r in rows], [float(r["eval_return"]) for r in rows]))
    tasks = sorted({r[0] for r in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    labels = sorted({r[1] for r in runs}, key=lambda v: (v != "dreamer_trl", v))  # the plain one first
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
    colors, markers = {v: palette[i % len(palette)] for i, v in enumerate(labels)}, "osD^v"
    for ax, task in zip(axes[0], tasks):
        for _, label, seed, x, y in sorted(r for r in runs if r[0] == task):
            ax.plot(x, y, color=colors[label], marker=markers[int(seed) % len(markers)] if
                    str(seed).isdigit() else "o", label=f"{label} seed {seed}")
        ax.set_title(task)
        ax.set_xlabel("env steps (frames after action repeat)")
        ax.set_ylabel("noise-free evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--impl", choices=["ours", "torchrl", "torchrl_v3"])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--env_steps", type=int, default=60_000, help="env steps to train for")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory for curve.csv and summary.json")
    p.add_argument("--preset", default="state", help="starting configuration (default: state)")
    p.add_argument("--plot", nargs="+", metavar="DIR", help="plot these curve directories into --png")
    p.add_argument("--png", default="learn_curves.png")
    p.add_argument("--torchrl_free_nats", type=float, default=3.0,
                   help="TorchRL's free nats (its recipe's 3; it clamps each KL element, not the batch mean)")
    p.add_argument("--torchrl_v3_size", default="size1m", help="TorchRL V3's model size (torchrl_v3 only)")
    p.add_argument("--resume", action="store_true",
                   help="ours / torchrl_v3: continue OUT from its latest checkpoint (same flags as the first call)")
    p.add_argument("--train_ratio", type=float, default=1024.0,
                   help="replayed steps per policy step (torchrl_v3 only; official dmc_proprio: 1024)")
    args, overrides = p.parse_known_args(argv)
    if args.plot:
        plot(args.plot, args.png)
        return None
    if not (args.impl and args.out):
        p.error("--impl and --out are required to train")
    config_argv = ["--preset", args.preset, "--env.task", args.task, "--schedule.total-env-steps",
                   str(args.env_steps), "--run.seed", str(args.seed), *overrides]
    cfg, _ = parse_args(config_argv, description=__doc__)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    start = time.perf_counter()
    if args.impl == "torchrl_v3":
        from torchrl_dreamer_v3 import run_torchrl_v3

        evaluations = run_torchrl_v3(cfg, out, args.torchrl_v3_size, args.train_ratio, args.resume)
    else:
        if args.resume and args.impl != "ours":
            p.error("--resume is for --impl ours and torchrl_v3")
        evaluations = (run_ours(config_argv, out, args.resume) if args.impl == "ours"
                       else run_torchrl(cfg, out, args.torchrl_free_nats))
    summary = {"impl": args.impl, "task": args.task, "seed": args.seed, "env_steps": args.env_steps,
               "config_argv": config_argv, "evaluations": evaluations,
               **({"torchrl_free_nats": args.torchrl_free_nats} if args.impl == "torchrl" else {}),
               **({"size": args.torchrl_v3_size, "train_ratio": args.train_ratio} if args.impl == "torchrl_v3" else {}),
               "wall_clock_s": round(time.perf_counter() - start, 1)}
    if (out / "wall_clock_s").is_file():  # a resumed torchrl_v3 run: its wall-clock over all its processes
        summary["wall_clock_s"] = float((out / "wall_clock_s").read_text())
    write_curve(out, evaluations, summary)
    print(f"{args.impl}: {evaluations} in {summary['wall_clock_s']} s; wrote {out / 'curve.csv'}")
    return summary


if __name__ == "__main__":
    main()
