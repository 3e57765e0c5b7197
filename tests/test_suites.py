"""Tests for dreamer_trl.data.suites (env.suite): one interface for DMC and gymnasium envs, the whole trainer on a
gymnasium env with discrete actions (one-hot actor, terminations, final rows, checkpoints), and the refusals of
options the env's actions cannot take, before anything is built."""
import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl import config  # noqa: E402
from dreamer_trl.builders.trainer import build, make_buffer, make_loggers, make_run_dir  # noqa: E402
from dreamer_trl.data.dmc import DMCEnv  # noqa: E402
from dreamer_trl.data.gym import GymEnv  # noqa: E402
from dreamer_trl.data.suites import make_suite_env  # noqa: E402
from dreamer_trl.run import preflight  # noqa: E402
from dreamer_trl.training.trainer import Trainer, seed_everything  # noqa: E402


def test_each_suite_makes_its_env_and_an_unknown_suite_is_refused_by_name():
    cfg = config.debug()
    cfg.env.from_pixels = False
    assert isinstance(make_suite_env(cfg.env, 0).base_env, DMCEnv)
    cfg.env.suite, cfg.env.task = "gym", "CartPole-v1"
    env = make_suite_env(cfg.env, 0)
    assert isinstance(env.base_env, GymEnv) and "is_init" in env.reset().keys()
    cfg.env.suite = "nope"
    with pytest.raises(ValueError, match=r"'env.suite': expected one of dmc, atari, gym, torchrl, got 'nope'"):
        make_suite_env(cfg.env, 0)


def _gym_config(tmp_path, **changes):
    """The debug preset on gymnasium's CartPole-v1 (discrete actions: no exploration noise), one thread."""
    cfg = config.debug()
    cfg.env.suite, cfg.env.task, cfg.env.from_pixels = "gym", "CartPole-v1", False
    cfg.env.action_repeat = 1
    cfg.behavior.exploration.noise = 0.0
    cfg.world_model.cnn_depth = config.WorldModelConfig().cnn_depth  # state observations do not read it
    cfg.run.progress, cfg.run.run_dir, cfg.run.run_name, cfg.run.checkpoint_every = False, str(tmp_path), "run", 200
    for name, value in changes.items():
        config.set_field(cfg, name.replace("__", "."), value)
    config.validate(cfg)
    return cfg


def _trainer(cfg) -> Trainer:
    seed_everything(cfg.run.seed)
    env, eval_env = dt.make_env(cfg, cfg.run.seed), dt.make_env(cfg, cfg.run.seed + 10_000)
    agent, policy, updater = build(cfg, env, torch.device("cpu"))
    run_dir = make_run_dir(cfg, "debug")
    return Trainer(cfg, "debug", run_dir, env=env, eval_env=eval_env, agent=agent, policy=policy, updater=updater,
                   buffer=make_buffer(cfg, env, run_dir, "cpu"), loggers=make_loggers(cfg.run, run_dir),
                   device=torch.device("cpu"))


