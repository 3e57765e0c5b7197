"""See what the agent learned: evaluation videos and open-loop imagination (Dreamer Figure 5).

- :func:`record_episode`: one noise-free episode and a frame per agent step (pixel and state envs).
- :func:`write_video`: frames to ``.mp4`` (H.264 through the ffmpeg binary shipped with imageio-ffmpeg,
  headless) and ``.gif``.
- :func:`open_loop`: observe ``context`` real frames, then predict the rest from the prior with the
  recorded actions only; :func:`open_loop_strip` / :func:`open_loop_video_frames` lay out
  true | predicted | error rows.
- :func:`log_video` / :func:`log_image`: the same media to TensorBoard.

Shapes: B batch, T time, C/Hh/W image; frames are uint8 ``[T, Hh, W, 3]`` (HWC, as video files want).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp
from torchrl.record.loggers import CSVLogger, TensorboardLogger

from dreamer_trl import keys
from dreamer_trl.model.pixels import preprocess_pixels

_MIN_VIDEO_SIDE = 256  # small frames are upscaled (nearest neighbour) to at least this, to be watchable
_MACRO_BLOCK = 16  # H.264 encodes in 16x16 macro blocks; yuv420p needs even sides


def suite_base_env(env):
    """The suite's env inside a (possibly nested) ``TransformedEnv``: the first whose class offers the suites'
    interface (``task_random_state``, ``render(size)``: :mod:`dreamer_trl.data.suites`)."""
    base = env
    while not hasattr(type(base), "task_random_state"):
        if not hasattr(base, "base_env"):
            raise TypeError(f"expected a suite env (data.suites), possibly inside TransformedEnv, got {type(env).__name__}")
        base = base.base_env
    return base


def render_frame(env, size: int = 64) -> np.ndarray:
    """Render the env's current state (DMC: from its camera): uint8 ``[size, size, 3]``.

    Works for state-observation envs too (the frame is not part of their observation).
    """
    return suite_base_env(env).render(size)


def _frame(env, td: TensorDictBase, size: int) -> np.ndarray:
    pixels = td.get(keys.PIXELS, None)
    if pixels is not None and pixels.shape[-1] == size:
        return pixels.cpu().numpy().transpose(1, 2, 0)  # (3, Hh, W) -> (Hh, W, 3)
    return render_frame(env, size)


def _device(module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def record_episode(env, policy, max_steps: int | None = None, video_size: int = 64,
                   stop=None) -> tuple[float, np.ndarray] | None:
    """Run one noise-free episode (actor mode, no exploration noise) and keep a frame per agent step.

    Pixel envs reuse their "pixels" observation when it has ``video_size``; otherwise the physics
    is rendered at ``video_size`` (``video_size=0``: no frames). Returns (sum of ("next", "reward"),
    frames), or None when ``stop()`` became true before the episode ended (preemption).

    Shapes:
        frames: uint8 ``[T + 1, video_size, video_size, 3]``, T agent steps (frame 0 is the reset).
    """
    device = _device(policy)
    total, frames = 0.0, []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        td = env.reset()
        if video_size:
            frames.append(_frame(env, td, video_size))
        for _ in range(max_steps if max_steps is not None else 10**9):
            if stop is not None and stop():
                return None
            td = policy(td.to(device)).to(env.device)
            td = env.step(td)
            total += td.get(keys.NEXT_REWARD).sum().item()
            if video_size:
                frames.append(_frame(env, td.get("next"), video_size))
            if td.get(("next", keys.DONE)).any():
                break
            td = step_mdp(td)
    return total, (np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8))


def real_sequences(env, policy, batch_size: int = 4, length: int = 50) -> TensorDictBase:
    """``batch_size`` consecutive windows of one noise-free rollout, in the replay layout ``[B, T]``.

    Windows after the first start mid-episode without ``is_init``; the world model then filters from a
    zero state, as it does for replay windows. Fewer windows come back if the episode ends early.
    """
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(batch_size * length, policy=policy, break_when_any_done=True)
    n = rollout.shape[0] // length
    if n == 0:
        raise ValueError(f"the episode ended after {rollout.shape[0]} steps, shorter than length={length}")
    return rollout[: n * length].reshape(n, length)


def _fit_for_encoder(frames: np.ndarray, scale: int | None) -> np.ndarray:
    """Nearest-neighbour upscale, then edge-pad to multiples of 16 (H.264 macro blocks)."""
    h, w = frames.shape[1:3]
    scale = scale or max(1, math.ceil(_MIN_VIDEO_SIDE / max(h, w)))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    pad_h, pad_w = (-frames.shape[1]) % _MACRO_BLOCK, (-frames.shape[2]) % _MACRO_BLOCK
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_video(frames: np.ndarray, path_stem: str | Path, fps: int = 30, gif: bool = True,
                scale: int | None = None, gif_scale: int = 1) -> list[Path]:
    """Write ``<stem>.mp4`` (libx264, yuv420p: plays in browsers) and, with ``gif``, ``<stem>.gif``.

    The mp4 is upscaled by ``scale`` (default: to at least 256 pixels a side) and padded to multiples
    of 16; the GIF (for viewers without a video player, e.g. a README) is upscaled by ``gif_scale``.
    The GIF writer (pillow) merges identical consecutive frames into one longer frame; timing is kept.

    Shapes:
        frames: uint8 ``[T, Hh, W, 3]``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    mp4 = stem.with_name(stem.name + ".mp4")
    imageio.mimwrite(mp4, _fit_for_encoder(frames, scale), format="FFMPEG", fps=fps, codec="libx264",
                     pixelformat="yuv420p", macro_block_size=1, quality=6)  # quality 6: x264 crf 20
    paths = [mp4]
    if gif:
        path = stem.with_name(stem.name + ".gif")
        big = frames.repeat(gif_scale, axis=1).repeat(gif_scale, axis=2)
        imageio.mimwrite(path, big, format="GIF", duration=1000 / fps, loop=0)
        paths.append(path)
    return paths


