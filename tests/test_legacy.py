"""dreamer_trl.config.legacy: the flat config of formats 1 and 2 migrates to the nested one, and the old flag names
still work for one release (or are refused saying what to give)."""
import json
from pathlib import Path

import pytest

from dreamer_trl.config import from_dict, make_preset, parse_args, reads, set_field, to_dict
from dreamer_trl.config.cli import translate_aliases
from dreamer_trl.config.legacy import ALIASES, REMOVED, is_flat, migrate_flat
from dreamer_trl.config.schema import field_names

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_alias_names_fields_that_exist():
    names = set(field_names())
    for old, targets in ALIASES.items():
        assert targets and set(targets) <= names, old
    assert not set(ALIASES) & set(REMOVED)


def test_old_flags_are_written_as_the_nested_ones_with_a_note():
    args, notes = translate_aliases(["--model.belief-dim", "256", "--loss.free-nats=0", "--model.no-continue-head",
                                     "--loss.act-with-mode", "--env.task", "walker_walk"])
    assert args == ["--world-model.rssm.belief-dim", "256", "--world-model.loss.free-nats=0",
                    "--world-model.no-continue-head", "--behavior.exploration.act-with-mode", "--env.task", "walker_walk"]
    assert len(notes) == 4 and "--model.belief-dim is now --world-model.rssm.belief-dim" in notes[0]


def test_one_old_width_sets_every_field_it_stood_for():
    args, _ = translate_aliases(["--model.mlp-hidden", "64"])
    assert args == ["--world-model.units", "64", "--world-model.vector-units", "64", "--behavior.actor.units", "64",
                    "--behavior.critic.units", "64"]


def test_an_old_width_sets_only_the_fields_the_variant_reads():
    """planet_state has no actor or critic: --model.mlp-hidden sets the world model's widths, not a refused actor's;
    the actor's width given by its own name is still refused."""
    cfg, _ = parse_args(["--preset", "planet_state", "--model.mlp-hidden", "64"])
    assert cfg.world_model.units == 64 and cfg.behavior.actor.units == make_preset("planet_state").behavior.actor.units
    with pytest.raises(SystemExit) as err:
        parse_args(["--preset", "planet_state", "--model.mlp-hidden", "64", "--behavior.actor.units", "64"])
    assert err.value.code == 2


def test_parsing_old_and_new_names_gives_the_same_config(capsys):
    old, _ = parse_args(["--preset", "state", "--model.mlp-hidden", "64", "--loss.horizon", "7",
                         "--model.state-dim", "8", "--loss.value-estimate", "nstep", "--loss.value-steps", "3"])
    assert "is now" in capsys.readouterr().err
    new, _ = parse_args(["--preset", "state", "--world-model.units", "64", "--world-model.vector-units", "64",
                         "--behavior.actor.units", "64", "--behavior.critic.units", "64", "--behavior.horizon", "7",
                         "--world-model.latent.state-dim", "8", "--behavior.value-estimate", "nstep",
                         "--behavior.value-steps", "3"])
    assert old == new and new.world_model.units == 64 and new.behavior.horizon == 7


@pytest.mark.parametrize("old", sorted(REMOVED))
def test_a_removed_flag_is_refused_saying_what_to_give(old, capsys):
    flag = "--" + old.replace("_", "-")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--preset", "state", flag, "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} was removed" in err and "--" in err.split("removed", 1)[1]


def test_a_nested_config_round_trips_and_is_not_taken_for_a_flat_one():
    cfg = make_preset("dreamer_v3_current")
    data = json.loads(json.dumps(to_dict(cfg)))
    assert not is_flat(data) and from_dict(data) == cfg


# The two checkpoints of the older formats (tests/test_state.py resumes them and continues their runs exactly):
# their flat configs migrate to the configs today's command line gives for the same runs.

