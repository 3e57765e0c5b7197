"""Who reads each config field, and under which choice of parts: one table, the rule built on it, its reference page.

:data:`READS` maps every ``group.field`` to the parts of the library that read it, each with the condition
(a conjunction of choices of parts: ``world_model.rssm.core``, ``behavior.losses``, ``env.from_pixels``, ...)
under which that part exists and reads the field. It is written from the code (``builders/``,
``behavior/policy.py``, ``behavior/planner.py``, ``training/``) and checked against it by tests/test_config_reads.py, which changes each field and looks for
a change in the numbers of an update, a policy call or a planner call.

The rule (:func:`unread_fields`, applied by :func:`~dreamer_trl.config.cli.validate`): a field of a group in
:data:`ENFORCED` that no part of the chosen config reads must keep its class default (for the widths a named
``nets.size`` sets: the size's number), so no option is accepted that does nothing. Schedule and run
fields are read by the trainer whatever the variant; env, schedule and run are documented here but not
enforced (``env.image_size`` of a state run is accepted on purpose, tests/test_config.py), except the parts in
:data:`ENFORCED_PARTS` (``env.atari``).

``python -m dreamer_trl.config.reads --markdown`` writes docs/config.md from this table.

No torch import: the command line refuses a config before anything heavy starts.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .schema import GROUPS, DreamerConfig, field_names, get_field, group_of, set_field
from .sizes import size_widths

ENFORCED: tuple[str, ...] = ("nets", "world_model", "behavior", "optim")
"""Groups whose unread fields are refused when they differ from the default."""

ENFORCED_PARTS: tuple[str, ...] = ("env.atari",)
"""Parts of the unenforced groups held to the same rule (the Atari settings do nothing with another suite)."""


def enforced(name: str) -> bool:
    """``name`` falls under the rule: its group is in :data:`ENFORCED` or it lies in one of :data:`ENFORCED_PARTS`."""
    return group_of(name) in ENFORCED or any(name.startswith(part + ".") for part in ENFORCED_PARTS)


@dataclass(frozen=True)
class Is:
    """One choice: ``field`` (a dotted name) satisfies ``test``; ``text`` says which values do."""

    field: str
    text: str
    test: Callable[[Any], bool]

    def holds(self, cfg: DreamerConfig) -> bool:
        return self.test(get_field(cfg, self.field))


def one_of(name: str, *values) -> Is:
    """``name`` is one of ``values`` (True/False fields: written as the switch or its ``no-`` form)."""
    if values in ((True,), (False,)):
        return Is(name, name if values[0] else f"not {name}", lambda v, want=values[0]: v is want)
    return Is(name, f"{name} {'/'.join(map(str, values))}", lambda v: v in values)


def not_one_of(name: str, *values) -> Is:
    """``name`` is none of ``values``."""
    return Is(name, f"{name} not {'/'.join(map(str, values))}", lambda v: v not in values)


ACTOR = one_of("behavior.kind", "actor")
PLANNER = one_of("behavior.kind", "planner")
PIXELS = one_of("env.from_pixels", True)
VECTOR = one_of("env.from_pixels", False)
ATARI = one_of("env.suite", "atari")
ADAM = one_of("optim.kind", "adam")
LAPROP = one_of("optim.kind", "laprop")
CATEGORICAL = one_of("world_model.latent.kind", "categorical")
GAUSSIAN = one_of("world_model.latent.kind", "gaussian")
CONTINUE = one_of("world_model.continue_head", True)
WITH_VALUE = Is("behavior.value_estimate", "behavior.value_estimate lambda/nstep", lambda v: v != "reward")
OBS_TERM = Is("world_model.loss.representation", "world_model.loss.representation reconstruction/contrastive",
              lambda v: v != "reward")
DECODER = one_of("world_model.loss.representation", "reconstruction")
LOSSES_V1 = one_of("behavior.losses", "v1")
LOSSES_V2 = one_of("behavior.losses", "v2_v3")
STYLED = not_one_of("nets.style", "v1")
TANH = one_of("behavior.actor.dist", "tanh_normal")
NOT_TANH = not_one_of("behavior.actor.dist", "tanh_normal")
TWOHOT_REWARD = one_of("world_model.reward_head", "twohot")
TWOHOT_CRITIC = one_of("behavior.critic.head", "twohot")
BACKPROP = Is("behavior.actor.reinforce", "behavior.actor.reinforce < 1", lambda v: v < 1)


@dataclass(frozen=True)
class Read:
    """``part`` reads the field when every choice of ``when`` holds (none: always)."""

    part: str
    when: tuple[Is, ...] = ()

    def holds(self, cfg: DreamerConfig) -> bool:
        return all(c.holds(cfg) for c in self.when)

    def describe(self) -> str:
        return self.part + (f" with {', '.join(c.text for c in self.when)}" if self.when else "")


def read(part: str, *when: Is) -> Read:
    return Read(part, when)


# Parts, with where the code reads the fields.
ENV = "the env (data.suites.make_suite_env)"
VEC_ENV = "the batched env (data.vector_env.make_envs)"
TRAINER = "the trainer (training.trainer.Trainer)"
DATA = "the replay buffer (data.replay.make_replay_buffer)"
AGENT = "the agent builder (builders.agent.make_agent)"
SIZES = "the named sizes (config.sizes.apply_size)"
WM = "the world model (builders.networks.make_world_model)"
WM_LOSS = "the world-model loss (builders.agent.make_model_loss)"
ACTOR_NET = "the actor (builders.networks.make_actor)"
CRITIC_NET = "the critic (builders.networks.make_value)"
BEHAVIOUR = "the actor and critic losses (builders.behavior.make_behavior_losses)"
UPDATE = "the update (builders.agent.make_update)"
PLAN = "the planner (behavior.planner.make_planner)"
POLICY = "the acting policy (behavior.policy.make_policy in builders.trainer.build)"
CRITIC = (ACTOR, WITH_VALUE)

READS: dict[str, tuple[Read, ...]] = {
    # env: the environment, for every variant
    "env.suite": (read(ENV), read("the preflight check of the task and the actions (run.preflight.check_task)")),
    "env.task": (read(ENV),),
    "env.from_pixels": (read(ENV), read(AGENT)),
    "env.image_size": (read(ENV, PIXELS),),
    "env.action_repeat": (read(ENV), read(TRAINER)),
    "env.episode_frames": (read(ENV),),
    "env.num_envs": (read(VEC_ENV),),
    "env.parallel_envs": (read(VEC_ENV, Is("env.num_envs", "env.num_envs > 1", lambda v: v > 1)),),
    "env.atari.sticky": (read(ENV, ATARI),),
    "env.atari.gray": (read(ENV, ATARI),),
    "env.atari.actions": (read(ENV, ATARI),),
    "env.atari.lives": (read(ENV, ATARI),),
    "env.atari.noops": (read(ENV, ATARI),),
    "env.atari.pooling": (read(ENV, ATARI),),
    "env.atari.aggregate": (read(ENV, ATARI),),
    # nets: every network
    "nets.style": (read(WM), read(ACTOR_NET, ACTOR), read(CRITIC_NET, *CRITIC)),
    "nets.norm": (read(WM, STYLED), read(ACTOR_NET, ACTOR, STYLED), read(CRITIC_NET, *CRITIC, STYLED)),
    "nets.size": (read(SIZES),),
    "nets.twohot_bins": (read(WM, TWOHOT_REWARD), read(CRITIC_NET, *CRITIC, TWOHOT_CRITIC)),
    "nets.twohot_space": (read(WM, TWOHOT_REWARD), read(CRITIC_NET, *CRITIC, TWOHOT_CRITIC)),
    # world model
    "world_model.latent.kind": (read(WM),),
    "world_model.latent.state_dim": (read(WM),),
    "world_model.latent.min_std": (read(WM, GAUSSIAN),),
    "world_model.latent.classes": (read(WM, CATEGORICAL),),
    "world_model.latent.unimix": (read(WM, CATEGORICAL),),
    "world_model.rssm.core": (read(WM),),
    "world_model.rssm.belief_dim": (read(WM),),
    "world_model.rssm.hidden": (read(WM),),
    "world_model.rssm.blocks": (read(WM + ": block GRU", one_of("world_model.rssm.core", "block_gru")),
                                read(WM + ": image decoder", PIXELS, DECODER,
                                     one_of("world_model.image_decoder", "upsample_mse"))),
    "world_model.rssm.initial": (read(WM),),
    "world_model.loss.representation": (read(WM), read(WM_LOSS)),
    "world_model.loss.obs_scale": (read(WM_LOSS, OBS_TERM),),
    "world_model.loss.reward_scale": (read(WM_LOSS),),
    "world_model.loss.kl": (read(WM_LOSS),),
    "world_model.loss.kl_scale": (read(WM_LOSS, one_of("world_model.loss.kl", "free_nats", "balance")),),
    "world_model.loss.free_nats": (read(WM_LOSS), read(TRAINER + ": prior watch")),
    "world_model.loss.kl_balance": (read(WM_LOSS, one_of("world_model.loss.kl", "balance")),),
    "world_model.loss.dyn_scale": (read(WM_LOSS, one_of("world_model.loss.kl", "dyn_rep")),),
    "world_model.loss.rep_scale": (read(WM_LOSS, one_of("world_model.loss.kl", "dyn_rep")),),
    "world_model.loss.continue_scale": (read(WM_LOSS, CONTINUE),),
    "world_model.loss.window_start": (read(WM_LOSS),),
    "world_model.image_encoder": (read(WM, PIXELS),),
    "world_model.image_decoder": (read(WM, PIXELS, DECODER),),
    "world_model.vector_encoder": (read(WM, VECTOR),),
    "world_model.vector_decoder": (read(WM, VECTOR, DECODER),),
    "world_model.cnn_depth": (read(WM, PIXELS),),
    "world_model.vector_layers": (read(WM, VECTOR),),
    "world_model.vector_units": (read(WM, VECTOR),),
    "world_model.units": (read(WM),),
    "world_model.reward_head": (read(WM),),
    "world_model.head_layers": (read(WM),),
    "world_model.continue_head": (read(WM), read(BEHAVIOUR, ACTOR, LOSSES_V2)),
    "world_model.continue_discount": (read(WM_LOSS, CONTINUE), read(BEHAVIOUR, ACTOR, LOSSES_V2, CONTINUE)),
    # behavior
    "behavior.kind": (read(AGENT),),
    "behavior.losses": (read(BEHAVIOUR, ACTOR),),
    "behavior.horizon": (read(BEHAVIOUR, ACTOR),),
    "behavior.gamma": (read(BEHAVIOUR, ACTOR), read(WM_LOSS, CONTINUE, one_of("world_model.continue_discount", True))),
    "behavior.lmbda": (read(BEHAVIOUR, ACTOR, LOSSES_V1, one_of("behavior.value_estimate", "lambda")),
                       read(BEHAVIOUR, ACTOR, LOSSES_V2)),
    "behavior.value_estimate": (read(BEHAVIOUR, ACTOR),),
    "behavior.value_steps": (read(BEHAVIOUR, ACTOR, one_of("behavior.value_estimate", "nstep")),),
    "behavior.sample_imagined_heads": (read(BEHAVIOUR, ACTOR),),
    "behavior.start_state_targets": (read(BEHAVIOUR, ACTOR, LOSSES_V1),),
    "behavior.target_reward": (read(BEHAVIOUR, ACTOR, LOSSES_V2),),
    "behavior.continue_mode": (read(BEHAVIOUR, ACTOR, LOSSES_V2, CONTINUE),),
    "behavior.actor.dist": (read(ACTOR_NET, ACTOR),),
    "behavior.actor.layers": (read(ACTOR_NET, ACTOR),),
    "behavior.actor.units": (read(ACTOR_NET, ACTOR),),
    "behavior.actor.mean_scale": (read(ACTOR_NET, ACTOR, TANH),),
    "behavior.actor.min_std": (read(ACTOR_NET, ACTOR, NOT_TANH),),
    "behavior.actor.max_std": (read(ACTOR_NET, ACTOR, one_of("behavior.actor.dist", "bounded_normal")),),
    "behavior.actor.outscale": (read(ACTOR_NET, ACTOR),),
    "behavior.actor.reinforce": (read(BEHAVIOUR, ACTOR, LOSSES_V2),),
    "behavior.actor.backprop_baseline": (read(BEHAVIOUR, ACTOR, LOSSES_V2, BACKPROP),),
    "behavior.actor.entropy": (read(BEHAVIOUR, ACTOR, LOSSES_V2),),
    "behavior.actor.return_norm": (read(BEHAVIOUR, ACTOR, LOSSES_V2),),
    "behavior.critic.head": (read(CRITIC_NET, *CRITIC),),
    "behavior.critic.layers": (read(CRITIC_NET, *CRITIC),),
    "behavior.critic.units": (read(CRITIC_NET, *CRITIC),),
    "behavior.critic.slow_rate": (read(BEHAVIOUR, *CRITIC, LOSSES_V2),),
    "behavior.critic.slow_every": (read(BEHAVIOUR, *CRITIC, LOSSES_V2),),
    "behavior.critic.slow_reg": (read(BEHAVIOUR, *CRITIC, LOSSES_V2),),
    "behavior.critic.replay_scale": (read(BEHAVIOUR, *CRITIC, LOSSES_V2),),
    "behavior.exploration.noise": (read(POLICY),),
    "behavior.exploration.act_with_mode": (read(POLICY, ACTOR),),
    **{f"behavior.planner.{f}": (read(PLAN, PLANNER),) for f in ("horizon", "candidates", "top_k", "iterations",
                                                                 "warm_start")},
    # optim
    "optim.model_lr": (read(UPDATE, ADAM),),
    "optim.actor_lr": (read(UPDATE, ADAM, ACTOR),),
    "optim.value_lr": (read(UPDATE, ADAM, *CRITIC),),
    "optim.adam_eps": (read(UPDATE, ADAM),),
    "optim.grad_clip": (read(UPDATE, ADAM),),
    "optim.kind": (read(UPDATE),),
    "optim.lr": (read(UPDATE, LAPROP),),
    "optim.laprop_eps": (read(UPDATE, LAPROP),),
    "optim.agc": (read(UPDATE, LAPROP),),
    "optim.warmup": (read(UPDATE, LAPROP),),
    "optim.weight_decay": (read(UPDATE, ADAM),),
    "optim.model_adam_eps": (read(UPDATE, ADAM),),
    "optim.model_grad_clip": (read(UPDATE, ADAM),),
    "optim.step_model_first": (read(UPDATE, ADAM, ACTOR),),
    # schedule and run: the trainer's, whatever the variant, with these exceptions
    "schedule.updates_per_train": (read(TRAINER, one_of("schedule.train_ratio", 0.0)),),
    "schedule.replay_windows": (read(DATA),),
    "run.compile_backend": (read("the compiler (training.acceleration.compile_networks)", one_of("run.compile", True)),),
    "run.check_every": (read("the data-parallel world (training.distributed.World)",
                             Is("run.world_size", "run.world_size > 1", lambda v: v > 1)),),
}
"""Field (dotted name) -> the parts that read it; any schedule or run field not listed is read by the trainer always."""


def reads(name: str) -> tuple[Read, ...]:
    """The parts that read ``name`` (a dotted field name)."""
    if name in READS:
        return READS[name]
    if group_of(name) in ("schedule", "run"):
        return (read(TRAINER),)
    raise KeyError(f"config field {name!r} is missing from dreamer_trl.config.reads.READS")


def is_read(cfg: DreamerConfig, name: str) -> bool:
    """Whether some part of ``cfg``'s chosen variant reads ``name``."""
    return any(r.holds(cfg) for r in reads(name))


