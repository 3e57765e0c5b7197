"""dreamer_trl.config: paper defaults, field help, command-line parsing (tyro), validation, resume rules."""
import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dreamer_trl import config
from dreamer_trl.config import DreamerConfig, from_dict, parse_args, schema, set_field, to_dict, validate

ROOT = Path(__file__).resolve().parents[1]

# Dreamer V1 defaults (docs/sources.md), keyed by config field.
PAPER = {
    "world_model.latent.state_dim": 30, "world_model.rssm.belief_dim": 200, "world_model.rssm.hidden": 200, "world_model.latent.min_std": 0.1,
    "world_model.cnn_depth": 32, "world_model.units": 400, "world_model.vector_units": 400, "behavior.actor.units": 400, "behavior.critic.units": 400,
    "nets.style": "v1", "world_model.rssm.core": "gru_cell", "world_model.latent.kind": "gaussian",
    "world_model.image_encoder": "conv", "world_model.image_decoder": "deconv", "behavior.actor.dist": "tanh_normal",
    "behavior.losses": "v1", "world_model.continue_head": False, "world_model.head_layers": 2, "behavior.critic.layers": 3,
    "behavior.actor.layers": 4,
    "world_model.loss.kl_scale": 1.0, "world_model.loss.free_nats": 3.0, "behavior.horizon": 15, "behavior.gamma": 0.99, "behavior.lmbda": 0.95,
    "behavior.exploration.noise": 0.3,
    "optim.model_lr": 6e-4, "optim.actor_lr": 8e-5, "optim.value_lr": 8e-5, "optim.adam_eps": 1e-7,
    "optim.grad_clip": 100.0,
    "schedule.prefill_env_steps": 5000, "schedule.train_every": 1000, "schedule.updates_per_train": 100,
    "schedule.batch_size": 50, "schedule.seq_len": 50, "schedule.eval_every": 10_000,
    "env.action_repeat": 2, "env.from_pixels": True, "env.image_size": 64, "env.episode_frames": 1000,
}


