"""Pixels as the networks take them: uint8 frames in, ``x / 255 - 0.5`` (the official codes' centring) inside.

Shapes: pixels ``[*N, 3, 64, 64]``. Used where user data enters (the acting policy, the world-model loss, the
replay buffer) and by the conv encoders (:mod:`dreamer_trl.model.layers`).
"""
from __future__ import annotations

import torch


def pixels_as_uint8(pixels: torch.Tensor, key: str = "pixels") -> torch.Tensor:
    """Pixels as the model's inputs take them: uint8 ``[0, 255]`` as they are; float ``[0, 1]`` (what TorchRL's
    ``ToTensorImage`` makes of 8-bit frames) quantised back to uint8, which is lossless for such frames.

    Raises TypeError for other dtypes and ValueError for floats outside ``[0, 1]`` (e.g. normalised frames:
    the model centres pixels itself, ``x / 255 - 0.5``). Used where user data enters: the acting policy,
    :class:`~dreamer_trl.objectives.WorldModelLoss` and the replay buffer.
    """
    if pixels.dtype == torch.uint8:
        return pixels
    if not pixels.is_floating_point():
        raise TypeError(f"{key!r} must be uint8 in [0, 255] or float in [0, 1], got {pixels.dtype}")
    low, high = pixels.aminmax()
    if low < 0 or high > 1:
        raise ValueError(f"float {key!r} must be in [0, 1] (TorchRL's ToTensorImage), got values in "
                         f"[{float(low):.3g}, {float(high):.3g}]; pass raw frames (uint8 [0, 255]) or [0, 1] "
                         "floats, without normalisation: the model centres them itself")
    return pixels.mul(255).round_().to(torch.uint8)


def preprocess_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` to float ``[-0.5, 0.5]`` (official code: ``obs / 255 - 0.5``); floats pass through
    (they are taken as already centred: user floats in ``[0, 1]`` go through :func:`pixels_as_uint8` first).

    Images ``[*N, C, H, W]`` come out channels-last in memory (the channel stride is 1), the layout of the
    NHWC convolutions, so neither the encoder nor the reconstruction loss copies them again.
    """
    if pixels.dtype != torch.uint8:
        return pixels
    if pixels.dim() < 3:
        return pixels.float().div_(255.0).sub_(0.5)
    return pixels.movedim(-3, -1).contiguous().float().div_(255.0).sub_(0.5).movedim(-1, -3)
