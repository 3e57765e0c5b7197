"""Typed configuration: the single source of truth for a run, with paper defaults.

Defaults are Dreamer V1's (Hafner et al. 2020, Appendix A and the official code; see
shared/reference/DREAMER.md). Presets are plain functions returning a config. Every field has a one-line
description (its ``help``), used by the recipe's ``--help``. Field names are unique across the
sub-configs so the command line can override any of them by name: ``--batch_size 16``.
"""
from __future__ import annotations

import argparse
import sys
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable


def _f(default, help: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class EnvConfig:
    """The DeepMind Control Suite task and how it is observed."""

    task: str = _f("cheetah_run", "DMC task as domain_task, e.g. walker_walk, cartpole_swingup")
    from_pixels: bool = _f(True, "observe 64x64 RGB pixels (paper); False: proprioceptive state vector")
    image_size: int = _f(64, "rendered image height and width")
    action_repeat: int = _f(2, "each action is repeated this many frames; rewards are summed")
    episode_frames: int = _f(1000, "frames per episode (time limit; the episode ends as truncated)")


@dataclass
class ModelConfig:
    """Network sizes (Dreamer V1, Hafner et al. 2020, Appendix A)."""

    state_dim: int = _f(30, "stochastic state s_t size")
    belief_dim: int = _f(200, "deterministic GRU belief h_t size")
    rssm_hidden: int = _f(200, "hidden width inside the RSSM")
    min_std: float = _f(0.1, "added to softplus(std) of prior and posterior")
    cnn_depth: int = _f(32, "channels of the first conv layer, doubled at each of the 4 layers")
    mlp_hidden: int = _f(400, "width of the reward, value, actor and vector-observation MLPs")
    reward_layers: int = _f(2, "hidden layers of the reward head")
    value_layers: int = _f(3, "hidden layers of the value head")
    actor_layers: int = _f(4, "hidden layers of the actor")
    obs_layers: int = _f(2, "hidden layers of the vector-observation encoder and decoder")


@dataclass
class LossConfig:
    """Objectives (Dreamer Eq. 6-8, 10)."""

    representation: str = _f("reconstruction", "world-model objective (Dreamer Sec. 4, Fig. 8): reconstruction, "
                             "contrastive (InfoNCE) or reward (reward and KL only, no observation model)")
    obs_scale: float = _f(1.0, "weight of the observation term (reconstruction or contrastive)")
    reward_scale: float = _f(1.0, "weight of the reward term of the world-model loss")
    kl_scale: float = _f(1.0, "weight of the KL term of the world-model loss")
    free_nats: float = _f(3.0, "the batch-mean KL is clamped from below at this many nats")
    horizon: int = _f(15, "imagination horizon H")
    gamma: float = _f(0.99, "discount")
    lmbda: float = _f(0.95, "lambda of the lambda-return V_lambda")
    value_estimate: str = _f("lambda", "value estimate the actor maximises (Dreamer Eq. 4-6): lambda (V_lambda), "
                             "nstep (V_N^k, k = value_steps) or reward (V_R: imagined rewards only, no value net)")
    value_steps: int = _f(5, "k of the k-step estimate V_N^k (value_estimate nstep)")
    exploration_noise: float = _f(0.3, "std of the Gaussian noise added to actions in the real env")


@dataclass
class OptimConfig:
    """Three Adam optimizers, one per objective."""

    model_lr: float = _f(6e-4, "world-model learning rate")
    actor_lr: float = _f(8e-5, "actor learning rate")
    value_lr: float = _f(8e-5, "value learning rate")
    adam_eps: float = _f(1e-7, "Adam epsilon")
    grad_clip: float = _f(100.0, "global-norm gradient clip, per optimizer")


@dataclass
class ScheduleConfig:
    """Data collection and update schedule; env steps are frames after action repeat."""

    total_env_steps: int = _f(1_000_000, "env steps (frames) to train for")
    prefill_env_steps: int = _f(5000, "env steps of uniform random actions before training")
    train_every: int = _f(1000, "env steps collected between training phases")
    updates_per_train: int = _f(100, "gradient updates per training phase (also once after prefill)")
    batch_size: int = _f(50, "sequences per batch")
    seq_len: int = _f(50, "steps per sequence")
    eval_every: int = _f(10_000, "env steps between noise-free evaluation episodes")
    eval_episodes: int = _f(1, "episodes per evaluation")
    buffer_capacity: int = _f(1_000_000, "replay capacity in agent steps (stored frames)")


@dataclass
class RunConfig:
    """Where and how the run executes."""

    seed: int = _f(0, "seed of torch, numpy and the environments")
    device: str = _f("auto", "cuda if available when 'auto', else the given torch device")
    run_dir: str = _f("runs", "parent directory of run directories")
    run_name: str = _f("", "run directory name; default: task-preset-seed-timestamp")
    buffer_dir: str = _f("", "directory of the memory-mapped replay buffer; default: inside the run dir")
    threads: int = _f(0, "torch CPU threads (0: torch's default)")
    progress: bool = _f(True, "show a progress bar")
    tensorboard: bool = _f(True, "also log to TensorBoard (CSV is always written)")
    wandb_project: str = _f("", "also log to this Weights & Biases project (needs wandb installed)")
    resume: str = _f("", "run directory (or checkpoint directory) to continue; its config is used")
    checkpoint_every: int = _f(100_000, "env steps between checkpoints (model, optimizers, RNG, replay)")
    checkpoints_kept: int = _f(2, "how many of the newest checkpoints to keep")
    stop_at_env_steps: int = _f(0, "end this process after the checkpoint at this many env steps (0: never)")
    max_nonfinite_updates: int = _f(10, "consecutive non-finite updates (all skipped) before the run stops")
    compile: bool = _f(False, "torch.compile the networks and RSSM steps (CUDA graphs on GPU); eager on failure")
    compile_backend: str = _f("inductor", "torch.compile backend (aot_eager: capture without code generation)")
    precision: str = _f("fp32", "fp32, or bf16: autocast of the loss forward passes (where the device has bf16)")
    max_physics_errors: int = _f(5, "MuJoCo physics errors tolerated within physics_error_window episodes")
    physics_error_window: int = _f(100, "episodes over which physics errors are counted")


@dataclass
class DreamerConfig:
    """A whole run: one sub-config per concern."""

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)