@torch.no_grad()
def open_loop(world_model, batch: TensorDictBase, context: int = 5) -> dict[str, torch.Tensor]:
    """Open-loop prediction (Dreamer Fig. 5): filter ``context`` real steps, then imagine the rest.

    The posterior runs on the first ``context`` observations; from its last state the prior rolls
    forward with the recorded ``prev_action`` of each following row (a_{t-1} leads to o_t), sampling
    s_t ~ p(s_t | h_t) as the paper's figure does (so predictions differ between calls). The decoder
    mean is the prediction; the first ``context`` steps are posterior reconstructions.

    Returns "truth" and "prediction" (pixels: float in [0, 1]; vectors: raw), "error" = |truth -
    prediction|, and "mse_per_step", the squared error per imagined step in the model's input scale
    (pixels/255 - 0.5), averaged over the batch and the observation.

    Shapes:
        batch: ``[B, T]`` with the observation ``[B, T, 3, 64, 64]`` (uint8) or ``[B, T, O]``,
            "prev_action" ``[B, T, A]``, "is_init" ``[B, T, 1]``.
        out: truth, prediction, error ``[B, T, ...]`` (observation shape); mse_per_step ``[T - context]``.
    """
    encoder, rssm, decoder, obs_key = world_model.encoder, world_model.rssm, world_model.decoder, world_model.obs_key
    if decoder is None:
        raise ValueError("the open-loop view needs a world model with a decoder (representation 'reconstruction')")
    B, T = batch.shape[:2]
    if batch.batch_dims != 2 or not 0 < context < T:
        raise ValueError(f"need a [B, T] batch with 0 < context < T, got shape {tuple(batch.shape)}, {context=}")
    batch = batch.to(_device(rssm))
    obs, prev_action, is_init = batch.get(obs_key), batch.get(keys.PREV_ACTION), batch.get(keys.IS_INIT).bool()

    post = rssm.observe(encoder(obs[:, :context]), prev_action[:, :context], is_init[:, :context])
    state, belief = post[keys.STATE][:, -1], post[keys.BELIEF][:, -1]                    # (B, S), (B, D)
    states, beliefs = [post[keys.STATE]], [post[keys.BELIEF]]
    for t in range(context, T):
        keep = (~is_init[:, t]).to(state.dtype)  # an episode start inside the window restarts from zeros
        _, state, belief = rssm.prior_step(state * keep, belief * keep, prev_action[:, t] * keep)
        states.append(state[:, None])
        beliefs.append(belief[:, None])
    decoded = decoder.pred(decoder(torch.cat(states, 1), torch.cat(beliefs, 1)))       # (B, T, *obs)
    target = preprocess_pixels(obs)
    assert decoded.shape == target.shape, (decoded.shape, target.shape)
    event_dims = tuple(range(2, target.dim()))
    mse = (target - decoded)[:, context:].pow(2).mean((0, *event_dims))                 # (T - context,)
    if obs_key == keys.PIXELS:
        truth, prediction = target + 0.5, (decoded + 0.5).clamp(0, 1)
    else:
        truth, prediction = target.float(), decoded
    return {"truth": truth, "prediction": prediction, "error": (truth - prediction).abs(), "mse_per_step": mse}