@pytest.mark.slow
def test_the_trainer_learns_from_a_gym_env_with_discrete_actions_and_resumes(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _gym_config(tmp_path, schedule__total_env_steps=600)
        trainer = _trainer(cfg)
        assert isinstance(trainer.agent.actor.module, dt.OneHotActor)
        summary = trainer.run()
        rows = trainer.buffer.storage._storage[: len(trainer.buffer)]
        last = rows["is_last"].squeeze(-1)
        action = rows["action"]
        assert ((action == 0) | (action == 1)).all() and (action[~last].sum(-1) == 1).all()  # one-hot
        assert (action[last] == 0).all() and last.sum() == trainer.counters.episodes  # each episode's final row
        ended = torch.nonzero(last).squeeze(-1) - 1
        assert rows["next", "terminated"][ended].any()  # CartPole's pole falls: terminations are stored
        assert len(trainer.buffer) == 600 + int(last.sum())
        assert [step for step, _ in trainer.counters.evals] == [400, 600]
        _, meta = dt.load_checkpoint(summary["checkpoint"])
        assert "bit_generator" in meta["env_rng"]["train"]  # the env's random stream, for an exact resume
        cfg.run.resume, cfg.schedule.total_env_steps = str(trainer.checkpoint_path), 800
        config.validate(cfg)
        resumed = _trainer(cfg)
        assert resumed.counters.env_steps == 600
        resumed.run()
        assert resumed.counters.env_steps == 800 and len(resumed.counters.evals) == 3
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("args, field", [
    (["--preset", "planet_state"], "behavior.kind"),
    (["--preset", "debug", "--env.no-from-pixels"], "behavior.exploration.noise"),
    (["--preset", "debug", "--env.no-from-pixels", "--env.task", "CartPol-v1"], "env.task"),
])
def test_options_the_env_cannot_take_exit_2_naming_the_field(args, field, capsys, tmp_path):
    argv = ["--env.suite", "gym", "--env.task", "CartPole-v1", "--run.run-dir", str(tmp_path), *args]
    with pytest.raises(SystemExit) as exc:
        preflight.parse_args(argv)
    assert exc.value.code == 2
    assert f"config field '{field}'" in capsys.readouterr().err


@pytest.mark.parametrize("task, message", [
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("dreamer_trl.keys:no_such_factory", "'dreamer_trl.keys' has no 'no_such_factory'"),
    ("dreamer_trl.keys", "module:function"),
])
def test_a_torchrl_factory_that_cannot_be_found_exits_2_naming_env_task(task, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        preflight.parse_args(["--preset", "debug", "--env.suite", "torchrl", "--env.task", task, "--env.action-repeat", "1",
                              "--run.run-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "config field 'env.task'" in err and message in err


def _corridor_factory(seed=0):
    from dreamer_trl.data.gym import GymEnv

    return GymEnv("CartPole-v1", seed=seed)  # a TorchRL EnvBase in the replay layout, without InitTracker


def test_a_torchrl_factory_env_gets_the_suite_interface_and_its_observation_kind_is_checked(monkeypatch):
    import sys
    import types

    module = types.ModuleType("my_factories_for_test")
    module.make = _corridor_factory
    module.unseeded = lambda: _corridor_factory(0)
    monkeypatch.setitem(sys.modules, "my_factories_for_test", module)
    cfg = config.debug()
    cfg.env.suite, cfg.env.task, cfg.env.from_pixels = "torchrl", "my_factories_for_test:make", False
    env = make_suite_env(cfg.env, 3)
    td = env.reset()
    assert "is_init" in td.keys() and env.physics_errors == 0
    assert "bit_generator" in env.task_random_state()  # the env's own stream is used when it offers one
    assert make_suite_env(dataclasses.replace(cfg.env, task="my_factories_for_test:unseeded"), 0).reset() is not None
    cfg.env.from_pixels = True
    with pytest.raises(ValueError, match="'env.from_pixels': the env of 'my_factories_for_test:make' observes "
                                         "'observation'; use --env.no-from-pixels"):
        make_suite_env(cfg.env, 0)


def test_the_gym_recipe_defaults_to_cartpole_from_state_and_the_user_overrides_them(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("dreamer_gym", Path(__file__).parent.parent / "recipes" / "dreamer_gym.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    cfg, preset = preflight.parse_args(["--run.run-dir", str(tmp_path)], default_preset="dreamer_v3_proprio_current",
                                       defaults=["--env.suite", "gym", "--env.task", "CartPole-v1", "--env.no-from-pixels"])
    assert (preset, cfg.env.suite, cfg.env.task, cfg.env.from_pixels) == ("dreamer_v3_proprio_current", "gym",
                                                                           "CartPole-v1", False)
    cfg, _ = preflight.parse_args(["--env.task", "Pendulum-v1", "--run.run-dir", str(tmp_path)],
                                  defaults=["--env.suite", "gym", "--env.task", "CartPole-v1", "--env.no-from-pixels"],
                                  default_preset="dreamer_v3_proprio_current")
    assert cfg.env.task == "Pendulum-v1"
    assert "default_preset=\"dreamer_v3_proprio_current\"" in Path(recipe.__file__).read_text()


@pytest.mark.parametrize("args, field", [(["--env.action-repeat", "2"], "env.action_repeat")])
def test_torchrl_suite_refuses_the_env_fields_it_cannot_apply(args, field, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        preflight.parse_args(["--preset", "debug", "--env.suite", "torchrl", "--env.task", "dreamer_trl.keys:IS_INIT",
                              "--run.run-dir", str(tmp_path), *args])
    assert exc.value.code == 2 and f"config field '{field}' must be" in capsys.readouterr().err