def _flat(cfg: DreamerConfig) -> dict:
    """``group.field`` -> value over all sub-configs."""
    return {name: config.get_field(cfg, name) for name in config.field_names(cfg)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_error(argv, capsys, **kwargs) -> str:
    """Run parse_args expecting a usage error (exit code 2); return its stderr."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, **kwargs)
    assert exc.value.code == 2
    return capsys.readouterr().err


def _help(argv, capsys, monkeypatch) -> str:
    """``--help`` output with tyro's box drawing removed and whitespace collapsed."""
    monkeypatch.setenv("COLUMNS", "120")  # one column of boxes (tyro uses two on wider screens)
    with pytest.raises(SystemExit) as exc:
        parse_args(argv if "--help-all" in argv else [*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(re.sub("[│╭╮╰╯─]", " ", capsys.readouterr().out).split())


# --- presets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", sorted(PAPER.items()))
def test_paper_preset_matches_paper(name, expected):
    value = _flat(config.paper())[name]
    assert value == pytest.approx(expected) and type(value) is type(expected)


def test_paper_preset_is_the_dataclass_default():
    assert config.paper() == DreamerConfig()


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_presets_validate(preset):
    validate(config.PRESETS[preset]())


# PlaNet (Hafner et al. 2019; docs/sources.md), keyed by config field.
PLANET = {
    "behavior.kind": "planner", "behavior.planner.horizon": 12, "behavior.planner.candidates": 1000, "behavior.planner.top_k": 100,
    "behavior.planner.iterations": 10, "behavior.planner.warm_start": False,
    "world_model.latent.state_dim": 30, "world_model.rssm.belief_dim": 200, "world_model.rssm.hidden": 200, "world_model.latent.min_std": 0.1,
    "world_model.loss.free_nats": 3.0, "behavior.exploration.noise": 0.3,
    "optim.model_lr": 1e-3, "optim.adam_eps": 1e-4, "optim.grad_clip": 1000.0,
    "schedule.train_every": 1000, "schedule.updates_per_train": 100, "schedule.batch_size": 50, "schedule.seq_len": 50,
    "env.task": "cartpole_swingup", "env.action_repeat": 8, "env.from_pixels": True, "env.episode_frames": 1000,
}


@pytest.mark.parametrize("name, expected", sorted(PLANET.items()))
def test_planet_preset_matches_the_paper(name, expected):
    value = _flat(config.planet())[name]
    assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("task, repeat", [("cartpole_swingup", 8), ("reacher_easy", 4), ("cheetah_run", 4),
                                          ("finger_spin", 2), ("ball_in_cup_catch", 4), ("walker_walk", 2),
                                          ("hopper_hop", 2)])
def test_planet_action_repeat_follows_the_task_unless_given(task, repeat):
    assert config.planet(task).env.action_repeat == repeat == config.planet_action_repeat(task)
    for preset in ("planet", "planet_state"):
        cfg, _ = parse_args(["--preset", preset, "--env.task", task])
        assert (cfg.env.task, cfg.env.action_repeat) == (task, repeat)
    cfg, _ = parse_args(["--preset", "planet", f"--env.task={task}", "--env.action-repeat", "3"])
    assert cfg.env.action_repeat == 3
    assert parse_args(["--preset", "state", "--env.task", task])[0].env.action_repeat == 2  # Dreamer keeps 2


def test_planet_state_differs_from_state_only_in_planet_parts():
    planet, base = _flat(config.planet_state()), _flat(config.state())
    differ = {k for k in planet if planet[k] != base[k]}
    # (the planner reads no actor or critic: their widths stay at the defaults instead of state's 200)
    assert differ == {"behavior.kind", "optim.model_lr", "optim.adam_eps", "optim.grad_clip", "env.action_repeat",
                      "behavior.actor.units", "behavior.critic.units"}
    assert planet["env.from_pixels"] is False and planet["env.action_repeat"] == 8


def test_planner_sizes_are_validated(capsys):
    assert "behavior.planner.top_k" in _parse_error(["--preset", "planet", "--behavior.planner.top-k", "2000"], capsys)
    assert "behavior.planner.iterations" in _parse_error(["--preset", "planet", "--behavior.planner.iterations", "0"], capsys)


def test_presets_are_independent_copies():
    a, b = config.paper(), config.paper()
    a.schedule.batch_size = 3
    assert b.schedule.batch_size == 50 and DreamerConfig().schedule.batch_size == 50


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_to_dict_from_dict_round_trip(preset):
    cfg = config.PRESETS[preset]()
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg


# --- fields and help ---------------------------------------------------------------------------------


def _field_docstrings() -> dict[str, str | None]:
    """``Class.field`` -> the string literal right under the field in schema.py (None when missing)."""
    out = {}
    for node in ast.parse(inspect.getsource(schema)).body:
        if isinstance(node, ast.ClassDef) and node.name != "DreamerConfig":
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    is_doc = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    out[f"{node.name}.{stmt.target.id}"] = nxt.value.value if is_doc else None
    return out


def test_every_field_has_one_line_help():
    docs = _field_docstrings()
    cfg = DreamerConfig()
    for name in config.field_names(cfg):
        sub, leaf = schema.owner(cfg, name)
        text = docs.get(f"{type(sub).__name__}.{leaf}")
        assert text and text.strip(), f"{name} has no help"
        assert "\n" not in text, f"{name} help is not one line"
    for part in {type(schema.owner(cfg, name)[0]) for name in config.field_names(cfg)}:
        assert part.__doc__ and part.__doc__.strip(), f"{part.__name__} has no description"


def test_top_level_options_do_not_clash_with_groups():
    assert not {"preset", "resume", "help"} & set(schema.GROUPS)


def test_help_lists_only_the_fields_the_chosen_parts_read(capsys, monkeypatch):
    for preset in ("state", "planet_state", "dreamer_v3_proprio_current"):
        text = _help(["--preset", preset], capsys, monkeypatch)
        cfg = config.make_preset(preset)
        for name in config.field_names(cfg):
            assert (_flag(name) + " " in text or _flag(name) + "," in text) == config.reads.is_read(cfg, name), name
        assert config.presets.SUMMARIES["dreamer_v3_proprio_current"] in text  # each preset's line whole


def test_help_all_lists_every_field_with_its_description(capsys, monkeypatch):
    text = _help(["--help-all"], capsys, monkeypatch)
    docs = _field_docstrings()
    cfg = DreamerConfig()
    for name in config.field_names(cfg):
        sub, leaf = schema.owner(cfg, name)
        assert _flag(name) in text, name
        description = " ".join(docs[f"{type(sub).__name__}.{leaf}"].split())
        assert description in text, name
    for preset in config.PRESETS:
        assert preset in text
    assert "--preset" in text and "--resume" in text


@pytest.mark.parametrize("preset, batch, task", [("paper", 50, "cheetah_run"), ("state", 8, "cartpole_balance"),
                                                 ("debug", 4, "cartpole_swingup")])
def test_help_shows_the_chosen_presets_values(preset, batch, task, capsys, monkeypatch):
    text = _help(["--preset", preset], capsys, monkeypatch)
    assert re.search(rf"--schedule\.batch-size INT sequences per batch \(default: {batch}\)", text), text
    assert re.search(rf"--env\.task STR .*?\(default: {task}\)", text)
    assert f"(default: {preset})" in text  # the --preset line


# --- set_field (programmatic overrides) ---------------------------------------------------------------


@pytest.mark.parametrize("name, text, expected", [
    ("schedule.batch_size", "16", 16),
    ("schedule.total_env_steps", "1_000", 1000),
    ("behavior.gamma", "0.9", 0.9),
    ("optim.model_lr", "1e-3", 1e-3),
    ("env.from_pixels", "false", False),
    ("env.from_pixels", "Yes", True),
    ("run.progress", "0", False),
    ("env.task", "walker_walk", "walker_walk"),
])
def test_set_field_converts_strings(name, text, expected):
    cfg = DreamerConfig()
    set_field(cfg, name, text)
    value = _flat(cfg)[name]
    assert value == expected and type(value) is type(expected)


def test_set_field_accepts_typed_values_and_widens_int_to_float():
    cfg = DreamerConfig()
    set_field(cfg, "schedule.batch_size", 7)
    set_field(cfg, "behavior.gamma", 1)
    assert cfg.schedule.batch_size == 7
    assert cfg.behavior.gamma == 1.0 and isinstance(cfg.behavior.gamma, float)


@pytest.mark.parametrize("name, value, fragment", [
    ("schedule.batch_sise", "3", "schedule.batch_size"),  # unknown name, with a suggestion
    ("no_such_field", "3", "no_such_field"),
    ("schedule.batch_size", "abc", "int"),
    ("schedule.batch_size", 1.5, "int"),
    ("schedule.batch_size", True, "int"),  # a bool is not an int here
    ("env.from_pixels", "maybe", "bool"),
    ("behavior.gamma", "high", "float"),
    ("run.precision", "fp16", "fp32, bf16"),
])
def test_set_field_refuses(name, value, fragment):
    cfg = DreamerConfig()
    with pytest.raises(ValueError, match=re.escape(fragment)) as exc:
        set_field(cfg, name, value)
    assert repr(name) in str(exc.value)
    assert cfg == DreamerConfig()  # unchanged


def test_set_field_suggests_the_group_of_a_bare_name():
    with pytest.raises(ValueError, match=r"did you mean schedule\.batch_size"):
        set_field(DreamerConfig(), "batch_size", 3)


@pytest.mark.parametrize("data, fragment", [
    ({"sched": {"batch_size": 3}}, "'sched'; did you mean 'schedule'"),
    ({"schedule": {"batch_sise": 3}}, "schedule.batch_sise"),
    ({"schedule": {"batch_size": "many"}}, "schedule.batch_size"),
])
def test_from_dict_refuses_by_name(data, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        from_dict(data)


# --- parse_args --------------------------------------------------------------------------------------


def test_parse_args_default_is_paper():
    cfg, preset = parse_args([])
    assert preset == "paper" and cfg == config.paper()


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_parse_args_preset(preset):
    cfg, name = parse_args(["--preset", preset])
    assert name == preset and cfg == config.PRESETS[preset]()


def test_parse_args_state_preset():
    cfg, _ = parse_args(["--preset", "state"])
    assert cfg == config.state()
    assert cfg.env.from_pixels is False and cfg.env.task == "cartpole_balance"


@pytest.mark.parametrize("argv", [["--schedule.batch-size", "16"], ["--schedule.batch-size=16"],
                                  ["--schedule.batch_size", "16"]])
def test_parse_args_override(argv):
    cfg, _ = parse_args(argv)
    expected = config.paper()
    expected.schedule.batch_size = 16
    assert cfg == expected


def test_parse_args_override_applies_on_top_of_preset():
    cfg, preset = parse_args(["--schedule.batch-size", "6", "--preset", "debug", "--env.no-from-pixels"])
    expected = config.debug(from_pixels=False)  # the preset is built for the observation kind given
    expected.schedule.batch_size = 6
    assert (expected.world_model.vector_units, expected.world_model.cnn_depth) == (32, 32)  # cnn depth: unread
    assert preset == "debug" and cfg == expected


def test_parse_args_dotted_overrides_of_every_kind():
    cfg, _ = parse_args(["--world-model.loss.free-nats", "0", "--env.task", "walker_walk", "--run.compile", "--run.no-progress",
                         "--world-model.loss.representation", "contrastive", "--optim.model-lr", "1e-3", "--behavior.gamma=0.9"])
    assert cfg.world_model.loss.free_nats == 0.0 and isinstance(cfg.world_model.loss.free_nats, float)
    assert (cfg.env.task, cfg.run.compile, cfg.run.progress) == ("walker_walk", True, False)
    assert (cfg.world_model.loss.representation, cfg.optim.model_lr, cfg.behavior.gamma) == ("contrastive", 1e-3, 0.9)


# Each bad input must fail with exit code 2 and a message naming the key and the value it expects.
BAD_INPUTS = {
    "unknown_field": (["--schedule.batch-sise", "3"], ["batch-sise", "did you mean --schedule.batch-size"]),
    "old_flat_name": (["--batch_size", "3"], ["--batch_size", "did you mean --schedule.batch-size"]),
    "unknown_group": (["--sched.batch-size", "3"], ["--sched.batch-size", "--schedule.batch-size"]),
    "wrong_type": (["--schedule.batch-size", "abc"], ["--schedule.batch-size", "int", "abc"]),
    "wrong_float": (["--behavior.gamma", "high"], ["--behavior.gamma", "high"]),
    "seq_len_too_short": (["--schedule.seq-len", "1"], ["seq_len", ">= 2"]),
    "buffer_smaller_than_batch": (["--schedule.buffer-capacity", "10"],
                                  ["buffer_capacity", ">= batch_size * seq_len = 2500"]),
    "gamma_out_of_range": (["--behavior.gamma", "2"], ["gamma", "[0, 1]"]),
    "unknown_device": (["--run.device", "tpu"], ["device", "tpu", "cpu", "cuda"]),
    "not_a_bool": (["--env.from-pixels", "maybe"], ["--env.from-pixels", "maybe", "--env.no-from-pixels"]),
    "bool_with_attached_value": (["--run.progress=false"], ["--run.progress", "false", "--run.no-progress"]),
    "unknown_choice": (["--run.precision", "fp16"], ["--run.precision", "fp16", "bf16"]),
    "misspelt_choice": (["--world-model.loss.representation", "contrastiv"], ["did you mean contrastive?"]),
    "negative_number_typo": (["--world-model.loss.free-nats", "-1e"], ["--world-model.loss.free-nats expects float, got '-1e'"]),
    "unknown_preset": (["--preset", "huge"], ["preset", "huge", "paper"]),
    "missing_preset": (["--preset"], ["preset"]),
    "missing_value": (["--schedule.batch-size"], ["--schedule.batch-size"]),
    "task_not_domain_task": (["--env.task", "cartpole"], ["env.task", "domain_task", "cartpole"]),
    "checkpoint_not_on_schedule": (["--run.checkpoint-every", "1500"], ["checkpoint_every", "multiple of train_every"]),
    "total_not_on_schedule": (["--schedule.total-env-steps", "10500"], ["total_env_steps", "multiple of train_every"]),
    "no_checkpoint_kept": (["--run.checkpoints-kept", "0"], ["checkpoints_kept", ">= 1"]),
    "abbreviated_flag": (["--schedule.batch", "7"], ["--schedule.batch"]),
    "resume_without_reader": (["--resume", "runs/x"], ["--resume"]),
}


@pytest.mark.parametrize("argv, fragments", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_parse_args_rejects(argv, fragments, capsys):
    raw = _parse_error(argv, capsys)
    err = " ".join(raw.split())
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    # the error and one line on --help: no usage dump, no box of help text (issue 14, item 12)
    lines = raw.strip().splitlines()
    assert len(lines) == 2 and "--help" in lines[1], raw


def test_parse_args_runs_the_given_checks(capsys):
    def no_walker(cfg):
        if cfg.env.task.startswith("walker"):
            raise ValueError("config field 'env.task': no walkers today")

    assert parse_args(["--env.task", "cheetah_run"], checks=[no_walker])[0].env.task == "cheetah_run"
    assert "no walkers today" in _parse_error(["--env.task", "walker_walk"], capsys, checks=[no_walker])


def test_config_package_imports_nothing_else_from_dreamer_trl():
    code = ("import sys; import dreamer_trl.config; "
            "print([m for m in sys.modules if m.startswith('dreamer_trl') and m != 'dreamer_trl' "
            "and not m.startswith('dreamer_trl.config')]); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.split("\n")[:2] == ["[]", "False"], out.stdout + out.stderr


def test_config_sources_import_nothing_from_dreamer_trl():
    for path in (ROOT / "dreamer_trl" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("dreamer_trl"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("dreamer_trl") for a in node.names), path.name


# --- resume ------------------------------------------------------------------------------------------


def _saved(preset="debug", **changes):
    """A fake checkpoint reader: the saved config of a ``preset`` run, as data."""
    cfg = config.PRESETS[preset]()
    for name, value in changes.items():
        set_field(cfg, name.replace("__", "."), value)
    return lambda path: (to_dict(cfg), preset, f"{path}/checkpoints/0000000400")


def test_resume_uses_the_saved_config_and_its_preset():
    cfg, preset = parse_args(["--resume", "runs/r"], load_resumed=_saved(schedule__batch_size=6))
    expected = config.debug()
    expected.schedule.batch_size = 6
    expected.run.resume = "runs/r/checkpoints/0000000400"
    assert preset == "debug" and cfg == expected


def test_resume_may_change_run_time_fields():
    cfg, _ = parse_args(["--resume", "runs/r", "--schedule.total-env-steps", "1600", "--run.no-progress",
                         "--run.device", "cpu"], load_resumed=_saved())
    assert (cfg.schedule.total_env_steps, cfg.run.progress, cfg.run.device) == (1600, False, "cpu")


def test_resume_refuses_a_changed_model_field_by_name(capsys):
    err = _parse_error(["--run.resume", "runs/r", "--schedule.batch-size", "3", "--world-model.latent.state-dim", "9"], capsys,
                       load_resumed=_saved())
    assert "cannot resume runs/r" in err
    assert "schedule.batch_size: 4 -> 3" in err and "world_model.latent.state_dim: 8 -> 9" in err
    assert "run.seed" not in err.split("only")[0]


def test_resume_refuses_another_preset(capsys):
    err = _parse_error(["--resume", "runs/r", "--preset", "state"], capsys, load_resumed=_saved("debug"))
    assert "'debug'" in err and "'state'" in err


def test_resume_help_shows_the_saved_values(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # one column of boxes (tyro uses two on wider screens)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--resume", "runs/r", "--help"], load_resumed=_saved(schedule__batch_size=6))
    assert exc.value.code == 0
    assert re.search(r"sequences per batch \(default: 6\)", " ".join(capsys.readouterr().out.split()))


# --- validate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, fragment", [
    ("env.image_size", 32, "image_size"),
    ("env.episode_frames", 50, "episode_frames"),
    ("schedule.prefill_env_steps", 10, "prefill_env_steps"),
    ("schedule.total_env_steps", 5000, "total_env_steps"),
    ("behavior.lmbda", -0.1, "lmbda"),
    ("behavior.horizon", 1, "horizon"),
    ("env.task", "cartpole", "task"),
])
def test_validate_names_the_field(name, value, fragment):
    cfg = config.paper()
    set_field(cfg, name, value)
    with pytest.raises(ValueError, match=fragment):
        validate(cfg)


def test_horizon_1_is_refused_for_the_v1_targets_and_accepted_with_targets_from_s0(capsys):
    """issue 22, item 6: the v1 losses have no target at H = 1 (s_1..s_{H-1}); with targets from s_0 it has one."""
    err = _parse_error(["--behavior.horizon", "1"], capsys)
    assert "behavior.horizon" in err and ">= 2" in err and "got 1" in err
    for argv in (["--behavior.losses", "v2_v3"], ["--behavior.start-state-targets"]):
        cfg, _ = parse_args(["--behavior.horizon", "1", *argv])
        assert cfg.behavior.horizon == 1
    assert "behavior.horizon" in _parse_error(["--behavior.horizon", "0", "--behavior.losses", "v2_v3"], capsys)


def test_value_steps_bound_is_the_target_rows(capsys):
    """k of V_N^k up to the steps a target can sum: horizon - 1 for the v1 targets, horizon from s_0."""
    nstep = ["--behavior.value-estimate", "nstep", "--behavior.horizon", "4"]
    assert parse_args([*nstep, "--behavior.value-steps", "3"])[0].behavior.value_steps == 3
    err = _parse_error([*nstep, "--behavior.value-steps", "4"], capsys)
    assert "behavior.value_steps" in err and "horizon - 1 = 3" in err
    assert parse_args([*nstep, "--behavior.value-steps", "4", "--behavior.losses", "v2_v3"])[0].behavior.value_steps == 4
    err = _parse_error([*nstep, "--behavior.value-steps", "5", "--behavior.losses", "v2_v3"], capsys)
    assert "behavior.value_steps" in err and "horizon = 4" in err


def test_validate_checks_choices_of_configs_built_in_code():
    cfg = config.paper()
    cfg.behavior.value_estimate = "monte_carlo"
    with pytest.raises(ValueError, match="behavior.value_estimate"):
        validate(cfg)


def test_replay_windows_choices_are_checked_and_stream_only_in_the_v3_presets(capsys):
    cfg = config.paper()
    cfg.schedule.replay_windows = "across"
    with pytest.raises(ValueError, match="'schedule.replay_windows' must be episode or stream, got 'across'"):
        validate(cfg)
    with pytest.raises(ValueError, match="'schedule.replay_windows' must be one of episode, stream"):
        set_field(config.paper(), "schedule.replay_windows", "across")
    assert "--schedule.replay-windows must be one of episode, stream" in _parse_error(
        ["--schedule.replay-windows", "across"], capsys)
    stream = {name for name, make in config.PRESETS.items() if make().schedule.replay_windows == "stream"}
    # 423291a embodied/replay/generic.py; e3f0224 embodied/core/replay.py Replay.add (one item per stream step)
    assert stream == {"dreamer_v3", "dreamer_v3_proprio", "dreamer_v3_current", "dreamer_v3_proprio_current",
                      "dreamer_v3_atari100k"}
    cfg, _ = parse_args(["--preset", "state", "--schedule.replay-windows", "stream"])
    assert cfg.schedule.replay_windows == "stream"


def test_stream_windows_allow_episodes_shorter_than_a_window():
    cfg = config.paper()
    cfg.env.episode_frames = 50  # 25 agent steps < seq_len 50: no window fits in one episode
    with pytest.raises(ValueError, match="episode_frames"):
        validate(cfg)
    cfg.schedule.replay_windows = "stream"
    validate(cfg)


def test_validate_allows_small_images_for_state_observations():
    cfg = config.state()
    cfg.env.image_size = 32
    validate(cfg)


@pytest.mark.parametrize("preset, name, value, fragment", [
    ("dreamer_v3_proprio_current", "behavior.actor.reinforce", 0.0, "optim.kind adam"),
    ("dreamer_v2", "behavior.actor.reinforce", 1.5, "in [0, 1]"),
    ("paper", "optim.kind", "laprop", "adam with behavior.losses v1"),
    ("paper", "world_model.continue_head", True, "false with behavior.losses v1"),
    ("paper", "nets.twohot_bins", 1, ">= 2"),
    ("dreamer_v3_proprio", "schedule.train_ratio", -1.0, ">= 0"),
    ("dreamer_v2", "schedule.pretrain_updates", -1, "'schedule.pretrain_updates'"),
    ("dreamer_v3_proprio", "world_model.latent.classes", 1, ">= 2"),
    ("dreamer_v3_proprio", "world_model.vector_units", 0, ">= 1"),
    ("dreamer_v3_proprio", "optim.model_grad_clip", -1.0, ">= 0 (0: optim.grad_clip)"),
    ("dreamer_v3_proprio_current", "optim.step_model_first", True, "false with optim.kind laprop"),
    ("planet_state", "optim.step_model_first", True, "false with optim.kind laprop or behavior.kind planner"),
])
def test_family_fields_are_validated_by_name(preset, name, value, fragment):
    cfg = config.PRESETS[preset]()
    set_field(cfg, name, value)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        validate(cfg)


def test_v3_2023_choices_are_one_field_each():
    cfg = config.PRESETS["dreamer_v3_proprio_current"]()
    for name, value in [("world_model.loss.dyn_scale", 0.5), ("nets.norm", "layer"), ("optim.kind", "adam"),
                        ("behavior.actor.reinforce", 0.0), ("behavior.critic.replay_scale", 0.0), ("env.action_repeat", 2),
                        ("schedule.train_ratio", 512.0), ("optim.step_model_first", True)]:
        set_field(cfg, name, value)
    validate(cfg)


def test_v2_preset_matches_the_official_dmc_vision_schedule():
    cfg = config.PRESETS["dreamer_v2"]()
    s = cfg.schedule
    assert (s.batch_size, s.seq_len) == (16, 50)
    assert s.train_ratio == 160
    assert s.prefill_env_steps == 1000 * cfg.env.action_repeat
    assert cfg.world_model.cnn_depth == 48


def test_every_preset_has_a_one_line_summary():
    assert list(config.presets.SUMMARIES) == list(config.PRESETS)
    assert all(len(line) <= 120 and "\n" not in line for line in config.presets.SUMMARIES.values())


def test_the_replay_context_is_v3_currents_window_start_and_needs_stream_windows(capsys):
    contexts = {name for name, make in config.PRESETS.items()
                if make().world_model.loss.window_start == "replay_context"}
    assert contexts == {"dreamer_v3_current", "dreamer_v3_proprio_current", "dreamer_v3_atari100k"}  # e3f0224 configs.yaml replay_context: 1
    cfg = config.make_preset("dreamer_v3_proprio_current")
    cfg.schedule.replay_windows = "episode"
    with pytest.raises(ValueError, match="'world_model.loss.window_start' must be not replay_context with "
                                         "schedule.replay_windows episode"):
        validate(cfg)
    assert "world_model.loss.window_start" in _parse_error(
        ["--preset", "state", "--world-model.loss.window-start", "replay_context"], capsys)
