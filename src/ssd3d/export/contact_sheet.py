"""Contact sheet: V views side by side, RGB on top and normal maps below, as one PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as imageio_v3
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ssd3d.atomic import atomic_path
from ssd3d.errors import SSD3DError
from ssd3d.export._images import to_uint8_nhwc, upscale_nearest

# With upscale=None each tile is enlarged (integer factor, nearest) to at least this many
# pixels on its short side: 32x32 renders become 128x128, 8 of them a 1 k-wide sheet.
DEFAULT_MIN_TILE = 128
# Separator between tiles and rows, in pixels, and its colour: dark grey, because the
# renders have white backgrounds and the normal maps mid-grey ones.
DEFAULT_SEPARATOR = 2
SEPARATOR_RGB = (48, 48, 48)
# Height of the label band above the tiles and the font size in it, in pixels.
LABEL_BAND = 20
LABEL_FONT_SIZE = 14


def contact_sheet(
    rgb: Tensor | np.ndarray,
    normal: Tensor | np.ndarray | None = None,
    *,
    labels: Sequence[str] | None = None,
    upscale: int | None = None,
    normals_signed: bool = True,
    separator: int = DEFAULT_SEPARATOR,
) -> np.ndarray:
    """Lay out V views in a row (normal maps in a second row): uint8 [H', W', 3].

    rgb [V, 3, H, W] in [0, 1]; normal [V, 3, H, W] in [-1, 1] (``normals_signed=True``,
    mapped by (n + 1) / 2) or already in [0, 1] (``normals_signed=False``).
    Tiles are enlarged by ``upscale`` (nearest; None: enough for a DEFAULT_MIN_TILE short
    side). View i's tile starts at x = i * (W*upscale + separator); the RGB row at
    y = LABEL_BAND if labels else 0, the normal row ``H*upscale + separator`` below it.
    So H' = [LABEL_BAND] + H*upscale [+ separator + H*upscale], W' = V*W*upscale + (V-1)*sep.
    """
    rgb = torch.as_tensor(rgb)
    if rgb.ndim != 4 or rgb.shape[1] != 3 or rgb.shape[0] == 0:
        raise SSD3DError(f"rgb must be [V, 3, H, W] with V >= 1; got {tuple(rgb.shape)}")
    v, _, h, w = rgb.shape
    if normal is not None:
        normal = torch.as_tensor(normal)
        if normal.shape != rgb.shape:
            raise SSD3DError(
                f"normal must have the shape of rgb {tuple(rgb.shape)}; got {tuple(normal.shape)}"
            )
        if normals_signed:
            normal = (normal.float() + 1.0) / 2.0
    if labels is not None and len(labels) != v:
        raise SSD3DError(f"labels: need one per view ({v}); got {len(labels)}")
    if upscale is None:
        upscale = max(1, math.ceil(DEFAULT_MIN_TILE / min(h, w)))
    if not (isinstance(upscale, int) and upscale >= 1):
        raise SSD3DError(f"upscale must be a positive integer; got {upscale!r}")
    if not (isinstance(separator, int) and separator >= 0):
        raise SSD3DError(f"separator must be a non-negative integer; got {separator!r}")

    rows = [upscale_nearest(to_uint8_nhwc(rgb, "rgb"), upscale)]
    if normal is not None:
        rows.append(upscale_nearest(to_uint8_nhwc(normal, "normal"), upscale))
    th, tw = h * upscale, w * upscale
    top = LABEL_BAND if labels is not None else 0
    height = top + len(rows) * th + (len(rows) - 1) * separator
    width = v * tw + (v - 1) * separator
    sheet = np.empty((height, width, 3), dtype=np.uint8)
    sheet[:] = SEPARATOR_RGB
    for r, tiles in enumerate(rows):
        y = top + r * (th + separator)
        for i in range(v):
            x = i * (tw + separator)
            sheet[y : y + th, x : x + tw] = tiles[i]
    if labels is not None:
        sheet[:top] = 255
        _draw_labels(sheet, labels, tw, separator)
    return sheet


def _draw_labels(sheet: np.ndarray, labels: Sequence[str], tile_w: int, separator: int) -> None:
    """Write each label, black on the white band, at the left of its tile (in place)."""
    image = Image.fromarray(sheet[:LABEL_BAND])
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    pad = (LABEL_BAND - LABEL_FONT_SIZE) // 2
    for i, text in enumerate(labels):
        x = i * (tile_w + separator) + pad
        # Clip the text to its own tile so a long label cannot run into the next one.
        tile = Image.new("RGB", (max(tile_w - pad, 1), LABEL_BAND), (255, 255, 255))
        ImageDraw.Draw(tile).text((0, pad), str(text), fill=(0, 0, 0), font=font)
        image.paste(tile, (x, 0))
    sheet[:LABEL_BAND] = np.asarray(image)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 [H, W, 3] (or [H, W, 4]) image as PNG, atomically; return the path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise SSD3DError(
            f"image must be uint8 [H, W, 3 or 4]; got {image.dtype} {tuple(image.shape)}"
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        imageio_v3.imwrite(tmp, image, extension=".png")  # PNG whatever the suffix says
    return path
