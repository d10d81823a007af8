"""Turntable videos: mp4 (H.264, plays in browsers) and looping gif."""

from __future__ import annotations

import math
import os
from pathlib import Path

import imageio.v2 as imageio_v2
import imageio.v3 as imageio_v3
import numpy as np
from torch import Tensor

from ssd3d.atomic import atomic_path
from ssd3d.errors import SSD3DError
from ssd3d.export._images import to_uint8_nhwc, upscale_nearest

# threestudio's save_video default: 30 frames per second.
DEFAULT_FPS = 30
# Frames are upscaled (nearest neighbour, integer factor) until the short side is at least
# this: a 32x32 render is too small to see, and nearest keeps the voxel-sharp pixels.
DEFAULT_MIN_SIZE = 256
# libx264 constant rate factor: 18 is visually lossless; the default 23 smears flat colours.
X264_CRF = "18"

VIDEO_FORMATS = (".mp4", ".gif")


def prepare_frames(frames: Tensor | np.ndarray, min_size: int = DEFAULT_MIN_SIZE) -> np.ndarray:
    """Frames as uint8 [N, H', W', 3], upscaled to a short side >= min_size and even H', W'.

    H.264 with yuv420p subsamples chroma 2x2, so both sides must be even; an odd side gets
    its last row or column repeated.
    """
    frames = to_uint8_nhwc(frames, "frames")
    n, h, w, _ = frames.shape
    if n == 0 or h == 0 or w == 0:
        raise SSD3DError(f"frames: need at least one non-empty frame; got shape {frames.shape}")
    frames = upscale_nearest(frames, max(1, math.ceil(min_size / min(h, w))))
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(
    frames: Tensor | np.ndarray,
    path: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Path:
    """Write frames to ``path`` (.mp4 or .gif, chosen by suffix) atomically; return the path.

    ``frames``: numpy uint8 [N, H, W, 3], or torch [N, 3, H, W] float in [0, 1].
    mp4 is H.264 / yuv420p with the moov atom first (``+faststart``) so browsers stream it;
    gif loops forever. Pillow merges identical consecutive gif frames, so a gif of a
    still scene may hold fewer frames than given (the total duration is kept).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise SSD3DError(f"path: video must end in one of {VIDEO_FORMATS}; got {str(path)!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise SSD3DError(f"fps must be positive; got {fps}")
    frames = prepare_frames(frames, min_size)
    with atomic_path(path) as tmp:
        if suffix == ".mp4":
            writer = imageio_v2.get_writer(
                tmp,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                quality=None,  # rate control by CRF below, not imageio's bitrate scale
                macro_block_size=1,  # sides are already even; never let imageio resize
                ffmpeg_params=["-crf", X264_CRF, "-movflags", "+faststart"],
            )
            try:
                for frame in frames:
                    writer.append_data(frame)
            finally:
                writer.close()
        else:
            imageio_v3.imwrite(
                tmp, frames, plugin="pillow", extension=".gif", duration=1000.0 / fps, loop=0
            )
    return path