def paper() -> DreamerConfig:
    """Dreamer V1 from pixels, every default as in the paper (GPU work)."""
    return DreamerConfig()


def state() -> DreamerConfig:
    """Proprioceptive observations, smaller model and batch: learns cartpole_balance on 2 CPU cores.

    Finishes in about 15 minutes on 2 cores (60k env steps); cartpole_balance reached 446.5 and 410.6
    in two seeds (cartpole_swingup mostly stays at the constant push within 60k). Free nats 0 instead of
    the paper's 3: from proprioception the posterior needs only about 0.5 nats (measured), so with a
    threshold of 3 the batch-mean KL never reaches it and the prior, trained only by the KL term, would get
    no gradient (benchmarks/RESULTS.md, "Learning on CPU").
    """
    cfg = DreamerConfig()
    cfg.env = EnvConfig(task="cartpole_balance", from_pixels=False)
    cfg.model = ModelConfig(state_dim=16, belief_dim=128, rssm_hidden=128, mlp_hidden=200)
    cfg.loss = LossConfig(free_nats=0.0)
    cfg.schedule = ScheduleConfig(total_env_steps=60_000, prefill_env_steps=5000, batch_size=8, seq_len=32,
                                  eval_every=10_000, buffer_capacity=100_000)
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


PRESETS: dict[str, Callable[[], DreamerConfig]] = {"paper": paper, "state": state, "debug": debug}


