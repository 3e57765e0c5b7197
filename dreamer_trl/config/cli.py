"""The command line: ``--preset NAME``, ``--resume RUN`` and ``--GROUP.FIELD VALUE`` overrides, through tyro.

    --preset state --schedule.batch-size 16 --loss.free-nats 0 --env.task walker_walk --env.no-from-pixels

``--preset`` is read first, so that ``--help`` shows every field at the chosen preset's value; so is
``--model.size``, whose widths are written into the fields (``sizes.apply_size``) before the other overrides.
A field that the chosen parts do not read is refused when it differs from its default (``reads.py``). Bad input
(unknown option, wrong type, impossible value) ends the process with exit code 2 and one message naming
the field and what it expects, before anything heavy is imported or built (docs/reliability.md P6, P10).
Checks that need the library (the DMC task exists, the checkpoint to resume is complete) are passed in
(``checks``, ``load_resumed``; see ``dreamer_trl.run.preflight``), so this package stays a leaf.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Callable, Literal, Sequence, get_args, get_origin

import tyro

from . import reads
from .presets import PRESETS, make_preset
from .schema import GROUPS, DreamerConfig, field_names, field_types, from_dict, get_field
from .sizes import apply_size

PresetName = Literal[tuple(PRESETS)]

# Fields that may change when a run is resumed (run-time only); any other difference is refused.
RESUMABLE = {"schedule.total_env_steps", "schedule.eval_every", "schedule.eval_episodes",
             *(f"run.{f.name}" for f in dataclasses.fields(DreamerConfig().run) if f.name != "seed")}


@dataclass
class CommandLine:
    """What the command line sets: the config, its starting preset and the run to resume."""

    config: Annotated[DreamerConfig, tyro.conf.arg(name="")]
    preset: PresetName = "paper"
    """starting configuration; the defaults shown below are this preset's"""
    resume: str = ""
    """run directory (or checkpoint) to continue with its saved config; only run-time fields may change"""


def config_differences(saved: DreamerConfig, new: DreamerConfig) -> dict[str, tuple]:
    """{``group.field``: (saved value, new value)} for every field that differs."""
    return {n: (get_field(saved, n), get_field(new, n)) for n in field_names(saved)
            if get_field(saved, n) != get_field(new, n)}


