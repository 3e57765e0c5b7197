"""Tests for dreamer_trl.data.atari (env.suite atari): frames and rewards against gymnasium's ALE env stepped directly
and preprocessed by a plain reference written here, episode ends (a game over terminates, the frame limit
truncates), the random streams a resume restores, the atari100k preset against the official numbers, the real
trainer on an Atari game, and the refusals before anything is built."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchrl.envs.utils import step_mdp  # noqa: E402

ale_py = pytest.importorskip("ale_py")

from dreamer_trl import config  # noqa: E402
from dreamer_trl.data.atari import AtariEnv, make_atari_env  # noqa: E402
from dreamer_trl.run import preflight  # noqa: E402

gymnasium.register_envs(ale_py)
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_hot(index: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), n).float()


def _reference_rollout(game, actions, *, seed, repeat, size, gray, noops, full_action_space=False):
    """gymnasium's ALE env, one frame a step, with DreamerV3's preprocessing written out plainly: the no-ops drawn
    from np.random.default_rng(seed), the max over the screens of the last two frames of each repeat (the screens
    kept across steps), a bilinear Pillow resize, the luminance weights, truncation to uint8."""
    env = gymnasium.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0,
                         full_action_space=full_action_space)
    rng = np.random.default_rng(seed)
    screen, _ = env.reset(seed=seed)
    for _ in range(int(rng.integers(noops + 1))):
        screen, _, over, _, _ = env.step(0)
        assert not over
    kept = [screen, screen]

    def observe():
        pooled = np.maximum(kept[0], kept[1])
        image = np.array(Image.fromarray(pooled).resize((size, size), Image.BILINEAR))
        if gray:
            r, g, b = (image[..., i].astype(np.float64) for i in range(3))
            image = (0.299 * r + 0.587 * g + (1 - 0.299 - 0.587) * b).astype(np.uint8)[..., None]
        return image.transpose(2, 0, 1)

    frames, rewards = [observe()], []
    for action in actions:
        total = 0.0
        for i in range(repeat):
            screen, reward, over, _, _ = env.step(action)
            total += reward
            if i >= repeat - 2:
                kept = [screen, kept[0]]
            if over:
                break
        frames.append(observe())
        rewards.append(total)
    env.close()
    return frames, rewards


@pytest.mark.parametrize("gray, noops", [(False, 0), (False, 30), (True, 30)])
def test_frames_and_rewards_equal_gymnasium_ale_preprocessed_by_a_plain_reference(gray, noops):
    game, steps = "Pong", 150
    rng = np.random.default_rng(1)
    env = AtariEnv("pong", image_size=64, action_repeat=4, sticky=False, gray=gray, actions="needed", noops=noops,
                   seed=3)
    n = env.action_spec.shape[-1]
    actions = [int(a) for a in rng.integers(0, n, steps)]
    frames, rewards = _reference_rollout(game, actions, seed=3, repeat=4, size=64, gray=gray, noops=noops)
    td = env.reset()
    assert td["pixels"].dtype == torch.uint8 and td["pixels"].shape == (1 if gray else 3, 64, 64)
    np.testing.assert_array_equal(td["pixels"].numpy(), frames[0])
    got = []
    for t, action in enumerate(actions):
        td = env.step(td.set("action", _one_hot(action, n)))
        np.testing.assert_array_equal(td["next", "pixels"].numpy(), frames[t + 1], err_msg=f"step {t}")
        got.append(td["next", "reward"].item())
        td = step_mdp(td)
    assert got == rewards
    assert any(r != 0 for r in rewards)  # Pong scores within 600 frames of random play: the rewards are checked


def test_the_action_set_is_the_minimal_or_the_full_one():
    assert AtariEnv("pong", actions="needed").action_spec.shape[-1] == 6
    assert AtariEnv("pong", actions="all").action_spec.shape[-1] == 18


def test_the_frame_limit_truncates_and_a_lost_life_with_lives_reset_terminates():
    env = make_atari_env("breakout", action_repeat=4, episode_frames=40, sticky=False, noops=0, seed=0)
    td = env.reset()
    for step in range(10):
        td = env.step(td.set("action", _one_hot(0, env.action_spec.shape[-1])))
        flags = {k: td["next", k].item() for k in ("done", "terminated", "truncated")}
        td = step_mdp(td)
    assert step == 9 and flags == {"done": True, "terminated": False, "truncated": True}  # 40 frames: continue 1
    env = make_atari_env("breakout", action_repeat=4, lives="reset", sticky=False, noops=0, seed=0)
    td, n = env.reset(), env.action_spec.shape[-1]
    for step in range(2000):  # NOOP after FIRE: the ball is missed and a life lost
        td = env.step(td.set("action", _one_hot(1 if step == 0 else 0, n)))
        if td["next", "done"].item():
            break
        td = step_mdp(td)
    assert td["next", "terminated"].item() and not td["next", "truncated"].item()
    assert env.base_env.ale.lives() == 4  # not a game over: the episode ended at the first lost life
    default = AtariEnv("breakout", action_repeat=4, sticky=False, noops=0, seed=0)  # lives unused: it goes on
    td = default.reset()
    for step in range(600):
        td = step_mdp(default.step(td.set("action", _one_hot(1 if step == 0 else 0, n))))
    assert default.ale.lives() < 5 and not td["done"].item()


def test_the_random_streams_round_trip_for_a_resume():
    """Sticky actions and no-ops: after restoring task_random_state a fresh env plays the saved env's next episode."""
    def episode(env, steps=60):
        td, n, out = env.reset(), env.action_spec.shape[-1], []
        for step in range(steps):
            td = env.step(td.set("action", _one_hot(step % n, n)))
            out.append(td["next", "pixels"].clone())
            td = step_mdp(td)
        return torch.stack(out)

    a = AtariEnv("pong", sticky=True, noops=30, seed=5)
    episode(a)
    state = a.task_random_state()
    assert set(state) == {"bit_generator", "ale"}
    expected = episode(a)
    b = AtariEnv("pong", sticky=True, noops=30, seed=99)
    b.set_task_random_state(state)
    assert torch.equal(episode(b), expected)
    fresh = AtariEnv("pong", sticky=True, noops=30, seed=5)
    assert fresh.task_random_state()["seed"] == 5
    again = AtariEnv("pong", sticky=True, noops=30, seed=7)
    again.set_task_random_state(fresh.task_random_state())
    assert torch.equal(episode(again), episode(AtariEnv("pong", sticky=True, noops=30, seed=5)))


