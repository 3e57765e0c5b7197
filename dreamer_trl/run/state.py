"""Save and restore a whole training run: networks, optimizers, replay buffer, counters, every RNG.

docs/reliability.md P1: a run stopped at a checkpoint and resumed in a new process continues bit-exactly
(on CPU with fixed threads) as the uninterrupted run does. The save point is a schedule boundary: the
open episode is marked truncated in the buffer and the collector restarts with a fresh episode and
new trajectory ids, in the uninterrupted run as well, so no sampled sequence spans a save (with
``schedule.replay_windows = "stream"`` one may, as it crosses any episode start, in both runs alike).
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from dreamer_trl.config import DreamerConfig, from_dict
from dreamer_trl.config.legacy import migrate_config
from dreamer_trl.data.replay import SequenceReplayBuffer, load_buffer, mark_last_row_truncated, save_buffer
from dreamer_trl.run.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, verify_checkpoint
from dreamer_trl.training.update import DreamerUpdate

FORMAT = 4
"""4: V1's networks built from the shared layers (``model/layers.py``) and the world model's parts named
(``module.transition.module.observe``, ``...decoder``, ``module.reward``) where TorchRL's wrapper numbered them;
3: the config nested by part (``config/legacy.py`` migrates the flat config of 1 and 2 when it is read);
2: one RSSM over recurrent cores (V1's GRU cell moved into ``rssm.core``); 1: V1 had its own RSSM class."""

# Format 1 -> 2, Dreamer V1 / PlaNet world models only: their RSSM's parameters under the one RSSM's names.
_V1_RSSM_RENAMES = [
    (re.compile(r"(^|\.)rssm\.(img_in|gru)\."), r"\1rssm.core.\2."),
    (re.compile(r"(^|\.)rssm\.img_out\.0\.(weight|bias)$"), r"\1rssm.img_out.0.0.\2"),
    (re.compile(r"(^|\.)rssm\.img_out\.2\.(weight|bias)$"), r"\1rssm.img_out.1.\2"),
    (re.compile(r"(^|\.)rssm\.obs_out\.(weight|bias)$"), r"\1rssm.obs_out.2.\2"),
]

# Format 3 -> 4: the world model's numbered parts, named.
_WM_PARTS = [("module.0.module.0.", "module.transition.module.observe."),
             ("module.0.module.1.", "module.transition.module.decoder."), ("module.1.", "module.reward.")]
_OBSERVE, _DECODER, _REWARD = (new for _, new in _WM_PARTS)


def _renamed(module_state: dict, rename) -> dict:
    return type(module_state)((rename(k), v) for k, v in module_state.items())


def _dense_stack(prefix: str, module_state: dict, output_layer: bool, new_prefix: str | None = None):
    """Format 3's V1 MLP ``prefix{j}`` (Linear at the even positions j of Linear, ELU, ..., Linear) -> the shared
    MLP's ``new_prefix{j / 2}.0`` (its dense layers), the last Linear ``new_prefix{L}`` when it is an output layer."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(weight|bias)$")
    last = max((int(m.group(1)) for m in map(pattern.match, module_state) if m), default=None)
    new_prefix = new_prefix or prefix

    def rename(key: str) -> str:
        m = pattern.match(key)
        if m is None:
            return key
        j = int(m.group(1))
        layer = f"{j // 2}" if output_layer and j == last else f"{j // 2}.0"
        return f"{new_prefix}{layer}.{m.group(2)}"
    return rename


def _conv_stack(prefix: str):
    """Format 3's V1 conv stack ``prefix{j}`` (conv at the even positions of conv, ReLU, ...) -> the shared
    stack's ``prefix{3 j / 2}`` (conv, channel norm, activation)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(weight|bias)$")

    def rename(key: str) -> str:
        m = pattern.match(key)
        return key if m is None else f"{prefix}{3 * (int(m.group(1)) // 2)}.{m.group(2)}"
    return rename


def _v1_networks_renamed(state: dict, cfg: DreamerConfig) -> dict:
    """Format 3 -> 4 for the parts that format 3 built from V1's own classes: the conv encoder and decoder and
    the tanh-normal actor (any style), the vector encoder, decoder, the normal heads and the state model (style v1)."""
    wm, v1 = cfg.world_model, cfg.nets.style == "v1"
    px = cfg.env.from_pixels
    own = [cfg.behavior.kind == "actor" and cfg.behavior.actor.dist == "tanh_normal",
           px and wm.image_encoder == "conv", px and wm.image_decoder == "deconv"]
    if any(own) and not v1:
        raise ValueError(f"a format-3 checkpoint with V1's networks on nets.style {cfg.nets.style!r} (they had "
                         "no norm, whatever the style): it cannot be migrated; evaluate it with the code that wrote it")
    if not v1:
        return state
    out = dict(state)
    if "world_model" in state:
        w = state["world_model"]
        conv = w.get(_OBSERVE + "encoder.net.0.weight")
        pixels = conv is not None and conv.dim() == 4
        steps = []
        if pixels and wm.image_encoder == "conv":
            steps.append(_conv_stack(_OBSERVE + "encoder.net."))
        elif not pixels and wm.vector_encoder == "mlp_out":  # Linear ... Linear, ELU: all dense layers now
            steps.append(_dense_stack(_OBSERVE + "encoder.net.", w, output_layer=False))
        if pixels and wm.image_decoder == "deconv":
            steps.append(_conv_stack(_DECODER + "module.net.net."))
        elif not pixels and wm.vector_decoder == "mlp_normal":
            steps.append(_dense_stack(_DECODER + "module.net.net.", w, output_layer=True))
        if wm.reward_head == "normal":
            steps.append(_dense_stack(_REWARD + "module.net.net.", w, output_layer=True))
        steps.append(_dense_stack("state_model.", w, output_layer=True, new_prefix="state_model.net."))
        for step in steps:
            w = _renamed(w, step)
        out["world_model"] = w
    if "actor" in state and cfg.behavior.actor.dist == "tanh_normal":
        out["actor"] = _renamed(state["actor"], _dense_stack("module.net.net.", state["actor"], output_layer=True))
    if "value" in state and cfg.behavior.critic.head == "normal":
        out["value"] = _renamed(state["value"], _dense_stack("module.net.net.", state["value"], output_layer=True))
    return out


def migrate_state(state: dict, fmt: int, cfg: DreamerConfig | None = None) -> dict:
    """The module states of a checkpoint of format ``fmt`` under today's parameter names (same order, so the
    optimizer states, which are kept by parameter position, stay as they are). ``cfg``: the run's config in
    today's terms (:func:`~dreamer_trl.config.legacy.migrate_config`), needed for formats below 4."""
    if fmt == FORMAT:
        return state
    if fmt not in (1, 2, 3):
        raise ValueError(f"checkpoint format {fmt!r} is not known (this code reads formats 1 to {FORMAT})")
    if cfg is None:
        raise ValueError(f"migrating a checkpoint of format {fmt} needs its config")
    out = dict(state)
    for name, module_state in state.items():
        if fmt == 1 and isinstance(module_state, dict) and any(k.endswith("rssm.gru.weight_ih") for k in module_state):
            renamed = {}  # a V1 world model (V2 / V3 RSSMs kept their names)
            for key, value in module_state.items():
                for pattern, replacement in _V1_RSSM_RENAMES:
                    key = pattern.sub(replacement, key)
                renamed[key] = value
            out[name] = module_state = type(module_state)(renamed)
        if name == "world_model":
            out[name] = _renamed(module_state, _wm_part)
    return _v1_networks_renamed(out, cfg)


def _wm_part(key: str) -> str:
    for old, new in _WM_PARTS:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def save_run(path: str | Path, *, modules: dict[str, nn.Module], updater: DreamerUpdate,
             buffer: SequenceReplayBuffer, counters: dict, config: dict, preset: str, envs: dict,
             pace: dict | None = None) -> Path:
    """Checkpoint everything needed to continue the run exactly (see module docstring).

    ``envs`` are DMC envs (a :class:`~dreamer_trl.data.dmc.DMCEnv`, also inside a TransformedEnv, which forwards
    the calls): their task random streams are saved through ``task_random_state()``.
    """
    mark_last_row_truncated(buffer)
    rng_tensors, rng_values = rng_state()
    state = {**{k: m.state_dict() for k, m in modules.items()}, "optimizers": updater.state_dict(),
             "rng": rng_tensors}
    meta = {"format": FORMAT, "config": config, "preset": preset, "counters": counters,
            "env_steps": counters["env_steps"], "updates": counters["updates"],
            "updater": {"skipped": updater.skipped, "skip_streak": updater.skip_streak},
            "rng": rng_values, "env_rng": {k: e.task_random_state() for k, e in envs.items()}}
    if pace is not None:
        meta["pace"] = pace
    return save_checkpoint(path, state, meta, parts={"replay": lambda d: save_buffer(buffer, d)})


def restore_run(path: str | Path, *, modules: dict[str, nn.Module], updater: DreamerUpdate,
                buffer: SequenceReplayBuffer, envs: dict, map_location="cpu", pace=None) -> dict:
    """Load a :func:`save_run` checkpoint into freshly built objects; returns the counters. RNG last. ``pace``
    (a :class:`~dreamer_trl.training.trainer.Pace`) gets the saved costs where the checkpoint has them."""
    path = verify_checkpoint(path)
    state, meta = load_checkpoint(path, map_location=map_location)
    try:
        fmt = meta.get("format")
        state = migrate_state(state, fmt, from_dict(migrate_config(meta["config"], fmt)) if fmt != FORMAT else None)
    except ValueError as err:
        raise ValueError(f"checkpoint {path}: {err}") from None
    missing = set(modules) - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks the modules {sorted(missing)}")
    for name, module in modules.items():
        module.load_state_dict(state[name])
    updater.load_state_dict(state["optimizers"])
    updater.skipped, updater.skip_streak = meta["updater"]["skipped"], meta["updater"]["skip_streak"]
    load_buffer(buffer, path / "replay")
    for name, env in envs.items():
        env.set_task_random_state(meta["env_rng"][name])
    if pace is not None and "pace" in meta:
        pace.load_state_dict(meta["pace"])
    set_rng_state(state["rng"], meta["rng"])
    return meta["counters"]