def validate(cfg: DreamerConfig) -> None:
    """Reject impossible values before any work starts, naming the field and the expected value."""
    s, e, l, r = cfg.schedule, cfg.env, cfg.loss, cfg.run
    for ok, name, got in ((e.action_repeat >= 1, "env.action_repeat", e.action_repeat),  # divisors of the checks below
                          (s.train_every >= 1, "schedule.train_every", s.train_every),
                          (e.num_envs >= 1, "env.num_envs", e.num_envs)):
        if not ok:
            raise ValueError(f"config field {name!r} must be >= 1, got {got!r}")
    checks = [
        (s.seq_len >= 2, "schedule.seq_len", ">= 2", s.seq_len),
        (s.batch_size >= 1, "schedule.batch_size", ">= 1", s.batch_size),
        (l.horizon >= 2, "loss.horizon", ">= 2", l.horizon),
        (cfg.model.actor_mean_scale >= 0, "model.actor_mean_scale", ">= 0 (0: unsquashed)", cfg.model.actor_mean_scale),
        (e.action_repeat >= 1, "env.action_repeat", ">= 1", e.action_repeat),
        (e.image_size == 64 or not e.from_pixels, "env.image_size", "64 for the pixel model", e.image_size),
        (e.episode_frames >= e.action_repeat * s.seq_len or s.replay_windows == "stream", "env.episode_frames",
         f">= action_repeat * seq_len = {e.action_repeat * s.seq_len} (an episode must fill a sequence; "
         "schedule.replay_windows stream lifts this)", e.episode_frames),
        (s.buffer_capacity >= s.batch_size * s.seq_len, "schedule.buffer_capacity",
         f">= batch_size * seq_len = {s.batch_size * s.seq_len}", s.buffer_capacity),
        (s.train_every >= e.action_repeat, "schedule.train_every", f">= action_repeat = {e.action_repeat}",
         s.train_every),
        (s.prefill_env_steps >= e.action_repeat * s.seq_len, "schedule.prefill_env_steps",
         f">= action_repeat * seq_len = {e.action_repeat * s.seq_len}", s.prefill_env_steps),
        (s.total_env_steps % s.train_every == 0, "schedule.total_env_steps",
         f"a multiple of train_every = {s.train_every}", s.total_env_steps),
        (s.prefill_env_steps % s.train_every == 0, "schedule.prefill_env_steps",
         f"a multiple of train_every = {s.train_every}", s.prefill_env_steps),
        (s.total_env_steps > s.prefill_env_steps, "schedule.total_env_steps",
         f"> prefill_env_steps = {s.prefill_env_steps}", s.total_env_steps),
        (0.0 <= l.gamma <= 1.0, "loss.gamma", "in [0, 1]", l.gamma),
        (0.0 <= l.lmbda <= 1.0, "loss.lmbda", "in [0, 1]", l.lmbda),
        (l.free_nats >= 0 and l.kl_scale >= 0, "loss.free_nats/kl_scale", ">= 0", (l.free_nats, l.kl_scale)),
        (l.obs_scale >= 0 and l.reward_scale >= 0, "loss.obs_scale/reward_scale", ">= 0",
         (l.obs_scale, l.reward_scale)),
        (not reads.is_read(cfg, "loss.value_steps") or 1 <= l.value_steps <= l.horizon - 1, "loss.value_steps",
         f"in [1, horizon - 1 = {l.horizon - 1}]", l.value_steps),
        ("_" in e.task, "env.task", "domain_task (e.g. cheetah_run)", e.task),
        (r.device in ("auto", "cpu") or r.device.startswith(("cuda", "mps")), "run.device",
         "auto, cpu, cuda[:i] or mps", r.device),
        (r.checkpoint_every >= 1, "run.checkpoint_every", ">= 1", r.checkpoint_every),
        (e.num_envs == 1 or e.num_envs > 1 and s.train_every % (e.action_repeat * e.num_envs) == 0, "env.num_envs",
         f">= 1 and dividing train_every / action_repeat = {s.train_every / e.action_repeat:g} (every env steps "
         "equally per batch, so the replay ratio stays exact)", e.num_envs),
        (r.checkpoints_kept >= 1, "run.checkpoints_kept", ">= 1", r.checkpoints_kept),
        (r.checkpoint_every % s.train_every == 0, "run.checkpoint_every",
         f"a multiple of train_every = {s.train_every}", r.checkpoint_every),
        (r.stop_at_env_steps >= 0, "run.stop_at_env_steps", ">= 0", r.stop_at_env_steps),
        (r.max_nonfinite_updates >= 0, "run.max_nonfinite_updates", ">= 0", r.max_nonfinite_updates),
        (s.train_ratio >= 0, "schedule.train_ratio", ">= 0 (0: updates_per_train per train_every)", s.train_ratio),
        (s.pretrain_updates >= 0, "schedule.pretrain_updates", ">= 0", s.pretrain_updates),
        (cfg.optim.kind == "adam" or cfg.model.agent != "dreamer", "optim.kind",
         "adam for model.agent dreamer (LaProp is wired for dreamer_v2/dreamer_v3)", cfg.optim.kind),
        (cfg.optim.kind == "adam" or l.actor_reinforce == 1.0, "loss.actor_reinforce",
         "1 with optim.kind laprop (one optimizer over everything: a backprop actor gradient would reach the world "
         "model); use --optim.kind adam for dynamics backprop", l.actor_reinforce),
        (0.0 <= l.actor_reinforce <= 1.0, "loss.actor_reinforce", "in [0, 1]", l.actor_reinforce),
        (cfg.model.classes >= 2 and 0.0 <= cfg.model.unimix < 1.0, "model.classes/unimix", ">= 2 and in [0, 1)",
         (cfg.model.classes, cfg.model.unimix)),
        (cfg.model.twohot_bins == 0 or cfg.model.twohot_bins >= 2, "model.twohot_bins", "0 or >= 2",
         cfg.model.twohot_bins),
        (cfg.model.vector_layers >= 0, "model.vector_layers", ">= 0 (0: model.mlp_layers)", cfg.model.vector_layers),
        (cfg.model.vector_units >= 0, "model.vector_units", ">= 0 (0: model.mlp_hidden)", cfg.model.vector_units),
        (cfg.model.actor_outscale >= 0, "model.actor_outscale", ">= 0", cfg.model.actor_outscale),
        (cfg.model.actor_dist == "bounded_normal" or cfg.model.agent != "dreamer", "model.actor_dist",
         "bounded_normal for model.agent dreamer (Dreamer V1 has its tanh-Gaussian actor; trunc_normal belongs to "
         "dreamer_v2/dreamer_v3)", cfg.model.actor_dist),
        (cfg.optim.model_adam_eps >= 0, "optim.model_adam_eps", ">= 0 (0: optim.adam_eps)", cfg.optim.model_adam_eps),
        (cfg.optim.model_grad_clip >= 0, "optim.model_grad_clip", ">= 0 (0: optim.grad_clip)",
         cfg.optim.model_grad_clip),
        (not cfg.optim.step_model_first or cfg.optim.kind == "adam" and cfg.behavior.kind == "actor",
         "optim.step_model_first", "false with optim.kind laprop or behavior.kind planner (a single optimizer "
         "phase: no world-model step to put before the behaviour's)", cfg.optim.step_model_first),
        (not (cfg.optim.step_model_first and cfg.optim.kind == "adam" and l.replay_value_scale > 0
              and cfg.model.agent != "dreamer" and l.value_estimate != "reward"), "loss.replay_value_scale",
         "0 with optim.step_model_first (the replay critic term trains the world model, which has already stepped; "
         "set optim.step_model_first false or optim.kind laprop)", l.replay_value_scale),
        (cfg.behavior.plan_horizon >= 1, "behavior.plan_horizon", ">= 1", cfg.behavior.plan_horizon),
        (cfg.behavior.iterations >= 1, "behavior.iterations", ">= 1", cfg.behavior.iterations),
        (1 <= cfg.behavior.top_k <= cfg.behavior.candidates, "behavior.top_k",
         f"in [1, candidates = {cfg.behavior.candidates}]", cfg.behavior.top_k),
    ]
    for ok, name, expected, got in checks:
        if not ok:
            raise ValueError(f"config field {name!r} must be {expected}, got {got!r}")
    for group in GROUPS:  # choices (the command line checks them too; a config built in code may not)
        sub = getattr(cfg, group)
        for name, kind in field_types(type(sub)).items():
            choices = get_args(kind) if get_origin(kind) is Literal else ()
            if choices and getattr(sub, name) not in choices:
                raise ValueError(f"config field '{group}.{name}' must be {' or '.join(choices)}, "
                                 f"got {getattr(sub, name)!r}")
    reads.check(cfg)  # no field the chosen parts do not read, and the widths of a named size (config/reads.py)