def test_the_format1_v1_config_migrates_to_the_debug_preset_from_state():
    meta = json.loads((FIXTURES / "format1_debug_state" / "checkpoints" / "0000000400" / "meta.json").read_text())
    assert is_flat(meta["config"])
    expected, _ = parse_args(["--preset", "debug", "--env.no-from-pixels", "--run.checkpoint-every", "400",
                              "--run.threads", "1"])
    got = from_dict(meta["config"])
    for name in field_names():  # (unread fields keep the old code's values; the command line resets them)
        if not name.startswith("run.") and reads.is_read(expected, name):
            assert getattr_path(got, name) == getattr_path(expected, name), name


def test_the_format2_v3_config_migrates_to_the_dreamer_v3_proprio_preset():
    meta = json.loads((FIXTURES / "format2_v3_state" / "checkpoints" / "0000000400" / "meta.json").read_text())
    got = from_dict(meta["config"])
    expected = make_preset("dreamer_v3_proprio")
    changes = {"world_model.rssm.belief_dim": 32, "world_model.rssm.hidden": 32, "world_model.latent.state_dim": 4,
               "world_model.latent.classes": 4, "world_model.units": 32, "behavior.actor.units": 32,
               "behavior.critic.units": 32, "world_model.vector_units": 32, "world_model.vector_layers": 1,
               "behavior.actor.layers": 1, "behavior.critic.layers": 1, "world_model.head_layers": 1}
    for name, value in changes.items():
        set_field(expected, name, value)
    expected.env.task, expected.env.episode_frames = "cartpole_swingup", 200
    # added after format 2, as the preset's own change: an old run keeps the row-0 handling it was trained with
    expected.world_model.loss.window_start = "carry_action"
    expected.world_model.rssm.initial = "zeros"
    for name in field_names():
        if reads.is_read(expected, name) and name.split(".")[0] in ("nets", "world_model", "behavior", "optim", "env"):
            assert getattr_path(got, name) == getattr_path(expected, name), name


def test_migration_names_the_parts_the_variant_switch_implied():
    v3 = from_dict(migrate_flat({"model": {"agent": "dreamer_v3", "conv": "stride", "nets": "2023"}}))
    assert (v3.nets.style, v3.world_model.rssm.core, v3.world_model.image_encoder, v3.world_model.image_decoder,
            v3.behavior.losses, v3.behavior.actor.dist) == ("v3_2023", "norm_gru", "conv_stride", "deconv_mse",
                                                             "v2_v3", "bounded_normal")
    v2 = from_dict(migrate_flat({"model": {"agent": "dreamer_v2", "twohot_bins": 0, "continue_head": False}}))
    assert (v2.nets.style, v2.world_model.rssm.core, v2.world_model.reward_head, v2.behavior.critic.head,
            v2.world_model.continue_head) == ("v2", "norm_gru_gates", "normal", "normal", False)
    v1 = from_dict(migrate_flat({"model": {"mlp_hidden": 64, "obs_layers": 3}, "loss": {"horizon": 7}}))
    assert (v1.nets.style, v1.world_model.continue_head, v1.world_model.vector_layers, v1.behavior.actor.units,
            v1.behavior.horizon) == ("v1", False, 3, 64, 7)


def getattr_path(cfg, name):
    from dreamer_trl.config import get_field

    return get_field(cfg, name)


def test_format3_configs_name_the_v1_parts_whose_meaning_moved():
    from dreamer_trl.config import make_preset, to_dict
    from dreamer_trl.config.legacy import migrate_config

    old = to_dict(make_preset("state"))
    old["world_model"]["vector_encoder"], old["behavior"]["actor"]["outscale"] = "mlp", 0.01  # as format 3 saved them
    new = migrate_config(old, 3)
    assert new["world_model"]["vector_encoder"] == "mlp_out" and new["behavior"]["actor"]["outscale"] == 1.0
    assert old["world_model"]["vector_encoder"] == "mlp"  # the input is left as it is
    assert from_dict(new) == make_preset("state")
    v2 = to_dict(make_preset("dreamer_v2", from_pixels=False))
    assert migrate_config(v2, 3) == v2  # V2's vector encoder was already today's "mlp"
    assert migrate_config(old, 4) is old  # today's format: unchanged
