"""The flat configuration of formats 1 and 2 (groups ``model``, ``loss``, ``behavior`` chosen by ``model.agent``),
its migration to the nested layout of format 3, and the old flag names kept as aliases for one release.

Up to format 2 a run's config had three flat groups and a variant switch, ``model.agent``, from which the
builders derived every part (``builders.networks.world_model_parts`` at 189f362). Format 3 names each part
in the config (``world_model.rssm.core``, ``behavior.actor.dist``, ...); :func:`migrate_flat` writes the
parts the old switch implied, so a checkpoint or ``config.json`` written by older code resumes as the same
run (tests/test_state.py resumes one checkpoint of each format and continues it to the same parameters).
Format 4 built V1's networks from the shared layers: :func:`migrate_config` names the two parts whose meaning
moved.
"""
from __future__ import annotations

import copy
from typing import Any

OLD_MODEL = dict(
    state_dim=30, belief_dim=200, rssm_hidden=200, min_std=0.1, cnn_depth=32, mlp_hidden=400, reward_layers=2,
    value_layers=3, actor_layers=4, actor_mean_scale=5.0, obs_layers=2, agent="dreamer", size="custom",
    latent="gaussian", classes=32, unimix=0.01, norm="rms", blocks=8, mlp_layers=3, head_layers=1, conv="maxpool",
    twohot_bins=255, continue_head=True, actor_min_std=0.1, actor_max_std=1.0, actor_dist="bounded_normal",
    nets="current", vector_layers=0, vector_units=0, actor_outscale=0.01, twohot_space="symexp")
"""The ``model`` group's defaults up to format 2."""
OLD_LOSS = dict(
    representation="reconstruction", obs_scale=1.0, reward_scale=1.0, kl_scale=1.0, free_nats=3.0, horizon=15,
    gamma=0.99, lmbda=0.95, value_estimate="lambda", value_steps=5, exploration_noise=0.3, act_with_mode=False,
    sample_imagined_heads=False, start_state_targets=False, kl="free_nats", kl_balance=0.8, dyn_scale=1.0,
    rep_scale=0.1, continue_scale=1.0, actor_reinforce=1.0, actor_backprop_baseline=False, actor_entropy=3e-4,
    return_norm=True, slow_value_rate=0.02, slow_value_every=1, slow_value_reg=1.0, replay_value_scale=0.3,
    continue_discount=True, continue_mode="prob")
"""The ``loss`` group's defaults up to format 2."""
OLD_BEHAVIOR = dict(kind="actor", plan_horizon=12, candidates=1000, top_k=100, iterations=10, warm_start=False)
"""The ``behavior`` group's defaults up to format 2."""

