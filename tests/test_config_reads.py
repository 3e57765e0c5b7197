"""dreamer_trl.config.reads: the table of who reads each field is true, and unread fields are refused.

The table is checked against the code, not against itself: for each representative preset (at tiny sizes, as
tests/test_golden.py builds them) and each field of nets, world_model, behavior and optim, the field is changed to
another valid value. Where the table says the chosen parts do not read it, ``validate`` must refuse it by name,
and building the agent with it anyway must give the same numbers (or fail). Where the table says they read it,
the agent built with it must give other numbers: the loss terms of two updates, a fingerprint of the parameters
(and of the slow critic and return statistics the update keeps), or the actions of two policy calls.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_batch  # noqa: E402

from dreamer_trl import keys  # noqa: E402
from dreamer_trl.behavior.policy import make_policy  # noqa: E402
from dreamer_trl.builders.agent import make_agent, make_update  # noqa: E402
from dreamer_trl.builders.networks import latent_dims  # noqa: E402
from dreamer_trl.config import (  # noqa: E402
    PRESETS,
    DreamerConfig,
    field_names,
    get_field,
    make_preset,
    parse_args,
    reads,  # noqa: E402
    schema,
    set_field,
    validate,
)
from dreamer_trl.config.sizes import SIZE_FIELDS, apply_size, v3_size  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
A, OBS_DIM, B, T = 2, 5, 2, 4

# --- the command line refuses unread fields before any work ---------------------------------------------

REFUSED = {
    "v3_start_targets": (["--preset", "dreamer_v3", "--world-model.loss.representation", "contrastive",
                          "--behavior.value-estimate", "nstep", "--behavior.start-state-targets"],
                         ["'behavior.start_state_targets'", "actor and critic losses", "behavior.losses v1",
                          "not with behavior.losses v2_v3"]),
    "v1_family_fields": (["--preset", "paper", "--nets.norm", "layer", "--world-model.rssm.blocks", "3",
                          "--world-model.loss.rep-scale", "7"],
                         ["'nets.norm'", "nets.style not v1", "not with nets.style v1", "world_model.rssm.blocks",
                          "world_model.loss.rep_scale"]),
    "width_set_by_size": (["--preset", "dreamer_v3_proprio_current", "--world-model.rssm.belief-dim", "256"],
                          ["'world_model.rssm.belief_dim' 256 is set by nets.size size1m (512)", "--nets.size custom"]),
    "old_variant_switch": (["--preset", "state", "--model.agent", "dreamer_v3"],
                           ["--model.agent was removed", "--preset dreamer_v2 / dreamer_v3", "--world-model.rssm.core"]),
}


@pytest.mark.parametrize("argv, fragments", REFUSED.values(), ids=REFUSED.keys())
def test_command_line_refuses_unread_fields(argv, fragments, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_refusal_comes_before_anything_heavy():
    code = ("import sys; from dreamer_trl.config import parse_args\n"
            "try: parse_args(['--preset', 'dreamer_v3', '--behavior.start-state-targets'])\n"
            "except SystemExit as e: print(e.code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


@pytest.mark.parametrize("preset", ["dreamer_v3_current", "dreamer_v3_proprio_current"])
def test_named_sizes_are_written_into_the_fields(preset):
    cfg, _ = parse_args(["--preset", preset])
    size = v3_size(cfg.nets.size)
    wm = cfg.world_model
    assert (wm.rssm.belief_dim, wm.rssm.hidden, wm.latent.state_dim, wm.latent.classes, wm.units,
            cfg.behavior.actor.units, cfg.behavior.critic.units) == (size.deter, size.hidden, size.stoch,
                                                                     size.classes, size.units, size.units, size.units)
    assert parse_args(["--preset", "dreamer_v3_proprio_current"])[0].world_model.rssm.belief_dim == 512


def test_size_on_the_command_line_comes_first_and_custom_keeps_the_widths():
    cfg, _ = parse_args(["--preset", "dreamer_v3", "--nets.size", "size12m", "--behavior.actor.layers", "3"])
    assert (cfg.nets.size, cfg.world_model.rssm.belief_dim, cfg.world_model.latent.classes,
            cfg.behavior.actor.layers) == ("size12m", 2048, 16, 3)
    cfg, _ = parse_args(["--preset", "dreamer_v3_proprio_current", "--nets.size", "custom",
                         "--world-model.rssm.belief-dim", "256"])
    assert (cfg.world_model.rssm.belief_dim, cfg.world_model.units) == (256, 64)


def test_help_shows_the_sizes_widths(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        parse_args(["--preset", "dreamer_v3_proprio_current", "--help"])
    assert "deterministic belief h_t size (default: 512)" in " ".join(capsys.readouterr().out.split())


def test_validate_refuses_widths_that_disagree_with_the_size():
    cfg = make_preset("dreamer_v3_current")
    cfg.behavior.critic.units = 64
    with pytest.raises(ValueError, match=r"'behavior.critic.units' 64 is set by nets.size size200m \(1024\)"):
        validate(cfg)
    validate(apply_size(cfg, "size1m"))


def test_a_preset_is_built_for_the_observation_kind_given():
    cfg, _ = parse_args(["--preset", "dreamer_v3", "--env.no-from-pixels"])  # V3's symlog vector nets, not V1's
    wm = cfg.world_model
    assert (wm.vector_encoder, wm.vector_decoder, wm.image_encoder) == ("mlp_symlog", "mlp_symlog", "conv")
    cfg, _ = parse_args(["--preset", "dreamer_v2", "--env.no-from-pixels"])
    assert (cfg.world_model.vector_layers, cfg.world_model.cnn_depth) == (4, 32)


def test_an_override_that_makes_a_preset_value_unread_puts_it_back_to_its_default():
    cfg, _ = parse_args(["--preset", "dreamer_v3", "--world-model.loss.kl", "free_nats"])
    assert (cfg.world_model.loss.dyn_scale, cfg.world_model.loss.kl) == (1.0, "free_nats")  # 0.5 was the preset's


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_sets_only_fields_it_reads(preset):
    cfg = make_preset(preset)
    assert reads.unread_fields(cfg) == [] and reads.size_mismatches(cfg) == []
    validate(cfg)


def test_every_field_is_in_the_table():
    assert set(reads.READS) <= set(field_names())
    for name in field_names():
        assert reads.reads(name), name


def test_docs_config_md_is_generated_from_the_table():
    assert (ROOT / "docs" / "config.md").read_text() == reads.markdown(), \
        "regenerate: python -m dreamer_trl.config.reads --markdown > docs/config.md"


# --- the table is true -----------------------------------------------------------------------------------

def _tiny(state_dim: int, belief: int, units: int, **more) -> dict:
    return {"world_model.latent.state_dim": state_dim, "world_model.rssm.belief_dim": belief,
            "world_model.rssm.hidden": belief, "world_model.units": units, "behavior.actor.units": units,
            "behavior.critic.units": units, **more}


PIXELS_V1 = _tiny(4, 16, 16, **{"world_model.cnn_depth": 4})
VECTOR_V1 = _tiny(4, 16, 16, **{"world_model.vector_units": 16})
PIXELS_FAMILY = _tiny(4, 16, 16, **{"world_model.cnn_depth": 4, "world_model.latent.classes": 4})
SMALL_PLAN = {f"behavior.planner.{k}": v for k, v in dict(horizon=3, candidates=20, top_k=5, iterations=2).items()}


def _case(preset: str, changes: dict, size: str | None = None) -> DreamerConfig:
    cfg = make_preset(preset)
    if size is not None:
        cfg = apply_size(cfg, size)
    for name, value in changes.items():
        set_field(cfg, name, value)
    validate(cfg)
    return cfg


H4, H6 = {"behavior.horizon": 4}, {"behavior.horizon": 6}
CASES = {
    "paper": lambda: _case("paper", PIXELS_V1 | H6),
    "state": lambda: _case("state", VECTOR_V1 | H6),
    "state_nstep": lambda: _case("state", VECTOR_V1 | H6 | {"behavior.value_estimate": "nstep",
                                                            "behavior.value_steps": 2}),
    "planet_state": lambda: _case("planet_state", {k: v for k, v in VECTOR_V1.items() if "behavior." not in k}
                                  | SMALL_PLAN),
    # free nats 0: at 1 nat the tiny model's KL is clamped, and the KL choices give the same (zero) gradient
    "dreamer_v2": lambda: _case("dreamer_v2", PIXELS_FAMILY | H4 | {"world_model.loss.free_nats": 0.0}),
    "dreamer_v3": lambda: _case("dreamer_v3", PIXELS_FAMILY | H4),
    "dreamer_v3_proprio": lambda: _case("dreamer_v3_proprio", _tiny(4, 16, 16, **{
        "world_model.latent.classes": 4, "world_model.vector_layers": 2, "world_model.vector_units": 16}) | H4),
    "dreamer_v3_current": lambda: _case("dreamer_v3_current", H4, size="size1m"),
}

# The other value each kind of field is changed to, where the generic rule (halve a float, double an int, flip
# a switch, the next choice) would not show: 0 means "use another field" for these, clips must bind, epsilons
# must be large enough to move float32 numbers.
OTHER = {
    "world_model.vector_layers": lambda v: 1, "world_model.vector_units": lambda v: 8,
    "optim.grad_clip": lambda v: 1e-3, "optim.model_grad_clip": lambda v: 1e-3, "optim.agc": lambda v: 1e-3,
    "optim.adam_eps": lambda v: 1.0, "optim.model_adam_eps": lambda v: 1.0, "optim.laprop_eps": lambda v: 1.0,
    "behavior.critic.slow_every": lambda v: 2 if v == 1 else 1, "world_model.loss.kl_balance": lambda v: 0.3,
    "world_model.loss.free_nats": lambda v: 10.0,  # above the tiny models' KL: the clamp binds
    "nets.size": lambda v: "size1m" if v == "custom" else "size12m",
}

# Fields the table says are read that validate may still refuse when changed alone, with the reason (the widths
# of a named size are refused naming the size: give model.size custom to change them).
REFUSED_THOUGH_READ = {
    # choices that swap parts: the new parts do not read what the preset set for the old ones
    "nets.style": "the v1 style reads no nets.norm (set by the V2 / V3 presets)",
    "behavior.losses": "the v1 losses read none of the v2_v3 actor and critic options a V2 / V3 preset set",
    "world_model.latent.kind": "gaussian latents do not read classes / unimix",
    "world_model.continue_head": "without a continue head continue_discount / continue_mode are unread; the v1 "
                                 "losses read no continue head",
    "optim.kind": "laprop does not read the Adam fields a preset set (and pins loss.actor_reinforce to 1)",
    "world_model.loss.kl": "another KL does not read dyn_scale / kl_balance",
    "behavior.target_reward": "V2's alignment (same) has no replay critic term, which the current V3 presets set",
    "world_model.loss.representation": "contrastive and reward have no decoder to read the preset's decoder part",
    "behavior.kind": "the planner does not read the actor's fields",
    "behavior.value_estimate": "V_R reads no lmbda / value_steps",
    "behavior.actor.dist": "tanh_normal does not read min_std / max_std / outscale, trunc_normal max_std",
    # values validate pins: one LaProp over everything takes only the REINFORCE gradient; the replay critic term
    # trains the world model, so it cannot come after the world model's own step
    "behavior.critic.replay_scale": "0 with optim.step_model_first",
    "behavior.actor.reinforce": "1 with optim.kind laprop",
}


# (case, field): read, but its change does not reach the numbers this test compares, with the reason.
SAME_THOUGH_READ = {
    # The critic's output layer starts at zero (twohot, outscale 0), so the baseline's gradient into the actor is
    # zero in the first update and, after one critic step at lr 3e-5, below float32 resolution of the actor's
    # Adam step in the second; the pixel case (dreamer_v3) shows the change.
    ("dreamer_v3_proprio", "behavior.actor.backprop_baseline"): "zero-initialised critic output",
}


def other_value(name: str, value):
    """Another valid value of ``name`` (or None when there is none to try)."""
    if name in OTHER:
        return OTHER[name](value)
    sub, leaf = schema.owner(DreamerConfig(), name)
    kind = schema.field_types(type(sub))[leaf]
    choices = getattr(kind, "__args__", None) if getattr(kind, "__origin__", None) is not None else None
    if isinstance(value, bool):
        return not value
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, int):
        return 2 * value if value else 3
    return value / 2 if value else 0.5


def changed(cfg: DreamerConfig, name: str, value) -> DreamerConfig:
    new = copy.deepcopy(cfg)
    set_field(new, name, value)
    if name == "nets.size":  # a size comes with its widths
        new = apply_size(new, value)
    return new


def fingerprint(modules) -> list[float]:
    rows = []
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            t64 = t.detach().double()
            rows.append((t.numel(), float(t64.sum()), float(t64.abs().sum())))
    return [x for row in sorted(rows) for x in row]


def signature(cfg: DreamerConfig):
    """The numbers of the agent ``cfg`` builds: the actions of two policy calls on 8 envs before any update (the
    planner's warm start shows in the second; a trained actor would saturate the bounds), then the loss terms of
    two updates and the parameters (with the slow critic and return statistics the update keeps)."""
    obs_key = keys.PIXELS if cfg.env.from_pixels else keys.OBSERVATION
    obs_shape = (3, 64, 64) if cfg.env.from_pixels else (OBS_DIM,)
    from torchrl.data import Bounded
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    spec = Bounded(-1.0, 1.0, (A,))
    torch.manual_seed(0)
    agent = make_agent(obs_key, obs_shape, A, cfg, action_spec=spec)
    policy = make_policy(agent.world_model, agent.behavior, spec, cfg.behavior.exploration.noise,
                         act_with_mode=cfg.behavior.exploration.act_with_mode and agent.planner is None)
    S, D = latent_dims(cfg)
    td = make_batch(8, 1, A, obs_key, OBS_DIM, seed=7)[:, 0].select(obs_key, "is_init")
    td.update({"state": torch.zeros(8, S), "belief": torch.zeros(8, D), "prev_action": torch.zeros(8, A)})
    with set_exploration_type(ExplorationType.RANDOM):
        first = policy(td.clone())
        td.update({"state": first["state"], "belief": first["belief"], "prev_action": first["action"]})
        td["is_init"] = torch.zeros_like(td["is_init"])
        second = policy(td)
    actions = first["action"].flatten().tolist() + second["action"].flatten().tolist()
    torch.manual_seed(1)
    updater = make_update(agent, cfg.optim)
    out = []
    for i in range(2):
        batch = make_batch(B, T, A, obs_key, OBS_DIM, seed=100 + i, latents=(S, D))
        terminated = torch.zeros(B, T, 1, dtype=torch.bool)
        terminated[-1, -1] = True
        batch["next", "terminated"] = terminated
        batch["is_init"][0, 0] = False  # one window starts mid-episode, after a real action
        batch["prev_action"][0, 0] = 0.5
        metrics = updater.update(batch)
        out += [float(v) for k, v in sorted(metrics.items()) if k.startswith("loss/")]
    hooks = [getattr(h, "target", h) for h in agent.hooks]
    out += fingerprint([m for m in (agent.world_model, agent.actor, agent.value, *hooks)
                        if isinstance(m, torch.nn.Module)])
    return out + actions


FIELDS = [n for n in field_names() if schema.group_of(n) in reads.ENFORCED]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_table_is_true(case):
    base = CASES[case]()
    reference = signature(base)
    wrong = []
    for name in FIELDS:
        value = other_value(name, get_field(base, name))
        new = changed(base, name, value)
        try:
            validate(new)
            refused = None
        except ValueError as err:
            refused = str(err)
        if not reads.is_read(new, name):
            if refused is None or repr(name) not in refused:
                wrong.append(f"{name} -> {value!r}: the table says unread, validate says {refused!r}")
                continue
            try:
                same = signature(new) == reference
            except (ValueError, RuntimeError, KeyError):  # the builders refuse it too
                same = True
            if not same:
                wrong.append(f"{name} -> {value!r}: the table says unread, but the numbers change")
        elif refused is not None:
            by_size = name in SIZE_FIELDS and base.nets.size != "custom" and "nets.size" in refused
            if not (by_size or name in REFUSED_THOUGH_READ):
                wrong.append(f"{name} -> {value!r}: read, but refused: {refused}")
        elif (case, name) not in SAME_THOUGH_READ and signature(new) == reference:
            wrong.append(f"{name} -> {value!r}: the table says read, but the numbers do not change")
    assert not wrong, "\n".join(wrong)


def test_counts_has_a_row_per_preset_within_the_field_count():
    from dreamer_trl.config import PRESETS

    rows = reads.counts().splitlines()
    assert [r.split(" | ")[0].strip("| ") for r in rows] == list(PRESETS)
    for row in rows:
        read, total = row.split(" | ")[1].split(" of ")
        assert 0 < int(read) < int(total) == len(FIELDS)