def baseline(cfg: DreamerConfig) -> DreamerConfig:
    """The values an unread field must keep: the class defaults, and the widths of a named size that is read."""
    base = DreamerConfig()
    for name, number in (size_widths(cfg.nets.size) if is_read(cfg, "nets.size") else {}).items():
        set_field(base, name, number)
    return base


def unread_message(cfg: DreamerConfig, name: str) -> str:
    """Why ``name`` is refused: who reads it, under which choices, and what this config chose instead."""
    parts = reads(name)
    failing = dict.fromkeys(c.field for r in parts for c in r.when if not c.holds(cfg))
    chosen = ", ".join(f"{f} {get_field(cfg, f)}" for f in failing)
    keep = get_field(baseline(cfg), name)
    return (f"config field {name!r} is read only by {' and '.join(r.describe() for r in parts)}, not with "
            f"{chosen}; it would do nothing here: leave it at {keep!r} (got {get_field(cfg, name)!r})")


def unread_fields(cfg: DreamerConfig) -> list[str]:
    """The fields of :data:`ENFORCED` groups that ``cfg`` sets away from :func:`baseline` but does not read."""
    base = baseline(cfg)
    return [name for name in field_names(cfg) if enforced(name)
            and get_field(cfg, name) != get_field(base, name) and not is_read(cfg, name)]