def _options() -> tuple[set[str], set[str], dict[str, object]]:
    """(every option tyro accepts, spelled with '-'; the boolean switches among them; {option: its type})."""
    options, switches, kinds = {"--help", "-h", "--preset", "--resume"}, set(), {}
    template = DreamerConfig()
    for group in GROUPS:
        for name, kind in field_types(type(getattr(template, group))).items():
            flag = f"--{group}.{name.replace('_', '-')}"
            options.add(flag)
            kinds[flag] = kind
            if kind is bool:
                switches |= {flag, f"--{group}.no-{name.replace('_', '-')}"}
    return options | switches, switches, kinds


def _check_value(option: str, kind, value: str) -> None:
    """A number or a choice that does not parse, refused in one line (tyro would print a box of help)."""
    if kind in (int, float):
        try:
            kind(value)
        except ValueError:
            raise ValueError(f"{option} expects {kind.__name__}, got {value!r}") from None
    choices = get_args(kind) if get_origin(kind) is Literal else ()
    if choices and value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}{hint}")


def _check_options(args: Sequence[str]) -> None:
    """Refuse unknown options with the closest valid ones, and values given to on/off switches."""
    options, switches, kinds = _options()
    for i, token in enumerate(args):
        if not token.startswith("--"):
            continue
        given, _, attached = token.partition("=")
        flag = given.replace("_", "-")
        if flag not in options:
            leaf = flag.rpartition(".")[2].lstrip("-")
            close = difflib.get_close_matches(flag, sorted(options), n=3, cutoff=0.85)
            close = close or [o for o in sorted(options) if o.rpartition(".")[2] in (leaf, f"no-{leaf}")]
            close = close or [o for o in sorted(options) if "." in o and o.rpartition(".")[2].startswith(leaf)][:3]
            close = close or difflib.get_close_matches(flag, sorted(options), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; --help lists every option"
            raise ValueError(f"unknown option {given}{hint}")
        follows = args[i + 1] if i + 1 < len(args) else ""
        value = attached or (follows if follows and not follows.startswith("--") and follows != "-h" else "")
        if flag in switches and value:
            on = flag.replace(".no-", ".")
            raise ValueError(f"{given} is a switch and takes no value (got {value!r}): "
                             f"write {on} or {on.replace('.', '.no-', 1)}")
        if flag in kinds and flag not in switches:
            if not value and not attached:
                raise ValueError(f"{given} needs a value")
            _check_value(given, kinds[flag], value)


def _usage_error(prog: str, message: str) -> None:
    """The error, then one line on --help; no usage dump (docs/reliability.md P10)."""
    print(f"{prog}: error: {message}\n{prog}: '{prog} --help' lists every option with its default", file=sys.stderr)
    raise SystemExit(2)


def _description(text: str) -> str:
    presets = "\n".join(f"  {name}: {fn.__doc__.splitlines()[0]}" for name, fn in PRESETS.items())
    return f"{text.rstrip()}\n\nPresets (--preset NAME):\n{presets}"


def _task_argument(args: Sequence[str]) -> str | None:
    """The value of ``--env.task`` among ``args`` (None if absent): presets such as planet derive from it."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    peek.add_argument("--env.task", dest="task")
    return peek.parse_known_args(args)[0].task


def _size_argument(args: Sequence[str]) -> str | None:
    """The value of ``--model.size`` among ``args`` (None if absent): its widths go into the starting config."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    peek.add_argument("--model.size", dest="size")
    return peek.parse_known_args(args)[0].size


def _given_fields(args: Sequence[str]) -> set[str]:
    """The ``group.field`` names the options among ``args`` set (``--model.no-continue-head`` included)."""
    names = set()
    for token in args:
        if token.startswith("--") and "." in token:
            group, _, leaf = token[2:].partition("=")[0].replace("-", "_").partition(".")
            names.add(f"{group}.{leaf.removeprefix('no_')}")
    return names


def parse_args(argv: Sequence[str] | None = None, description: str = "", *,
               checks: Sequence[Callable[[DreamerConfig], None]] = (),
               load_resumed: Callable[[str], tuple[dict, str, str]] | None = None) -> tuple[DreamerConfig, str]:
    """The validated config and its preset name from the command line; bad input exits 2 with one message.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        description: the text ``--help`` starts with.
        checks: further checks of the parsed config, each raising ValueError naming the field.
        load_resumed: ``run directory -> (saved config as data, its preset, checkpoint directory)``,
            raising ValueError; needed for ``--resume``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) or "dreamer"
    first = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False, exit_on_error=False)
    first.add_argument("--preset")
    first.add_argument("--resume", "--run.resume", default="")
    try:
        known, rest = first.parse_known_args(argv)
        if known.preset is not None and known.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {known.preset!r}")
        _check_options(rest)
        if known.resume:
            if load_resumed is None:
                raise ValueError("--resume needs a checkpoint reader here (use dreamer_trl.run.preflight.parse_args)")
            data, preset, checkpoint = load_resumed(known.resume)
            if known.preset not in (None, preset):
                raise ValueError(f"resuming a run of preset {preset!r} with --preset {known.preset!r}")
            saved, start = from_dict(data), from_dict(data)
        else:
            preset = known.preset or "paper"
            start = make_preset(preset, _task_argument(rest))
        size = _size_argument(rest)
        if size is not None:  # like --preset, read first: --help and the overrides after it start from its widths
            start.model = apply_size(start.model, size)
    except (ValueError, argparse.ArgumentError) as err:
        _usage_error(prog, str(err))
    cfg = tyro.cli(CommandLine, default=CommandLine(start, preset, known.resume), args=rest, prog=prog,
                   description=_description(description)).config
    try:
        if known.resume:
            changed = {k: v for k, v in config_differences(saved, cfg).items() if k not in RESUMABLE}
            if changed:
                listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
                raise ValueError(f"cannot resume {known.resume} with a different config ({listed}); only "
                                 f"{', '.join(sorted(RESUMABLE))} may change")
            cfg.run.resume = str(checkpoint)
        reads.reset_unread(cfg, _given_fields(rest))  # a preset's value an override made unread, not the user's
        validate(cfg)
        for check in checks:
            check(cfg)
    except ValueError as err:
        _usage_error(prog, str(err))
    return cfg, preset
