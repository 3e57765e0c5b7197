"""Who reads each config field, and under which choice of parts: one table, the rule built on it, its reference page.

:data:`READS` maps every ``group.field`` to the parts of the library that read it, each with the condition
(a conjunction of choices: ``model.agent``, ``behavior.kind``, ``env.from_pixels``, ``model.latent``, ...)
under which that part exists and reads the field. It is written from the code (``builders/``,
``behavior/policy.py``, ``behavior/planner.py``, ``training/``) and checked against it by tests/test_config_reads.py, which changes each field and looks for
a change in the numbers of an update, a policy call or a planner call.

The rule (:func:`unread_fields`, applied by :func:`~dreamer_trl.config.cli.validate`): a field of a group in
:data:`ENFORCED` that no part of the chosen config reads must keep its class default (for the widths a named
``model.size`` sets: the size's number), so no option is accepted that does nothing. Schedule and run
fields are read by the trainer whatever the variant; env, schedule and run are documented here but not
enforced (``env.image_size`` of a state run is accepted on purpose, tests/test_config.py).

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

from . import schema
from .schema import GROUPS, DreamerConfig, field_names, get_field
from .sizes import size_widths

ENFORCED: tuple[str, ...] = ("model", "loss", "optim", "behavior")
"""Groups whose unread fields are refused when they differ from the default."""


@dataclass(frozen=True)
class Is:
    """One choice: ``field`` (``group.field``) satisfies ``test``; ``text`` says which values do."""

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


V1 = one_of("model.agent", "dreamer")
FAMILY = one_of("model.agent", "dreamer_v2", "dreamer_v3")
V3 = one_of("model.agent", "dreamer_v3")
ACTOR = one_of("behavior.kind", "actor")
PLANNER = one_of("behavior.kind", "planner")
PIXELS = one_of("env.from_pixels", True)
VECTOR = one_of("env.from_pixels", False)
ADAM = one_of("optim.kind", "adam")
LAPROP = one_of("optim.kind", "laprop")
CATEGORICAL = one_of("model.latent", "categorical")
GAUSSIAN = one_of("model.latent", "gaussian")
CONTINUE = one_of("model.continue_head", True)
WITH_VALUE = Is("loss.value_estimate", "loss.value_estimate lambda/nstep", lambda v: v != "reward")
OBS_TERM = Is("loss.representation", "loss.representation reconstruction/contrastive", lambda v: v != "reward")


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
ENV = "the env (data.dmc.make_dmc_env)"
VEC_ENV = "the batched env (data.vector_env.make_envs)"
TRAINER = "the trainer (training.trainer.Trainer)"
DATA = "the replay buffer (data.replay.make_replay_buffer)"
AGENT = "the agent builder (builders.agent.make_agent)"
V1_MODEL = "the V1 world model networks (builders.networks.make_world_model)"
V1_LOSS = "the V1 world-model loss (builders.agent.make_model_loss)"
V1_ACTOR = "the V1 actor (builders.networks.make_actor)"
V1_VALUE = "the V1 value (builders.networks.make_value)"
V1_BEHAVIOUR = "the V1 actor and critic losses (builders.behavior.make_behavior_losses)"
V1_UPDATE = "the V1 update (builders.agent.make_update, Adam per phase)"
PLAN = "the planner (behavior.planner.make_planner)"
POLICY = "the acting policy (behavior.policy.make_policy in builders.trainer.build)"
FAM_WIDTHS = "the V2/V3 networks (builders.networks.widths)"
FAM_MODEL = "the V2/V3 world model networks (builders.networks.make_world_model)"
FAM_ACTOR = "the V2/V3 actor (builders.networks.make_actor)"
FAM_CRITIC = "the V2/V3 actor and critic (builders.networks.make_actor/make_value)"
FAM_LOSS = "the V2/V3 world-model loss (builders.agent.make_model_loss)"
FAM_BEHAVIOUR = "the V2/V3 actor and critic losses (builders.behavior.make_behavior_losses)"
FAM_UPDATE = "the V2/V3 update (builders.agent.make_update)"

READS: dict[str, tuple[Read, ...]] = {
    # env: the environment, for every variant
    "env.task": (read(ENV),),
    "env.from_pixels": (read(ENV), read(AGENT)),
    "env.image_size": (read(ENV, PIXELS),),
    "env.action_repeat": (read(ENV), read(TRAINER)),
    "env.episode_frames": (read(ENV),),
    "env.num_envs": (read(VEC_ENV),),
    "env.parallel_envs": (read(VEC_ENV, Is("env.num_envs", "env.num_envs > 1", lambda v: v > 1)),),
    # model
    "model.state_dim": (read(V1_MODEL, V1), read(FAM_WIDTHS, FAMILY)),
    "model.belief_dim": (read(V1_MODEL, V1), read(FAM_WIDTHS, FAMILY)),
    "model.rssm_hidden": (read(V1_MODEL, V1), read(FAM_WIDTHS, FAMILY)),
    "model.min_std": (read(V1_MODEL, V1, GAUSSIAN), read(FAM_MODEL, FAMILY, GAUSSIAN)),
    "model.cnn_depth": (read(V1_MODEL, V1, PIXELS), read(FAM_WIDTHS, FAMILY, PIXELS)),
    "model.mlp_hidden": (read(V1_MODEL, V1), read(FAM_WIDTHS, FAMILY)),
    "model.reward_layers": (read(V1_MODEL, V1),),
    "model.value_layers": (read(V1_VALUE, V1, ACTOR, WITH_VALUE),),
    "model.actor_layers": (read(V1_ACTOR, V1, ACTOR),),
    "model.actor_mean_scale": (read(V1_ACTOR, V1, ACTOR),),
    "model.obs_layers": (read(V1_MODEL, V1, VECTOR),),
    "model.agent": (read(AGENT),),
    "model.size": (read(V1_MODEL, V1), read(FAM_WIDTHS, FAMILY)),
    "model.latent": (read(V1_MODEL, V1), read(FAM_MODEL, FAMILY)),
    "model.classes": (read(V1_MODEL, V1, CATEGORICAL), read(FAM_WIDTHS, FAMILY, CATEGORICAL)),
    "model.unimix": (read(V1_MODEL, V1, CATEGORICAL), read(FAM_MODEL, FAMILY, CATEGORICAL)),
    "model.norm": (read(FAM_MODEL, FAMILY), read(FAM_CRITIC, FAMILY, ACTOR)),
    "model.blocks": (read(FAM_MODEL + ": block GRU", V3, one_of("model.nets", "current")),
                     read(FAM_MODEL + ": image decoder", V3, PIXELS, one_of("model.conv", "maxpool"))),
    "model.mlp_layers": (read(FAM_CRITIC, FAMILY, ACTOR), read(FAM_MODEL + ": vector encoder and decoder", FAMILY, VECTOR,
                                                        one_of("model.vector_layers", 0))),
    "model.head_layers": (read(FAM_MODEL, FAMILY),),
    "model.conv": (read(FAM_MODEL, V3, PIXELS),),
    "model.twohot_bins": (read(FAM_MODEL, FAMILY), read(FAM_CRITIC, FAMILY, ACTOR)),
    "model.continue_head": (read(FAM_MODEL, FAMILY),),
    "model.actor_min_std": (read(FAM_ACTOR, FAMILY, ACTOR),),
    "model.actor_max_std": (read(FAM_ACTOR, FAMILY, ACTOR, one_of("model.actor_dist", "bounded_normal")),),
    "model.actor_dist": (read(FAM_ACTOR, FAMILY, ACTOR),),
    "model.nets": (read(FAM_MODEL, V3), read(FAM_CRITIC, V3)),
    "model.vector_layers": (read(FAM_MODEL, FAMILY, VECTOR),),
    "model.vector_units": (read(FAM_MODEL, FAMILY, VECTOR),),
    "model.actor_outscale": (read(FAM_ACTOR, FAMILY, ACTOR),),
    "model.twohot_space": (read(FAM_MODEL, FAMILY, Is("model.twohot_bins", "model.twohot_bins > 0", bool)),
                           read(FAM_CRITIC, FAMILY, ACTOR, Is("model.twohot_bins", "model.twohot_bins > 0", bool))),
    # loss
    "loss.representation": (read(V1_MODEL, V1), read(V1_LOSS, V1), read(FAM_MODEL, FAMILY), read(FAM_LOSS, FAMILY)),
    "loss.obs_scale": (read(V1_LOSS, V1, OBS_TERM), read(FAM_LOSS, FAMILY, OBS_TERM)),
    "loss.reward_scale": (read(V1_LOSS, V1), read(FAM_LOSS, FAMILY)),
    "loss.kl_scale": (read(V1_LOSS, V1, one_of("loss.kl", "free_nats", "balance")),
                      read(FAM_LOSS, FAMILY, one_of("loss.kl", "free_nats", "balance"))),
    "loss.free_nats": (read(V1_LOSS, V1), read(FAM_LOSS, FAMILY)),
    "loss.horizon": (read(V1_BEHAVIOUR, V1, ACTOR), read(FAM_BEHAVIOUR, FAMILY, ACTOR)),
    "loss.gamma": (read(V1_BEHAVIOUR, V1, ACTOR), read(FAM_BEHAVIOUR, FAMILY, ACTOR), read(FAM_LOSS, FAMILY, CONTINUE,
                                                                                   one_of("loss.continue_discount", True))),
    "loss.lmbda": (read(V1_BEHAVIOUR, V1, ACTOR, one_of("loss.value_estimate", "lambda")), read(FAM_BEHAVIOUR, FAMILY, ACTOR)),
    "loss.value_estimate": (read(V1_BEHAVIOUR, V1, ACTOR), read(FAM_BEHAVIOUR, FAMILY, ACTOR)),
    "loss.value_steps": (read(V1_BEHAVIOUR, V1, ACTOR, one_of("loss.value_estimate", "nstep")),
                         read(FAM_BEHAVIOUR, FAMILY, ACTOR, one_of("loss.value_estimate", "nstep"))),
    "loss.exploration_noise": (read(POLICY),),
    "loss.act_with_mode": (read(POLICY, ACTOR),),
    "loss.sample_imagined_heads": (read(V1_BEHAVIOUR, V1, ACTOR), read(FAM_BEHAVIOUR, FAMILY, ACTOR)),
    "loss.start_state_targets": (read(V1_BEHAVIOUR, V1, ACTOR),),
    "loss.kl": (read(V1_LOSS, V1), read(FAM_LOSS, FAMILY)),
    "loss.kl_balance": (read(V1_LOSS, V1, one_of("loss.kl", "balance")), read(FAM_LOSS, FAMILY, one_of("loss.kl", "balance"))),
    "loss.dyn_scale": (read(V1_LOSS, V1, one_of("loss.kl", "dyn_rep")), read(FAM_LOSS, FAMILY, one_of("loss.kl", "dyn_rep"))),
    "loss.rep_scale": (read(V1_LOSS, V1, one_of("loss.kl", "dyn_rep")), read(FAM_LOSS, FAMILY, one_of("loss.kl", "dyn_rep"))),
    "loss.continue_scale": (read(FAM_LOSS, FAMILY, CONTINUE),),
    "loss.actor_reinforce": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.actor_backprop_baseline": (read(FAM_BEHAVIOUR, FAMILY, ACTOR, Is("loss.actor_reinforce",
                                                                     "loss.actor_reinforce < 1", lambda v: v < 1)),),
    "loss.actor_entropy": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.return_norm": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.slow_value_rate": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.slow_value_every": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.slow_value_reg": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.replay_value_scale": (read(FAM_BEHAVIOUR, FAMILY, ACTOR),),
    "loss.continue_discount": (read(FAM_LOSS, FAMILY, CONTINUE), read(FAM_BEHAVIOUR, FAMILY, ACTOR, CONTINUE)),
    "loss.continue_mode": (read(FAM_BEHAVIOUR, FAMILY, ACTOR, CONTINUE),),
    # optim
    "optim.model_lr": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.actor_lr": (read(V1_UPDATE, V1, ACTOR), read(FAM_UPDATE, FAMILY, ADAM, ACTOR)),
    "optim.value_lr": (read(V1_UPDATE, V1, ACTOR, WITH_VALUE), read(FAM_UPDATE, FAMILY, ADAM, ACTOR)),
    "optim.adam_eps": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.grad_clip": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.kind": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY), read(AGENT, FAMILY)),
    "optim.lr": (read(FAM_UPDATE, FAMILY, LAPROP),),
    "optim.laprop_eps": (read(FAM_UPDATE, FAMILY, LAPROP),),
    "optim.agc": (read(FAM_UPDATE, FAMILY, LAPROP),),
    "optim.warmup": (read(FAM_UPDATE, FAMILY, LAPROP),),
    "optim.weight_decay": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.model_adam_eps": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.model_grad_clip": (read(V1_UPDATE, V1), read(FAM_UPDATE, FAMILY, ADAM)),
    "optim.step_model_first": (read(V1_UPDATE, V1, ACTOR), read(FAM_UPDATE, FAMILY, ADAM, ACTOR)),
    # behavior
    "behavior.kind": (read(AGENT),),
    "behavior.plan_horizon": (read(PLAN, PLANNER),),
    "behavior.candidates": (read(PLAN, PLANNER),),
    "behavior.top_k": (read(PLAN, PLANNER),),
    "behavior.iterations": (read(PLAN, PLANNER),),
    "behavior.warm_start": (read(PLAN, PLANNER),),
    # schedule and run: the trainer's, whatever the variant, with these exceptions
    "schedule.updates_per_train": (read(TRAINER, one_of("schedule.train_ratio", 0.0)),),
    "schedule.replay_windows": (read(DATA),),
    "run.compile_backend": (read("the compiler (training.acceleration.compile_networks)", one_of("run.compile", True)),),
    "run.check_every": (read("the data-parallel world (training.distributed.World)",
                             Is("run.world_size", "run.world_size > 1", lambda v: v > 1)),),
}
"""``group.field`` -> the parts that read it; any schedule or run field not listed is read by the trainer always."""


def reads(name: str) -> tuple[Read, ...]:
    """The parts that read ``name`` (``group.field``)."""
    if name in READS:
        return READS[name]
    if name.split(".")[0] in ("schedule", "run"):
        return (read(TRAINER),)
    raise KeyError(f"config field {name!r} is missing from dreamer_trl.config.reads.READS")


def is_read(cfg: DreamerConfig, name: str) -> bool:
    """Whether some part of ``cfg``'s chosen variant reads ``name``."""
    return any(r.holds(cfg) for r in reads(name))