def open_loop_metrics(mse_per_step: torch.Tensor, prefix: str = "open_loop") -> dict[str, float]:
    """``{prefix}/mse_h01 ...`` per imagined step (h = steps after the last observed frame) and the mean."""
    out = {f"{prefix}/mse_h{h:02d}": float(v) for h, v in enumerate(mse_per_step.tolist(), 1)}
    out[f"{prefix}/mse_mean"] = float(mse_per_step.mean())
    return out


def _grid(truth, prediction, error, max_sequences: int) -> np.ndarray:
    """uint8 ``[N, 3 rows, T, Hh, W, 3]`` from three ``[B, T, 3, Hh, W]`` images in [0, 1]."""
    if truth.dim() != 5 or truth.shape[2] != 3:
        raise ValueError(f"open-loop strips need images [B, T, 3, H, W], got {tuple(truth.shape)}")
    rows = torch.stack([truth, prediction, error], 1)[:max_sequences]                  # (N, 3, T, 3, Hh, W)
    rows = (rows.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return rows.transpose(0, 1, 2, 4, 5, 3)                                              # (N, 3, T, Hh, W, 3)


def open_loop_strip(truth, prediction, error, max_sequences: int = 4) -> np.ndarray:
    """Figure-5 image: per sequence, rows true | predicted | error with time running left to right.

    Shapes:
        truth, prediction, error: ``[B, T, 3, Hh, W]`` in [0, 1]; out: uint8 ``[N*3*Hh, T*W, 3]``,
        N = min(B, max_sequences).
    """
    g = _grid(truth, prediction, error, max_sequences)
    n, r, t, h, w, c = g.shape
    return np.ascontiguousarray(g.transpose(0, 1, 3, 2, 4, 5).reshape(n * r * h, t * w, c))


def open_loop_video_frames(truth, prediction, error, max_sequences: int = 4) -> np.ndarray:
    """Video of the same: at each step, sequences side by side, rows true | predicted | error.

    Shapes: out uint8 ``[T, 3*Hh, N*W, 3]``.
    """
    g = _grid(truth, prediction, error, max_sequences)
    n, r, t, h, w, c = g.shape
    return np.ascontiguousarray(g.transpose(2, 1, 3, 0, 4, 5).reshape(t, r * h, n * w, c))


def write_open_loop(out: dict[str, torch.Tensor], path_stem: str | Path, max_sequences: int = 4,
                    fps: int = 10) -> list[Path]:
    """Write ``<stem>.png`` (the strip), ``<stem>.mp4`` and ``<stem>.gif`` for :func:`open_loop`'s output."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    imageio.imwrite(png, open_loop_strip(out["truth"], out["prediction"], out["error"], max_sequences))
    frames = open_loop_video_frames(out["truth"], out["prediction"], out["error"], max_sequences)
    return [png, *write_video(frames, stem, fps=fps)]


def _tensorboard_gif(logger: TensorboardLogger, name: str, frames: np.ndarray, step: int, fps: int) -> None:
    # torchrl's log_video goes through torch's add_video, which needs moviepy < 2 (moviepy.editor).
    # This writes the summary add_video writes, an animated GIF image, encoded by imageio instead, through
    # the SummaryWriter's file writer as add_video does (_get_file_writer: private but long-standing).
    from tensorboard.compat.proto.summary_pb2 import Summary

    buffer = io.BytesIO()
    imageio.mimwrite(buffer, frames, format="GIF", duration=1000 / fps, loop=0)
    image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3,
                          encoded_image_string=buffer.getvalue())
    summary = Summary(value=[Summary.Value(tag=name, image=image)])
    logger.experiment._get_file_writer().add_summary(summary, step)


def log_video(loggers, name: str, frames: np.ndarray, step: int, fps: int = 30) -> None:
    """Log uint8 ``[T, Hh, W, 3]`` frames to every logger that shows videos.

    TensorBoard gets an animated GIF (Images tab). ``CSVLogger`` is skipped: its videos are tensor
    dumps, and :func:`write_video` already puts playable files in the run directory. Other TorchRL
    loggers get ``log_video`` with a uint8 ``[1, T, 3, Hh, W]`` tensor.
    """
    for logger in loggers:
        if isinstance(logger, TensorboardLogger):
            _tensorboard_gif(logger, name, np.asarray(frames), step, fps)
        elif not isinstance(logger, CSVLogger) and hasattr(logger, "log_video"):
            logger.log_video(name, torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2)[None], step=step)


def log_image(loggers, name: str, image: np.ndarray, step: int) -> None:
    """Log a uint8 ``[Hh, W, 3]`` image (e.g. the open-loop strip) to TensorBoard loggers."""
    for logger in loggers:
        if isinstance(logger, TensorboardLogger):
            logger.experiment.add_image(name, image, global_step=step, dataformats="HWC")
