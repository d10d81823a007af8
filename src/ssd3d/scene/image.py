"""The 2D representation: optimise an image's pixels directly (for estimator studies).

The same two methods as ``RadianceScene`` so the distillation loop runs unchanged; cameras
only set the batch size (every view sees the same image) and shading is ignored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.scene import (
    DEFAULT_LR_ALBEDO,
    DEFAULT_LR_BACKGROUND,
    DEFAULT_LR_DENSITY,
    _groups,
)
from ssd3d.scene.shading import Shading

# Init images are clamped away from 0 and 1 so their logits stay finite.
_INIT_CLAMP = 1e-3


class ImageScene(nn.Module):
    """Pixels = sigmoid(logits), logits [1, 3, H, W]; zero logits give a uniform grey."""

    def __init__(self, height: int = 32, width: int = 32, init: Tensor | None = None) -> None:
        """init: optional starting image [3, H, W] or [1, 3, H, W] in [0, 1]."""
        super().__init__()
        if height < 1 or width < 1:
            raise SSD3DError(f"image height and width must be >= 1; got {height}x{width}")
        logits = torch.zeros(1, 3, height, width)
        if init is not None:
            init = init.reshape(-1, *init.shape[-3:])
            if tuple(init.shape) != (1, 3, height, width):
                raise SSD3DError(
                    f"init image must have shape [1, 3, {height}, {width}]; got {tuple(init.shape)}"
                )
            logits = torch.logit(init.float().clamp(_INIT_CLAMP, 1 - _INIT_CLAMP))
        self.logits = nn.Parameter(logits)

    def image(self) -> Tensor:
        """The current image. [1, 3, H, W] in [0, 1]"""
        return torch.sigmoid(self.logits)

    def render(
        self,
        cameras: Cameras | int,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """The image repeated once per camera (or ``cameras`` times for an int): opacity 1,
        depth 0, no normals or per-sample values."""
        b = cameras if isinstance(cameras, int) else cameras.batch_size
        rgb = self.image().expand(b, -1, -1, -1)
        h, w = rgb.shape[-2:]
        ones = rgb.new_ones(b, 1, h, w)
        return RenderOutput(
            rgb=rgb,
            opacity=ones,
            depth=torch.zeros_like(ones),
            normal=None,
            weights=None,
            sample_normals=None,
            directions=None,
        )

    def param_groups(
        self,
        lr_density: float = DEFAULT_LR_DENSITY,
        lr_albedo: float = DEFAULT_LR_ALBEDO,
        lr_background: float = DEFAULT_LR_BACKGROUND,
    ) -> list[dict[str, Any]]:
        """One group, the pixels, at ``lr_albedo`` (pixels are colour); the others are unused."""
        return _groups([("pixels", [self.logits], lr_albedo)])