_WM = "world_model."
_ACTOR, _CRITIC = "behavior.actor.", "behavior.critic."
ALIASES: dict[str, tuple[str, ...]] = {
    "model.state_dim": (_WM + "latent.state_dim",),
    "model.belief_dim": (_WM + "rssm.belief_dim",),
    "model.rssm_hidden": (_WM + "rssm.hidden",),
    "model.min_std": (_WM + "latent.min_std",),
    "model.cnn_depth": (_WM + "cnn_depth",),
    "model.mlp_hidden": (_WM + "units", _WM + "vector_units", _ACTOR + "units", _CRITIC + "units"),
    "model.reward_layers": (_WM + "head_layers",),
    "model.value_layers": (_CRITIC + "layers",),
    "model.actor_layers": (_ACTOR + "layers",),
    "model.actor_mean_scale": (_ACTOR + "mean_scale",),
    "model.obs_layers": (_WM + "vector_layers",),
    "model.size": ("nets.size",),
    "model.latent": (_WM + "latent.kind",),
    "model.classes": (_WM + "latent.classes",),
    "model.unimix": (_WM + "latent.unimix",),
    "model.norm": ("nets.norm",),
    "model.blocks": (_WM + "rssm.blocks",),
    "model.mlp_layers": (_ACTOR + "layers", _CRITIC + "layers", _WM + "vector_layers"),
    "model.head_layers": (_WM + "head_layers",),
    "model.twohot_bins": ("nets.twohot_bins",),
    "model.continue_head": (_WM + "continue_head",),
    "model.actor_min_std": (_ACTOR + "min_std",),
    "model.actor_max_std": (_ACTOR + "max_std",),
    "model.actor_dist": (_ACTOR + "dist",),
    "model.vector_layers": (_WM + "vector_layers",),
    "model.vector_units": (_WM + "vector_units",),
    "model.actor_outscale": (_ACTOR + "outscale",),
    "model.twohot_space": ("nets.twohot_space",),
    **{f"loss.{f}": (f"{_WM}loss.{f}",) for f in ("representation", "obs_scale", "reward_scale", "kl_scale",
                                                   "free_nats", "kl", "kl_balance", "dyn_scale", "rep_scale",
                                                   "continue_scale")},
    **{f"loss.{f}": (f"behavior.{f}",) for f in ("horizon", "gamma", "lmbda", "value_estimate", "value_steps",
                                                  "sample_imagined_heads", "start_state_targets", "continue_mode")},
    "loss.exploration_noise": ("behavior.exploration.noise",),
    "loss.act_with_mode": ("behavior.exploration.act_with_mode",),
    "loss.actor_reinforce": (_ACTOR + "reinforce",),
    "loss.actor_backprop_baseline": (_ACTOR + "backprop_baseline",),
    "loss.actor_entropy": (_ACTOR + "entropy",),
    "loss.return_norm": (_ACTOR + "return_norm",),
    "loss.slow_value_rate": (_CRITIC + "slow_rate",),
    "loss.slow_value_every": (_CRITIC + "slow_every",),
    "loss.slow_value_reg": (_CRITIC + "slow_reg",),
    "loss.replay_value_scale": (_CRITIC + "replay_scale",),
    "loss.continue_discount": (_WM + "continue_discount",),
    "behavior.plan_horizon": ("behavior.planner.horizon",),
    **{f"behavior.{f}": (f"behavior.planner.{f}",) for f in ("candidates", "top_k", "iterations", "warm_start")},
}
"""Old flag name (``group.field``) -> the field(s) of the nested layout it sets (one release of aliases)."""

REMOVED: dict[str, str] = {
    "model.agent": "a variant is now its parts: start from its preset (--preset dreamer_v2 / dreamer_v3 / ...) or "
                   "name the parts (--nets.style, --world-model.rssm.core, --world-model.latent.kind, "
                   "--behavior.losses, --behavior.actor.dist, ...; docs/config.md)",
    "model.nets": "the 2023 and current V3 networks are now --nets.style v3_2023 / v3 with "
                  "--world-model.rssm.core norm_gru / block_gru",
    "model.conv": "the V3 image networks are now --world-model.image-encoder conv_stride / conv_maxpool with "
                  "--world-model.image-decoder deconv_mse / upsample_mse",
}
"""Old flag names with no one-to-one successor, and what to give instead."""


def migrate_config(data: dict, fmt: int | None) -> dict:
    """A saved config (plain data) of checkpoint format ``fmt`` in today's terms; ``data`` is left as it is.

    Formats 1-2 (flat): :func:`migrate_flat`. Format 3: V1's vector encoder, then its own class with one
    activated output layer more than ``vector_layers``, is today's ``mlp_out``; V1's tanh-normal actor, whose
    output layer ignored ``behavior.actor.outscale`` (then 0.01 by default), has outscale 1.
    """
    if is_flat(data):
        return migrate_flat(data)
    if fmt is None or fmt > 3:
        return data
    data = copy.deepcopy(data)
    wm, actor = data.setdefault("world_model", {}), data.setdefault("behavior", {}).setdefault("actor", {})
    if data.get("nets", {}).get("style", "v1") == "v1" and wm.get("vector_encoder", "mlp") == "mlp":
        wm["vector_encoder"] = "mlp_out"
    if actor.get("dist", "tanh_normal") == "tanh_normal":
        actor["outscale"] = 1.0
    return data


def is_flat(data: dict) -> bool:
    """Whether ``data`` (a config as plain data) has the layout of formats 1 and 2."""
    return "model" in data or "loss" in data