def reset_unread(cfg: DreamerConfig, given: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Put the unread fields not named in ``given`` back to :func:`baseline`, in place; returns their names.

    For the command line: a preset's value that an override made unread (``--preset debug --env.no-from-pixels``
    leaves the conv depth unread) was not given by the user, so it goes back to its default instead of being
    refused; an unread field the user gave stays, and :func:`check` refuses it.
    """
    base = baseline(cfg)
    dropped = [name for name in unread_fields(cfg) if name not in given]
    for name in dropped:
        set_field(cfg, name, get_field(base, name))
    return dropped


def size_mismatches(cfg: DreamerConfig) -> list[str]:
    """Messages for the width fields that differ from the named ``nets.size``'s numbers."""
    return [f"config field {f!r} {get_field(cfg, f)} is set by nets.size {cfg.nets.size} "
            f"({n}); give --nets.size custom to set the widths yourself"
            for f, n in size_widths(cfg.nets.size).items() if get_field(cfg, f) != n and is_read(cfg, f)]


def check(cfg: DreamerConfig) -> None:
    """ValueError naming the first unread field set away from its default, or a width that disagrees with the size."""
    unread = unread_fields(cfg)
    if unread:
        others = f" (also unread here: {', '.join(unread[1:])})" if unread[1:] else ""
        raise ValueError(unread_message(cfg, unread[0]) + others)
    for message in size_mismatches(cfg):
        raise ValueError(message)


