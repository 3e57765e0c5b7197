"""The command line: ``--preset NAME``, ``--resume RUN`` and ``--GROUP.FIELD VALUE`` overrides, through tyro.

    --preset state --schedule.batch-size 16 --world-model.loss.free-nats 0 --env.task walker_walk --env.no-from-pixels

``--preset`` is read first, so that ``--help`` shows every field at the chosen preset's value (a preset whose
networks depend on the observation kind is built for the ``--env.from-pixels`` / ``--env.no-from-pixels`` given);
so is ``--nets.size``, whose widths are written into the fields (``sizes.apply_size``) before the other overrides.
The flat flag names of format 2 (``--model.belief-dim``, ``--loss.free-nats``) are translated to the nested ones
(``legacy.ALIASES``) with a one-line note; those without a one-to-one successor are refused naming what to give.
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
from .legacy import ALIASES, REMOVED
from .presets import PRESETS, SUMMARIES, make_preset
from .schema import DreamerConfig, field_names, field_types, from_dict, get_field, owner
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
    """{dotted field name: (saved value, new value)} for every field that differs."""
    return {n: (get_field(saved, n), get_field(new, n)) for n in field_names(saved)
            if get_field(saved, n) != get_field(new, n)}


def check_actions(cfg: DreamerConfig, kind: str) -> None:
    """The behaviour can take the env's actions (``kind``: "discrete" or "continuous"): PlaNet's planner and
    Gaussian exploration noise need continuous ones. The one rule, applied by the recipe's preflight (before any
    env is built) and by :func:`~dreamer_trl.builders.agent.make_agent`."""
    b = cfg.behavior
    if kind != "discrete":
        return
    if b.kind == "planner":
        raise ValueError("config field 'behavior.kind': planner (PlaNet's CEM) plans continuous actions; "
                         "the env's actions are discrete: use actor")
    if b.exploration.noise:
        raise ValueError(f"config field 'behavior.exploration.noise': {b.exploration.noise} is Gaussian noise on "
                         "continuous actions; the env's actions are discrete, explored by sampling the actor: use 0")


def validate(cfg: DreamerConfig) -> None:
    """Reject impossible values before any work starts, naming the field and the expected value."""
    s, e, r, b, wm = cfg.schedule, cfg.env, cfg.run, cfg.behavior, cfg.world_model
    wl, actor = wm.loss, b.actor
    for ok, name, got in ((e.action_repeat >= 1, "env.action_repeat", e.action_repeat),  # divisors of the checks below
                          (s.train_every >= 1, "schedule.train_every", s.train_every),
                          (e.num_envs >= 1, "env.num_envs", e.num_envs)):
        if not ok:
            raise ValueError(f"config field {name!r} must be >= 1, got {got!r}")
    # the actor loss's target rows K: s_0..s_{H-1} with start-state targets (v2_v3 always), s_1..s_{H-1} without
    start_targets = b.losses == "v2_v3" or b.start_state_targets
    rows = b.horizon if start_targets else b.horizon - 1
    checks = [
        (s.seq_len >= 2, "schedule.seq_len", ">= 2", s.seq_len),
        (s.batch_size >= 1, "schedule.batch_size", ">= 1", s.batch_size),
        (b.horizon >= 1 if start_targets else b.horizon >= 2, "behavior.horizon",
         ">= 1" if start_targets else ">= 2 (the v1 losses' targets are for s_1..s_{H-1}, none at H = 1; "
         "behavior.start_state_targets true or behavior.losses v2_v3 target s_0 too and work from 1)", b.horizon),
        (actor.mean_scale >= 0, "behavior.actor.mean_scale", ">= 0 (0: unsquashed)", actor.mean_scale),
        (e.action_repeat >= 1, "env.action_repeat", ">= 1", e.action_repeat),
        (e.image_size == 64 or not e.from_pixels, "env.image_size", "64 for the pixel model", e.image_size),
        (e.episode_frames >= e.action_repeat * s.seq_len or s.replay_windows == "stream", "env.episode_frames",
         f">= action_repeat * seq_len = {e.action_repeat * s.seq_len} (an episode must fill a sequence; "
         "schedule.replay_windows stream lifts this)", e.episode_frames),
        (wl.window_start != "replay_context" or s.replay_windows == "stream", "world_model.loss.window_start",
         "not replay_context with schedule.replay_windows episode (a window inside one episode never trains its "
         "first row; the official replay context reads the stream across episode ends: replay_windows stream)",
         wl.window_start),
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
        (0.0 <= b.gamma <= 1.0, "behavior.gamma", "in [0, 1]", b.gamma),
        (0.0 <= b.lmbda <= 1.0, "behavior.lmbda", "in [0, 1]", b.lmbda),
        (wl.free_nats >= 0 and wl.kl_scale >= 0, "world_model.loss.free_nats/kl_scale", ">= 0",
         (wl.free_nats, wl.kl_scale)),
        (wl.obs_scale >= 0 and wl.reward_scale >= 0, "world_model.loss.obs_scale/reward_scale", ">= 0",
         (wl.obs_scale, wl.reward_scale)),
        (not reads.is_read(cfg, "behavior.value_steps") or 1 <= b.value_steps <= max(rows, 1),
         "behavior.value_steps", f"in [1, {'horizon' if start_targets else 'horizon - 1'} = {max(rows, 1)}] "
         "(the imagined steps a target can sum)", b.value_steps),
        (e.suite != "dmc" or "_" in e.task, "env.task", "domain_task (e.g. cheetah_run)", e.task),
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
        (cfg.optim.kind == "adam" or b.losses == "v2_v3" or b.kind == "planner", "optim.kind",
         "adam with behavior.losses v1 (LaProp is wired for the v2_v3 losses and the planner)", cfg.optim.kind),
        (cfg.optim.kind == "adam" or actor.reinforce == 1.0, "behavior.actor.reinforce",
         "1 with optim.kind laprop (one optimizer over everything: a backprop actor gradient would reach the world "
         "model); use --optim.kind adam for dynamics backprop", actor.reinforce),
        (0.0 <= actor.reinforce <= 1.0, "behavior.actor.reinforce", "in [0, 1]", actor.reinforce),
        (wm.latent.classes >= 2 and 0.0 <= wm.latent.unimix < 1.0, "world_model.latent.classes/unimix",
         ">= 2 and in [0, 1)", (wm.latent.classes, wm.latent.unimix)),
        (cfg.nets.twohot_bins >= 2, "nets.twohot_bins", ">= 2 (for N(x, 1) heads choose world_model.reward_head / "
         "behavior.critic.head normal)", cfg.nets.twohot_bins),
        (wm.vector_layers >= 1, "world_model.vector_layers", ">= 1", wm.vector_layers),
        (wm.vector_units >= 1, "world_model.vector_units", ">= 1", wm.vector_units),
        (actor.outscale >= 0, "behavior.actor.outscale", ">= 0", actor.outscale),
        (not (wm.continue_head and b.kind == "actor" and b.losses == "v1"), "world_model.continue_head",
         "false with behavior.losses v1 (the v1 losses weight imagined steps by gamma^t and read no continue head; "
         "behavior.losses v2_v3 reads it)", wm.continue_head),
        (cfg.optim.model_adam_eps >= 0, "optim.model_adam_eps", ">= 0 (0: optim.adam_eps)", cfg.optim.model_adam_eps),
        (cfg.optim.model_grad_clip >= 0, "optim.model_grad_clip", ">= 0 (0: optim.grad_clip)",
         cfg.optim.model_grad_clip),
        (not cfg.optim.step_model_first or cfg.optim.kind == "adam" and cfg.behavior.kind == "actor",
         "optim.step_model_first", "false with optim.kind laprop or behavior.kind planner (a single optimizer "
         "phase: no world-model step to put before the behaviour's)", cfg.optim.step_model_first),
        (not (cfg.optim.step_model_first and cfg.optim.kind == "adam" and b.critic.replay_scale > 0
              and b.losses == "v2_v3" and b.value_estimate != "reward"), "behavior.critic.replay_scale",
         "0 with optim.step_model_first (the replay critic term trains the world model, which has already stepped; "
         "set optim.step_model_first false or optim.kind laprop)", b.critic.replay_scale),
        (not (b.target_reward == "same" and b.losses == "v2_v3" and b.kind == "actor" and b.horizon < 2),
         "behavior.horizon", ">= 2 with behavior.target_reward same (the actor is scored by R_1..R_{H-1})", b.horizon),
        (not (b.target_reward == "same" and b.losses == "v2_v3" and b.kind == "actor" and b.critic.replay_scale > 0
              and b.value_estimate != "reward"), "behavior.critic.replay_scale",
         "0 with behavior.target_reward same (the replay critic's returns follow the next-reward alignment; "
         "V2 has no replay term)", b.critic.replay_scale),
        (b.planner.horizon >= 1, "behavior.planner.horizon", ">= 1", b.planner.horizon),
        (b.planner.iterations >= 1, "behavior.planner.iterations", ">= 1", b.planner.iterations),
        (1 <= b.planner.top_k <= b.planner.candidates, "behavior.planner.top_k",
         f"in [1, candidates = {b.planner.candidates}]", b.planner.top_k),
        (e.suite != "atari" or e.from_pixels, "env.from_pixels", "true with env.suite atari (the agent observes the "
         "screen)", e.from_pixels),
        (e.suite != "atari" or e.atari.noops >= 0, "env.atari.noops", ">= 0", e.atari.noops),
        (e.suite != "atari" or e.atari.pooling >= 1, "env.atari.pooling", ">= 1", e.atari.pooling),
        (e.suite != "torchrl" or ":" in e.task, "env.task", "module:function with env.suite torchrl (a factory "
         "returning a TorchRL EnvBase)", e.task),
        (e.suite != "torchrl" or e.action_repeat == 1, "env.action_repeat", "1 with env.suite torchrl (your env "
         "repeats actions itself, if at all: the trainer counts action_repeat env steps per agent step)",
         e.action_repeat),
    ]
    for ok, name, expected, got in checks:
        if not ok:
            raise ValueError(f"config field {name!r} must be {expected}, got {got!r}")
    for name in field_names(cfg):  # choices (the command line checks them too; a config built in code may not)
        sub, leaf = owner(cfg, name)
        kind = field_types(type(sub))[leaf]
        choices = get_args(kind) if get_origin(kind) is Literal else ()
        if choices and getattr(sub, leaf) not in choices:
            raise ValueError(f"config field {name!r} must be {' or '.join(choices)}, got {getattr(sub, leaf)!r}")
    reads.check(cfg)  # no field the chosen parts do not read, and the widths of a named size (config/reads.py)


def _options() -> tuple[set[str], set[str], dict[str, object]]:
    """(every option tyro accepts, spelled with '-'; the boolean switches among them; {option: its type})."""
    options, switches, kinds = {"--help", "-h", "--help-all", "--preset", "--resume"}, set(), {}
    template = DreamerConfig()
    for name in field_names(template):
        sub, leaf = owner(template, name)
        kind = field_types(type(sub))[leaf]
        flag = "--" + name.replace("_", "-")
        options.add(flag)
        kinds[flag] = kind
        if kind is bool:
            head, _, tail = flag.rpartition(".")
            switches |= {flag, f"{head}.no-{tail}"}
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


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring, whole (its lines joined)."""
    text = " ".join((doc or "").split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def _description(text: str) -> str:
    presets = "\n".join(f"  {name}: {SUMMARIES[name]}" for name in PRESETS)
    return f"{text.rstrip()}\n\nPresets (--preset NAME):\n{presets}"


def _metavar(kind) -> str:
    choices = get_args(kind) if get_origin(kind) is Literal else ()
    if choices:
        return "{" + ",".join(map(str, choices)) + "}"
    return {int: "INT", float: "FLOAT", str: "STR"}.get(kind, "VALUE")


def help_text(cfg: DreamerConfig, preset: str, prog: str, description: str) -> str:
    """``--help``: the presets, then the fields the chosen parts of ``cfg`` read, part by part, with their one-line
    descriptions and ``cfg``'s values (the fields they do not read would be refused: ``--help-all`` lists them)."""
    names = [n for n in field_names(cfg) if reads.is_read(cfg, n)]
    total = len(field_names(cfg))
    lines = [f"usage: {prog} [--preset NAME] [--resume RUN] [--GROUP.PART.FIELD VALUE ...] [--help-all]", "",
             _description(description), "",
             f"Fields the chosen parts read ({len(names)} of {total} at --preset {preset}: the others would do "
             "nothing and are refused; --help-all lists every field):"]
    part = None
    for name in names:
        sub, leaf = owner(cfg, name)
        head = name.rpartition(".")[0]
        if head != part:
            part = head
            lines += ["", f"{head}: {first_sentence(type(sub).__doc__)}"]
        kind = field_types(type(sub))[leaf]
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            h, _, t = flag.rpartition(".")
            spelled = f"{flag}, {h}.no-{t}"
        else:
            spelled = f"{flag} {_metavar(kind)}"
        doc = reads.field_docs(type(sub)).get(leaf, "")
        lines.append(f"  {spelled}")
        lines.append(f"      {doc} (default: {getattr(sub, leaf)})")
    lines += ["", "  --preset NAME, --resume RUN (default: " + preset + ")", ""]
    return "\n".join(lines)


def _task_argument(args: Sequence[str]) -> str | None:
    """The value of ``--env.task`` among ``args`` (None if absent): presets such as planet derive from it."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    peek.add_argument("--env.task", dest="task")
    return peek.parse_known_args(args)[0].task


def _size_argument(args: Sequence[str]) -> str | None:
    """The value of ``--nets.size`` among ``args`` (None if absent): its widths go into the starting config."""
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    peek.add_argument("--nets.size", dest="size")
    return peek.parse_known_args(args)[0].size


def _pixels_argument(args: Sequence[str]) -> bool | None:
    """The last of ``--env.from-pixels`` / ``--env.no-from-pixels`` among ``args`` (None if neither)."""
    given = [t.partition("=")[0].replace("_", "-") for t in args]
    flags = [g for g in given if g in ("--env.from-pixels", "--env.no-from-pixels")]
    return None if not flags else flags[-1] == "--env.from-pixels"


def _given_fields(args: Sequence[str]) -> set[str]:
    """The dotted field names the options among ``args`` set (``--world-model.no-continue-head`` included)."""
    names = set()
    for token in args:
        if token.startswith("--") and "." in token:
            head, _, leaf = token[2:].partition("=")[0].replace("-", "_").rpartition(".")
            names.add(f"{head}.{leaf.removeprefix('no_')}")
    return names


def translate_aliases(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(``args`` with the format-2 flag names written as today's, one note per translated flag).

    ``--model.mlp-hidden 200`` becomes the four width flags it stood for; ``--model.agent`` and the other names of
    :data:`~dreamer_trl.config.legacy.REMOVED` are refused (ValueError) saying what to give instead.
    """
    out, notes, i = [], [], 0
    args = list(args)
    while i < len(args):
        token = args[i]
        given, eq, attached = token.partition("=")
        head, _, leaf = given[2:].replace("-", "_").rpartition(".")
        negated = leaf.startswith("no_")
        old = f"{head}.{leaf.removeprefix('no_')}" if token.startswith("--") and head else ""
        if old in REMOVED:
            raise ValueError(f"{given} was removed with the flat config: {REMOVED[old]}")
        if old not in ALIASES:
            out.append(token)
            i += 1
            continue
        targets = ALIASES[old]
        value: list[str] = []
        follows = args[i + 1] if i + 1 < len(args) else None
        takes_value = not negated and not eq and follows is not None and not follows.startswith("--")
        if takes_value and not _is_switch(targets[0]):
            value, i = [follows], i + 2
        else:
            i += 1
        new_flags = []
        for target in targets:
            t_head, _, t_leaf = target.replace("_", "-").rpartition(".")
            flag = f"--{t_head}.{'no-' if negated else ''}{t_leaf}"
            new_flags.append(flag)
            out += [flag + (f"={attached}" if eq else "")] + value
        notes.append(f"note: {given} is now {' '.join(new_flags)} (the old name is accepted for one more release)")
    return out, notes


def _fanned_aliases(given_names: set[str]) -> dict[str, tuple[str, ...]]:
    """The old flags among ``given_names`` that stand for several of today's fields: {old name: its fields}."""
    return {old: ALIASES[old] for old in given_names if len(ALIASES.get(old, ())) > 1}


def _is_switch(name: str) -> bool:
    sub, leaf = owner(DreamerConfig(), name)
    return field_types(type(sub))[leaf] is bool


def parse_args(argv: Sequence[str] | None = None, description: str = "", *,
               checks: Sequence[Callable[[DreamerConfig], None]] = (),
               load_resumed: Callable[[str], tuple[dict, str, str]] | None = None,
               default_preset: str = "paper", defaults: Sequence[str] = ()) -> tuple[DreamerConfig, str]:
    """The validated config and its preset name from the command line; bad input exits 2 with one message.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        description: the text ``--help`` starts with.
        checks: further checks of the parsed config, each raising ValueError naming the field.
        load_resumed: ``run directory -> (saved config as data, its preset, checkpoint directory)``,
            raising ValueError; needed for ``--resume``.
        default_preset: the preset without ``--preset`` (a recipe's own, e.g. dreamer_v3_atari100k).
        defaults: arguments read before the user's (a recipe's suite, e.g. ``--env.suite gym``), so the user's
            own override them; not applied with ``--resume`` (the saved config holds them).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.split("=")[0] in ("--resume", "--run.resume") for a in argv):
        argv = [*defaults, *argv]
    prog = os.path.basename(sys.argv[0]) or "dreamer"
    first = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False, exit_on_error=False)
    first.add_argument("--preset")
    first.add_argument("--resume", "--run.resume", default="")
    try:
        given_names = _given_fields(argv)  # as typed: a field named in today's form is the user's own
        argv, notes = translate_aliases(argv)
        fanned = _fanned_aliases(given_names)
        # the part of an old flag that stood for several fields (--model.mlp-hidden) which this variant does not
        # read is not the user's, as long as some part is read (checked below)
        spread = {t for targets in fanned.values() for t in targets} - given_names
        for note in notes:
            print(note, file=sys.stderr)
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
            preset = known.preset or default_preset
            start = make_preset(preset, _task_argument(rest), _pixels_argument(rest))
        size = _size_argument(rest)
        if size is not None:  # like --preset, read first: --help and the overrides after it start from its widths
            start = apply_size(start, size)
    except (ValueError, argparse.ArgumentError) as err:
        _usage_error(prog, str(err))
    wants_help = any(a in ("--help", "-h") for a in rest)
    if "--help-all" in rest:  # tyro's listing of every field
        rest = [a if a != "--help-all" else "--help" for a in rest]
        wants_help = False
    parsed = [a for a in rest if a not in ("--help", "-h")] if wants_help else rest
    cfg = tyro.cli(CommandLine, default=CommandLine(start, preset, known.resume), args=parsed, prog=prog,
                   description=_description(description)).config
    if wants_help:
        reads.reset_unread(cfg, _given_fields(rest) - spread)
        print(help_text(cfg, preset, prog, description))
        raise SystemExit(0)
    try:
        if known.resume:
            changed = {k: v for k, v in config_differences(saved, cfg).items() if k not in RESUMABLE}
            if changed:
                listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
                raise ValueError(f"cannot resume {known.resume} with a different config ({listed}); only "
                                 f"{', '.join(sorted(RESUMABLE))} may change")
            cfg.run.resume = str(checkpoint)
        reads.reset_unread(cfg, _given_fields(rest) - spread)  # a preset's value an override made unread
        for old, targets in fanned.items():
            if not any(reads.is_read(cfg, t) for t in targets):
                raise ValueError(f"--{old.replace('_', '-')} sets {', '.join(targets)}, none of which "
                                 f"{preset} reads; leave it out")
        validate(cfg)
        for check in checks:
            check(cfg)
    except ValueError as err:
        _usage_error(prog, str(err))
    return cfg, preset
