"""Image-array conversions shared by the video writer and the contact sheet."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_uint8_nhwc(images: Tensor | np.ndarray, name: str) -> np.ndarray:
    """Images as uint8 [N, H, W, 3].

    Accepts the project's tensor layout, torch [N, 3, H, W] (float in [0, 1] or uint8), and
    the imageio layout, numpy [N, H, W, 3] (uint8, or float in [0, 1]). Floats are clamped
    to [0, 1] and rounded, so an overshoot of the renderer does not wrap around.
    """
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}: a tensor must be [N, 3, H, W]; got {tuple(images.shape)}")
        images = images.detach().permute(0, 2, 3, 1).cpu()
        if images.dtype != torch.uint8:
            images = (images.float().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
        return np.ascontiguousarray(images.numpy())
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: an array must be [N, H, W, 3]; got {images.shape}")
    if images.dtype != np.uint8:
        images = (np.clip(np.nan_to_num(images.astype(np.float32)), 0, 1) * 255).round()
        images = images.astype(np.uint8)
    return np.ascontiguousarray(images)


def upscale_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """Repeat each pixel ``factor`` times along H and W: [N, H, W, C] -> [N, fH, fW, C]."""
    if factor == 1:
        return images
    return images.repeat(factor, axis=1).repeat(factor, axis=2)