def baseline(cfg: DreamerConfig) -> DreamerConfig:
    """The values an unread field must keep: the class defaults, and the widths of a named size that is read."""
    base = DreamerConfig()
    for name, number in (size_widths(cfg.model.size) if is_read(cfg, "model.size") else {}).items():
        setattr(base.model, name, number)
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
    return [name for name in field_names(cfg) if name.split(".")[0] in ENFORCED
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
        group, leaf = name.split(".")
        setattr(getattr(cfg, group), leaf, get_field(base, name))
    return dropped


def size_mismatches(cfg: DreamerConfig) -> list[str]:
    """Messages for the width fields that differ from the named ``model.size``'s numbers."""
    return [f"config field 'model.{f}' {getattr(cfg.model, f)} is set by model.size {cfg.model.size} "
            f"({n}); give --model.size custom to set the widths yourself"
            for f, n in size_widths(cfg.model.size).items() if getattr(cfg.model, f) != n and is_read(cfg, "model.size")]


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


def markdown() -> str:
    """docs/config.md: every field, its description and who reads it under which choice."""
    cfg = DreamerConfig()
    lines = ["# Configuration reference", "",
             "Generated by `python -m dreamer_trl.config.reads --markdown > docs/config.md` from",
             "`dreamer_trl/config/reads.py` (who reads what) and the field docstrings of `dreamer_trl/config/schema.py`;",
             "tests/test_config_reads.py checks that this file is up to date and that the table is true.", "",
             f"`validate` refuses a field of the {', '.join(ENFORCED)} groups that the chosen parts do not read when it "
             "differs from its default (a width set by a named `model.size`: from the size's number).", ""]
    for group in GROUPS:
        sub = getattr(cfg, group)
        docs = field_docs(type(sub))
        lines += [f"## {group}", "", "| field | default | description | read by (when) |", "|---|---|---|---|"]
        for f in dataclasses.fields(sub):
            name = f"{group}.{f.name}"
            who = "; ".join(r.describe() for r in reads(name))
            cells = [f"`{name}`", f"`{getattr(sub, f.name)!r}`", docs.get(f.name, ""), who]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def summary() -> dict[str, int]:
    """{variant: how many model, loss, optim and behavior fields its parts read}, for a few named variants."""
    variants = {"dreamer (actor)": {}, "dreamer (planner)": {"behavior.kind": "planner"},
                "dreamer_v2": {"model.agent": "dreamer_v2"}, "dreamer_v3": {"model.agent": "dreamer_v3"}}
    out = {}
    for label, choices in variants.items():
        cfg = DreamerConfig()
        for name, value in choices.items():
            schema.set_field(cfg, name, value)
        out[label] = sum(is_read(cfg, n) for n in field_names(cfg) if n.split(".")[0] in ENFORCED)
    return out


def counts() -> str:
    """One Markdown row per preset: how many of the enforced fields its parts read, per group."""
    from .presets import PRESETS

    enforced = [n for n in field_names() if n.split(".")[0] in ENFORCED]
    rows = []
    for name, make in PRESETS.items():
        cfg = make()
        read_here = [n for n in enforced if is_read(cfg, n)]
        groups = " / ".join(str(sum(n.startswith(g + ".") for n in read_here)) for g in ENFORCED)
        rows.append(f"| {name} | {len(read_here)} of {len(enforced)} | {groups} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] not in (["--markdown"], ["--counts"]):
        raise SystemExit("usage: python -m dreamer_trl.config.reads --markdown > docs/config.md  (or --counts)")
    sys.stdout.write(markdown() if sys.argv[1] == "--markdown" else counts())
