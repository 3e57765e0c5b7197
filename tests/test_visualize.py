"""dreamer_trl.report.visualize: video files, open-loop prediction and its strip, episode recording, logging."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import make_batch  # noqa: E402
from torchrl.record.loggers import CSVLogger, TensorboardLogger  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl.report import visualize as vis  # noqa: E402


def _frames(T=7, H=64, W=64) -> np.ndarray:
    """Distinct frames (GIF writers merge identical consecutive ones): a bar moving right."""
    frames = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        frames[t, :, t * W // T: (t + 1) * W // T] = (255, 128, 0)
    return frames


@pytest.mark.parametrize("H, W, mp4_size", [(64, 64, (256, 256)), (20, 30, (192, 272))])
def test_write_video_round_trip(tmp_path, H, W, mp4_size):
    mp4, gif = vis.write_video(_frames(7, H, W), tmp_path / "sub" / "clip", fps=10)
    assert (mp4.name, gif.name) == ("clip.mp4", "clip.gif")
    decoded = imageio.mimread(mp4, format="FFMPEG", memtest=False)
    assert len(decoded) == 7 and decoded[0].shape == (*mp4_size, 3)   # upscaled, padded to multiples of 16
    gif_frames = imageio.mimread(gif)
    assert len(gif_frames) == 7 and gif_frames[0].shape[:2] == (H, W)


def test_write_video_rejects_float_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        vis.write_video(np.zeros((3, 8, 8, 3), np.float32), tmp_path / "x")


@pytest.mark.parametrize("obs_key, obs_shape", [("pixels", (3, 64, 64)), ("observation", (5,))])
def test_open_loop_shapes(tiny_cfg, obs_key, obs_shape):
    B, T, context = 2, 7, 3
    world_model = dt.make_world_model(obs_key, obs_shape, 2, tiny_cfg)
    out = vis.open_loop(world_model, make_batch(B, T, 2, obs_key, obs_dim=5), context=context)
    for name in ("truth", "prediction", "error"):
        assert out[name].shape == (B, T, *obs_shape), name
    assert out["mse_per_step"].shape == (T - context,)
    torch.testing.assert_close(out["error"], (out["truth"] - out["prediction"]).abs())
    if obs_key == "pixels":
        assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1
        assert 0 <= out["truth"].min() and out["truth"].max() <= 1
    metrics = vis.open_loop_metrics(out["mse_per_step"])
    assert list(metrics) == [f"open_loop/mse_h{h:02d}" for h in range(1, T - context + 1)] + ["open_loop/mse_mean"]


def test_open_loop_rejects_bad_context(tiny_cfg):
    world_model = dt.make_world_model("observation", (5,), 2, tiny_cfg)
    with pytest.raises(ValueError, match="context"):
        vis.open_loop(world_model, make_batch(2, 4, 2, "observation", obs_dim=5), context=4)


def test_open_loop_strip_layout_and_zero_error():
    B, T, H = 3, 6, 64
    truth = torch.rand(B, T, 3, H, H)
    strip = vis.open_loop_strip(truth, truth, (truth - truth).abs(), max_sequences=2)
    assert strip.shape == (2 * 3 * H, T * H, 3) and strip.dtype == np.uint8
    expected = (truth * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()   # (B, T, Hh, W, 3)
    for b in range(2):
        rows = strip[3 * b * H: 3 * (b + 1) * H]
        for t in range(T):
            np.testing.assert_array_equal(rows[:H, t * H: (t + 1) * H], expected[b, t])        # true
            np.testing.assert_array_equal(rows[H: 2 * H, t * H: (t + 1) * H], expected[b, t])  # predicted
        assert not rows[2 * H:].any()                                                          # error row
    video = vis.open_loop_video_frames(truth, truth, truth * 0, max_sequences=4)
    assert video.shape == (T, 3 * H, B * H, 3)
    np.testing.assert_array_equal(video[2, :H, H: 2 * H], expected[1, 2])


def test_open_loop_strip_needs_images():
    x = torch.zeros(2, 5, 7)
    with pytest.raises(ValueError, match="images"):
        vis.open_loop_strip(x, x, x)


@pytest.mark.parametrize("from_pixels", [False, True])
def test_record_episode_on_dm_control(tiny_cfg, from_pixels):
    env = dt.make_dmc_env("cartpole", "swingup", from_pixels=from_pixels, episode_frames=20)
    env.append_transform(dt.policy_carry_transform(tiny_cfg.world_model.latent.state_dim, tiny_cfg.world_model.rssm.belief_dim, 1))
    obs_key = "pixels" if from_pixels else "observation"
    world_model = dt.make_world_model(obs_key, tuple(env.observation_spec[obs_key].shape), 1, tiny_cfg)
    actor = dt.make_actor(tiny_cfg.world_model.latent.state_dim + tiny_cfg.world_model.rssm.belief_dim, 1, tiny_cfg)
    policy = dt.make_policy(world_model, actor, env.action_spec)
    ret, frames = vis.record_episode(env, policy)
    assert frames.shape == (11, 64, 64, 3) and frames.dtype == np.uint8   # 20 frames / action repeat 2, + reset
    assert np.isfinite(ret) and frames.std() > 0
    ret, frames = vis.record_episode(env, policy, max_steps=3, video_size=32)
    assert frames.shape == (4, 32, 32, 3)
    assert vis.render_frame(env, 48).shape == (48, 48, 3)


def test_log_video_tensorboard_and_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb, csv = TensorboardLogger("", str(tmp_path / "tb")), CSVLogger("", str(tmp_path / "csv"))
    vis.log_video([tb, csv], "eval/video", _frames(5), step=3)
    vis.log_image([tb, csv], "eval/open_loop", _frames(1)[0], step=3)
    tb.experiment.flush()
    events = EventAccumulator(tb.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"eval/video", "eval/open_loop"}
    gif = events.Images("eval/video")[0]
    assert gif.step == 3 and gif.encoded_image_string.startswith(b"GIF8")
    assert not any((tmp_path / "csv" / "videos").iterdir())   # CSVLogger: no duplicate tensor dumps