def test_renders_rgb_frames_for_videos():
    env = AtariEnv("pong", gray=True)
    env.reset()
    assert env.render(32).shape == (32, 32, 3) and env.render(32).dtype == np.uint8


def test_the_atari100k_preset_is_the_official_configuration():
    """danijar/dreamerv3 e3f0224 configs.yaml: env.atari100k {size: [64, 64], repeat: 4, sticky: False, gray: False,
    actions: needed, lives: unused, noops: 30, ...}, Atari(pooling=2, aggregate='max', length=108000) defaults,
    atari100k run {steps: 1.1e5, envs: 1, train_ratio: 256}."""
    cfg = config.make_preset("dreamer_v3_atari100k")
    e, a, s = cfg.env, cfg.env.atari, cfg.schedule
    assert (e.suite, e.task, e.from_pixels, e.image_size, e.action_repeat, e.episode_frames, e.num_envs) == (
        "atari", "pong", True, 64, 4, 108_000, 1)
    assert (a.sticky, a.gray, a.actions, a.lives, a.noops, a.pooling, a.aggregate) == (
        False, False, "needed", "unused", 30, 2, "max")
    assert (s.total_env_steps, s.train_ratio, s.batch_size, s.seq_len) == (110_000 * 4, 256, 16, 64)
    assert s.prefill_env_steps == 16 * 64 * 4  # training starts once the replay holds 16 x 64 steps
    assert cfg.world_model.rssm.belief_dim == 8192 and cfg.optim.kind == "laprop"  # the current default size200m
    config.validate(cfg)
    assert config.make_preset("dreamer_v3_atari100k", task="breakout").env.task == "breakout"


@pytest.mark.slow
def test_the_trainer_runs_an_atari_game_with_lives_reset_and_stores_terminations(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = _recipe("dreamer_atari").main([
            "--env.task", "breakout", "--env.atari.lives", "reset", "--nets.size", "size1m",
            "--schedule.total-env-steps", "1024", "--schedule.prefill-env-steps", "768", "--schedule.batch-size", "2",
            "--schedule.seq-len", "8", "--schedule.train-ratio", "4", "--schedule.eval-every", "1024",
            "--schedule.eval-episodes", "1", "--schedule.buffer-capacity", "4096", "--run.run-dir", str(tmp_path),
            "--run.run-name", "run", "--run.threads", "1", "--run.no-progress", "--run.no-tensorboard"])
    finally:
        torch.set_num_threads(threads)
    assert summary["env_steps"] == 1024
    run = tmp_path / "run"
    terminated = np.memmap(run / "replay" / "next" / "terminated.memmap", dtype=bool, mode="r")
    assert terminated.any()  # lost lives are stored as terminations (the continue head's 0)
    assert (run / "checkpoints" / "0000001024").is_dir()


@pytest.mark.parametrize("args, field", [
    (["--env.task", "pongg"], "env.task"),
    (["--env.no-from-pixels"], "env.from_pixels"),
    (["--behavior.kind", "planner"], "behavior.kind"),
    (["--env.atari.pooling", "0"], "env.atari.pooling"),
])
def test_bad_atari_options_exit_2_naming_the_field(args, field, capsys, tmp_path):
    argv = ["--preset", "dreamer_v3_atari100k", "--run.run-dir", str(tmp_path), *args]
    with pytest.raises(SystemExit) as exc:
        preflight.parse_args(argv)
    assert exc.value.code == 2
    assert f"'{field}'" in capsys.readouterr().err


def test_atari_settings_are_refused_with_another_suite(capsys, tmp_path):
    argv = ["--preset", "debug", "--env.atari.no-sticky", "--run.run-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        preflight.parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "config field 'env.atari.sticky' is read only by" in err
    assert "with env.suite atari, not with env.suite dmc" in err