def _fields(cfg: DreamerConfig) -> dict[str, tuple[Any, dataclasses.Field]]:
    """Flat map field name -> (owning sub-config, field)."""
    out = {}
    for group in dataclasses.fields(cfg):
        sub = getattr(cfg, group.name)
        for f in dataclasses.fields(sub):
            assert f.name not in out, f"duplicate config field {f.name}"
            out[f.name] = (sub, f)
    return out


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def set_field(cfg: DreamerConfig, name: str, value: Any) -> None:
    """Set one field by name, converting strings to the field's type; unknown names are refused."""
    fields = _fields(cfg)
    if name not in fields:
        close = difflib.get_close_matches(name, fields, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config field {name!r}{hint}")
    sub, f = fields[name]
    kind = {"int": int, "float": float, "bool": _parse_bool, "str": str}[f.type]
    if isinstance(value, str):
        try:
            value = kind(value.replace("_", "") if f.type in ("int", "float") else value)
        except ValueError:
            raise ValueError(f"config field {name!r} expects {f.type}, got {value!r}") from None
    elif f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif type(value).__name__ != f.type:
        raise ValueError(f"config field {name!r} expects {f.type}, got {type(value).__name__} {value!r}")
    setattr(sub, name, value)


def to_dict(cfg: DreamerConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> DreamerConfig:
    """Inverse of :func:`to_dict`; unknown groups or fields are refused by name."""
    cfg = DreamerConfig()
    for group, values in data.items():
        if not hasattr(cfg, group) or not dataclasses.is_dataclass(getattr(cfg, group)):
            raise ValueError(f"unknown config group {group!r}")
        for name, value in values.items():
            set_field(cfg, name, value)
    return cfg


REPRESENTATIONS = ("reconstruction", "contrastive", "reward")
VALUE_ESTIMATES = ("lambda", "nstep", "reward")

# Fields that may change when a run is resumed; any other difference is refused.
RESUMABLE = {"total_env_steps", "run_dir", "run_name", "resume", "device", "threads", "progress", "tensorboard",
             "wandb_project", "compile", "compile_backend", "precision",
             "checkpoint_every", "checkpoints_kept", "stop_at_env_steps", "max_nonfinite_updates",
             "max_physics_errors", "physics_error_window", "eval_every", "eval_episodes", "buffer_dir"}


def config_differences(saved: DreamerConfig, new: DreamerConfig) -> dict[str, tuple]:
    """{field: (saved value, new value)} for every field that differs."""
    a, b = _fields(saved), _fields(new)
    return {k: (getattr(a[k][0], k), getattr(b[k][0], k)) for k in a if getattr(a[k][0], k) != getattr(b[k][0], k)}


def validate(cfg: DreamerConfig) -> None:
    """Reject impossible values before any work starts, naming the field and the expected value."""
    s, e, l = cfg.schedule, cfg.env, cfg.loss
    checks = [
        (s.seq_len >= 2, "seq_len", ">= 2", s.seq_len),
        (s.batch_size >= 1, "batch_size", ">= 1", s.batch_size),
        (l.horizon >= 2, "horizon", ">= 2", l.horizon),
        (e.action_repeat >= 1, "action_repeat", ">= 1", e.action_repeat),
        (e.image_size == 64 or not e.from_pixels, "image_size", "64 for the pixel model", e.image_size),
        (e.episode_frames >= e.action_repeat * s.seq_len, "episode_frames",
         f">= action_repeat * seq_len = {e.action_repeat * s.seq_len} (an episode must fill a sequence)",
         e.episode_frames),
        (s.buffer_capacity >= s.batch_size * s.seq_len, "buffer_capacity",
         f">= batch_size * seq_len = {s.batch_size * s.seq_len}", s.buffer_capacity),
        (s.train_every >= e.action_repeat, "train_every", f">= action_repeat = {e.action_repeat}", s.train_every),
        (s.prefill_env_steps >= e.action_repeat * s.seq_len, "prefill_env_steps",
         f">= action_repeat * seq_len = {e.action_repeat * s.seq_len}", s.prefill_env_steps),
        (s.total_env_steps % s.train_every == 0, "total_env_steps", f"a multiple of train_every = {s.train_every}",
         s.total_env_steps),
        (s.prefill_env_steps % s.train_every == 0, "prefill_env_steps",
         f"a multiple of train_every = {s.train_every}", s.prefill_env_steps),
        (s.total_env_steps > s.prefill_env_steps, "total_env_steps", f"> prefill_env_steps = {s.prefill_env_steps}",
         s.total_env_steps),
        (0.0 <= l.gamma <= 1.0, "gamma", "in [0, 1]", l.gamma),
        (0.0 <= l.lmbda <= 1.0, "lmbda", "in [0, 1]", l.lmbda),
        (l.free_nats >= 0 and l.kl_scale >= 0, "free_nats/kl_scale", ">= 0", (l.free_nats, l.kl_scale)),
        (l.obs_scale >= 0 and l.reward_scale >= 0, "obs_scale/reward_scale", ">= 0", (l.obs_scale, l.reward_scale)),
        (l.representation in REPRESENTATIONS, "representation", " or ".join(REPRESENTATIONS), l.representation),
        (l.value_estimate in VALUE_ESTIMATES, "value_estimate", " or ".join(VALUE_ESTIMATES), l.value_estimate),
        (l.value_estimate != "nstep" or 1 <= l.value_steps <= l.horizon - 1, "value_steps", f"in [1, horizon - 1 = {l.horizon - 1}]", l.value_steps),
        (cfg.run.precision in ("fp32", "bf16"), "precision", "fp32 or bf16", cfg.run.precision),
        (cfg.run.device in ("auto", "cpu") or cfg.run.device.startswith(("cuda", "mps")), "device",
         "auto, cpu, cuda[:i] or mps", cfg.run.device),
    ]
    for ok, name, expected, got in checks:
        if not ok:
            raise ValueError(f"config field {name!r} must be {expected}, got {got!r}")
    if "_" not in e.task:
        raise ValueError(f"config field 'task' must be domain_task (e.g. cheetah_run), got {e.task!r}")
    from dreamer_trl.envs import split_task  # imports dm_control: only once the cheap checks passed

    split_task(e.task)
    r = cfg.run
    for name in ("checkpoint_every", "checkpoints_kept"):
        if getattr(r, name) < 1:
            raise ValueError(f"config field {name!r} must be >= 1, got {getattr(r, name)!r}")
    if r.checkpoint_every % s.train_every:
        raise ValueError(f"config field 'checkpoint_every' must be a multiple of train_every = {s.train_every}, "
                         f"got {r.checkpoint_every}")
    if r.stop_at_env_steps < 0 or r.max_nonfinite_updates < 0:
        raise ValueError("config fields 'stop_at_env_steps' and 'max_nonfinite_updates' must be >= 0")


def parse_args(argv: list[str] | None = None, description: str = "") -> tuple[DreamerConfig, str]:
    """``--preset NAME`` then ``--FIELD VALUE`` overrides; ``--help`` lists every field."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                        help="starting configuration (default: paper)")
    template = DreamerConfig()
    for group in dataclasses.fields(template):
        g = parser.add_argument_group(group.name, type(getattr(template, group.name)).__doc__)
        for f in dataclasses.fields(getattr(template, group.name)):
            g.add_argument(f"--{f.name}", metavar=f.type.upper(), default=argparse.SUPPRESS,
                           help=f"{f.metadata['help']} (paper: {f.default})")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        names = list(_fields(template))
        bad = unknown[0].lstrip("-").split("=")[0]
        close = difflib.get_close_matches(bad, names, n=3)
        parser.error(f"unknown config field {bad!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    overrides = {k: v for k, v in vars(args).items() if k != "preset"}
    preset = args.preset
    try:
        if overrides.get("resume"):
            given = sys.argv[1:] if argv is None else argv
            explicit = any(a == "--preset" or a.startswith("--preset=") for a in given)
            cfg, preset = _resumed_config(overrides, preset if explicit else None)
        else:
            cfg = PRESETS[preset]()
            for name, value in overrides.items():
                set_field(cfg, name, value)
        validate(cfg)
    except ValueError as err:
        parser.error(str(err))
    return cfg, preset


def _resumed_config(overrides: dict, preset: str | None) -> tuple[DreamerConfig, str]:
    """The saved config of the run to resume, with only the RESUMABLE fields overridden."""
    import json
    from pathlib import Path

    from dreamer_trl.checkpoint import checkpoint_dirs, verify_checkpoint

    path = Path(overrides["resume"])
    found = checkpoint_dirs(path / "checkpoints") if (path / "checkpoints").is_dir() else [verify_checkpoint(path)]
    if not found:
        raise ValueError(f"config field 'resume': no complete checkpoint under {path / 'checkpoints'}")
    meta = json.loads((found[-1] / "meta.json").read_text())
    saved = from_dict(meta["config"])
    cfg = from_dict(meta["config"])
    if preset is not None and preset != meta["preset"]:
        raise ValueError(f"resuming a run of preset {meta['preset']!r} with --preset {preset!r}")
    for name, value in overrides.items():
        set_field(cfg, name, value)
    bad = {k: v for k, v in config_differences(saved, cfg).items() if k not in RESUMABLE}
    if bad:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(bad.items()))
        raise ValueError(f"cannot resume {path} with a different config ({listed}); only "
                         f"{', '.join(sorted(RESUMABLE))} may change")
    cfg.run.resume = str(found[-1])
    return cfg, meta["preset"]