def migrate_flat(data: dict) -> dict:
    """The nested config (plain data) of a format 1 / 2 config: the parts ``model.agent`` implied, named."""
    m = {**OLD_MODEL, **data.get("model", {})}
    loss = {**OLD_LOSS, **data.get("loss", {})}
    b = {**OLD_BEHAVIOR, **data.get("behavior", {})}
    agent = m["agent"]
    v1, v2 = agent == "dreamer", agent == "dreamer_v2"
    twohot = not v1 and m["twohot_bins"] > 0
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in ("model", "loss", "behavior")}
    out["nets"] = dict(style="v1" if v1 else "v2" if v2 else "v3_2023" if m["nets"] == "2023" else "v3",
                       norm=m["norm"], size=m["size"], twohot_bins=m["twohot_bins"] if twohot else 255,
                       twohot_space=m["twohot_space"])
    out["world_model"] = dict(
        latent=dict(kind=m["latent"], state_dim=m["state_dim"], min_std=m["min_std"], classes=m["classes"],
                    unimix=m["unimix"]),
        rssm=dict(core="gru_cell" if v1 else "norm_gru_gates" if v2 else
                  "norm_gru" if m["nets"] == "2023" else "block_gru",
                  belief_dim=m["belief_dim"], hidden=m["rssm_hidden"], blocks=m["blocks"]),
        loss={f: loss[f] for f in ("representation", "obs_scale", "reward_scale", "kl", "kl_scale", "free_nats",
                                   "kl_balance", "dyn_scale", "rep_scale", "continue_scale")},
        image_encoder="conv" if v1 else "conv_stride" if v2 else f"conv_{m['conv']}",
        image_decoder="deconv" if v1 else "deconv_normal" if v2 else
        "deconv_mse" if m["conv"] == "stride" else "upsample_mse",
        vector_encoder="mlp_out" if v1 else "mlp" if v2 else "mlp_symlog",
        vector_decoder="mlp_normal" if v1 or v2 else "mlp_symlog",
        cnn_depth=m["cnn_depth"],
        vector_layers=m["obs_layers"] if v1 else m["vector_layers"] or m["mlp_layers"],
        vector_units=m["mlp_hidden"] if v1 else m["vector_units"] or m["mlp_hidden"],
        units=m["mlp_hidden"], reward_head="twohot" if twohot else "normal",
        head_layers=m["reward_layers"] if v1 else m["head_layers"],
        continue_head=bool(m["continue_head"]) and not v1, continue_discount=loss["continue_discount"])
    out["behavior"] = dict(
        kind=b["kind"], losses="v1" if v1 else "v2_v3",
        **{f: loss[f] for f in ("horizon", "gamma", "lmbda", "value_estimate", "value_steps",
                                "sample_imagined_heads", "start_state_targets", "continue_mode")},
        actor=dict(dist="tanh_normal" if v1 else m["actor_dist"],
                   layers=m["actor_layers"] if v1 else m["mlp_layers"], units=m["mlp_hidden"],
                   mean_scale=m["actor_mean_scale"], min_std=m["actor_min_std"], max_std=m["actor_max_std"],
                   outscale=1.0 if v1 else m["actor_outscale"], reinforce=loss["actor_reinforce"],
                   backprop_baseline=loss["actor_backprop_baseline"], entropy=loss["actor_entropy"],
                   return_norm=loss["return_norm"]),
        critic=dict(head="twohot" if twohot else "normal", layers=m["value_layers"] if v1 else m["mlp_layers"],
                    units=m["mlp_hidden"], slow_rate=loss["slow_value_rate"], slow_every=loss["slow_value_every"],
                    slow_reg=loss["slow_value_reg"], replay_scale=loss["replay_value_scale"]),
        exploration=dict(noise=loss["exploration_noise"], act_with_mode=loss["act_with_mode"]),
        planner=dict(horizon=b["plan_horizon"], candidates=b["candidates"], top_k=b["top_k"],
                     iterations=b["iterations"], warm_start=b["warm_start"]))
    return out
