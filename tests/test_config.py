"""dreamer_trl.config: paper defaults, field help, command-line parsing and validation."""
import dataclasses

import pytest

from dreamer_trl import config
from dreamer_trl.config import DreamerConfig, parse_args, set_field, validate

# Dreamer V1 defaults (shared/reference/DREAMER.md), keyed by config field name.
PAPER = {
    "state_dim": 30, "belief_dim": 200, "rssm_hidden": 200, "min_std": 0.1, "cnn_depth": 32, "mlp_hidden": 400,
    "reward_layers": 2, "value_layers": 3, "actor_layers": 4,
    "kl_scale": 1.0, "free_nats": 3.0, "horizon": 15, "gamma": 0.99, "lmbda": 0.95, "exploration_noise": 0.3,
    "model_lr": 6e-4, "actor_lr": 8e-5, "value_lr": 8e-5, "adam_eps": 1e-7, "grad_clip": 100.0,
    "prefill_env_steps": 5000, "train_every": 1000, "updates_per_train": 100, "batch_size": 50, "seq_len": 50,
    "eval_every": 10_000,
    "action_repeat": 2, "from_pixels": True, "image_size": 64, "episode_frames": 1000,
}


def _flat(cfg: DreamerConfig) -> dict:
    """Field name -> value over all sub-configs."""
    return {f.name: getattr(getattr(cfg, g.name), f.name)
            for g in dataclasses.fields(cfg) for f in dataclasses.fields(getattr(cfg, g.name))}


def _all_fields() -> list[tuple[str, dataclasses.Field]]:
    cfg = DreamerConfig()
    return [(g.name, f) for g in dataclasses.fields(cfg) for f in dataclasses.fields(getattr(cfg, g.name))]


def _parse_error(argv, capsys) -> str:
    """Run parse_args expecting a usage error; return its stderr."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code != 0
    return capsys.readouterr().err


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


def test_presets_are_independent_copies():
    a, b = config.paper(), config.paper()
    a.schedule.batch_size = 3
    assert b.schedule.batch_size == 50 and DreamerConfig().schedule.batch_size == 50


# --- fields and help ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group, f", _all_fields(), ids=lambda x: getattr(x, "name", x))
def test_every_field_has_one_line_help(group, f):
    text = f.metadata.get("help", "")
    assert text.strip(), f"{group}.{f.name} has no help"
    assert "\n" not in text, f"{group}.{f.name} help is not one line"


def test_field_names_unique_across_sub_configs():
    names = [f.name for _, f in _all_fields()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert "preset" not in names  # would clash with the --preset option


# --- set_field ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, text, expected", [
    ("batch_size", "16", 16),
    ("total_env_steps", "1_000", 1000),
    ("gamma", "0.9", 0.9),
    ("model_lr", "1e-3", 1e-3),
    ("from_pixels", "false", False),
    ("from_pixels", "Yes", True),
    ("progress", "0", False),
    ("task", "walker_walk", "walker_walk"),
])
def test_set_field_converts_strings(name, text, expected):
    cfg = DreamerConfig()
    set_field(cfg, name, text)
    value = _flat(cfg)[name]
    assert value == expected and type(value) is type(expected)


def test_set_field_accepts_typed_values_and_widens_int_to_float():
    cfg = DreamerConfig()
    set_field(cfg, "batch_size", 7)
    set_field(cfg, "gamma", 1)
    assert cfg.schedule.batch_size == 7
    assert cfg.loss.gamma == 1.0 and isinstance(cfg.loss.gamma, float)


@pytest.mark.parametrize("name, value, fragment", [
    ("batch_sise", "3", "batch_size"),  # unknown name, with a suggestion
    ("no_such_field", "3", "no_such_field"),
    ("batch_size", "abc", "int"),
    ("batch_size", 1.5, "int"),
    ("batch_size", True, "int"),  # a bool is not an int here
    ("from_pixels", "maybe", "bool"),
    ("gamma", "high", "float"),
])
def test_set_field_refuses(name, value, fragment):
    cfg = DreamerConfig()
    with pytest.raises(ValueError, match=fragment) as exc:
        set_field(cfg, name, value)
    assert repr(name) in str(exc.value)
    assert cfg == DreamerConfig()  # unchanged


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


@pytest.mark.parametrize("argv", [["--batch_size", "16"], ["--batch_size=16"]])
def test_parse_args_override(argv):
    cfg, _ = parse_args(argv)
    expected = config.paper()
    expected.schedule.batch_size = 16
    assert cfg == expected


def test_parse_args_override_applies_on_top_of_preset():
    cfg, preset = parse_args(["--batch_size", "6", "--preset", "debug", "--from_pixels", "false"])
    expected = config.debug()
    expected.schedule.batch_size = 6
    expected.env.from_pixels = False
    assert preset == "debug" and cfg == expected


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for _, f in _all_fields():
        assert f"--{f.name}" in out
    for preset in config.PRESETS:
        assert preset in out


# Each bad input must fail with a message naming the key and the value it expects.
BAD_INPUTS = {
    "unknown_field": (["--batch_sise", "3"], ["batch_sise", "batch_size"]),
    "wrong_type": (["--batch_size", "abc"], ["batch_size", "int", "abc"]),
    "seq_len_too_short": (["--seq_len", "1"], ["seq_len", ">= 2"]),
    "buffer_smaller_than_batch": (["--buffer_capacity", "10"], ["buffer_capacity", ">= batch_size * seq_len = 2500"]),
    "gamma_out_of_range": (["--gamma", "2"], ["gamma", "[0, 1]"]),
    "unknown_device": (["--device", "tpu"], ["device", "tpu", "cpu", "cuda"]),
    "not_a_bool": (["--from_pixels", "maybe"], ["from_pixels", "bool", "maybe"]),
    "unknown_preset": (["--preset", "huge"], ["preset", "huge", "paper"]),
    "missing_value": (["--batch_size"], ["batch_size"]),
    "unknown_task": (["--task", "cheetah_fly"], ["cheetah_fly", "cheetah_run"]),
    "checkpoint_not_on_schedule": (["--checkpoint_every", "1500"], ["checkpoint_every", "multiple of train_every"]),
    "total_not_on_schedule": (["--total_env_steps", "10500"], ["total_env_steps", "multiple of train_every"]),
    "no_checkpoint_kept": (["--checkpoints_kept", "0"], ["checkpoints_kept", ">= 1"]),
    "abbreviated_flag": (["--batch", "7"], ["batch"]),
}


@pytest.mark.parametrize("argv, fragments", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_parse_args_rejects(argv, fragments, capsys):
    err = _parse_error(argv, capsys)
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_parse_args_unknown_field_suggests_the_close_name(capsys):
    err = _parse_error(["--batch_sise", "3"], capsys)
    assert "did you mean" in err and "batch_size" in err.split("did you mean")[1]


# --- validate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, fragment", [
    ("image_size", 32, "image_size"),
    ("episode_frames", 50, "episode_frames"),
    ("prefill_env_steps", 10, "prefill_env_steps"),
    ("total_env_steps", 5000, "total_env_steps"),
    ("lmbda", -0.1, "lmbda"),
    ("horizon", 1, "horizon"),
    ("task", "cartpole", "task"),
])
def test_validate_names_the_field(name, value, fragment):
    cfg = config.paper()
    set_field(cfg, name, value)
    with pytest.raises(ValueError, match=fragment):
        validate(cfg)


def test_validate_allows_small_images_for_state_observations():
    cfg = config.state()
    cfg.env.image_size = 32
    validate(cfg)