def field_docs(group: type) -> dict[str, str]:
    """{field: the one-line docstring under it} of a schema dataclass, from its source."""
    tree = ast.parse(inspect.getsource(group))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def _parts(obj: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted name, dataclass) of ``obj`` and of every part nested in it, depth first."""
    out = [(prefix, obj)]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += _parts(value, f"{prefix}.{f.name}")
    return out


def markdown() -> str:
    """docs/config.md: every field, its description and who reads it under which choice."""
    cfg = DreamerConfig()
    lines = ["# Configuration reference", "",
             "Generated by `python -m dreamer_trl.config.reads --markdown > docs/config.md` from",
             "`dreamer_trl/config/reads.py` (who reads what) and the field docstrings of `dreamer_trl/config/schema.py`;",
             "tests/test_config_reads.py checks that this file is up to date and that the table is true.", "",
             f"`validate` refuses a field of the {', '.join(ENFORCED)} groups (and of {', '.join(ENFORCED_PARTS)}) that the chosen parts do not read when it "
             "differs from its default (a width set by a named `nets.size`: from the size's number). On the command line "
             "a field is `--GROUP.PART.FIELD` with dashes (`--world-model.rssm.belief-dim 256`); the flat names of "
             "format 2 (`--model.belief-dim`) are still accepted for one release (`dreamer_trl/config/legacy.py`).", ""]
    for group in GROUPS:
        for prefix, sub in _parts(getattr(cfg, group), group):
            docs = field_docs(type(sub))
            leaves = [f for f in dataclasses.fields(sub) if not dataclasses.is_dataclass(getattr(sub, f.name))]
            lines += [f"## {prefix}", "", " ".join((type(sub).__doc__ or "").split()), "",
                      "| field | default | description | read by (when) |", "|---|---|---|---|"]
            for f in leaves:
                name = f"{prefix}.{f.name}"
                who = "; ".join(r.describe() for r in reads(name))
                cells = [f"`{name}`", f"`{getattr(sub, f.name)!r}`", docs.get(f.name, ""), who]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            lines.append("")
    return "\n".join(lines)


def counts() -> str:
    """One Markdown row per preset: how many of the enforced fields its parts read, per group."""
    from .presets import PRESETS

    enforced = [n for n in field_names() if group_of(n) in ENFORCED]
    rows = []
    for name, make in PRESETS.items():
        cfg = make()
        read_here = [n for n in enforced if is_read(cfg, n)]
        groups = " / ".join(str(sum(group_of(n) == g for n in read_here)) for g in ENFORCED)
        rows.append(f"| {name} | {len(read_here)} of {len(enforced)} | {groups} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] not in (["--markdown"], ["--counts"]):
        raise SystemExit("usage: python -m dreamer_trl.config.reads --markdown > docs/config.md  (or --counts)")
    sys.stdout.write(markdown() if sys.argv[1] == "--markdown" else counts())
