"""The 2D representation: optimise an image's pixels directly (for estimator studies).

A ``Scene`` like the 3D ones, so the distillation loop runs unchanged; cameras only set the
batch size (every view sees the same image) and shading is ignored. It has no views (no
view-dependent prompts) and no mesh: its export is the image itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import trimesh
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.scene import named_groups
from ssd3d.scene.shading import Shading

# Pixels are colour: the voxel scene's albedo rate.
DEFAULT_LR_PIXELS = 0.05

# Init images are clamped away from 0 and 1 so their logits stay finite.
_INIT_CLAMP = 1e-3


class ImageScene(nn.Module):
    """Pixels = sigmoid(logits), logits [1, 3, H, W]; zero logits give a uniform grey."""

    name: ClassVar[str] = "image"
    is_3d: ClassVar[bool] = False
    # Opacity is 1 everywhere and there are no normals: no regulariser applies.
    supported_regularisers: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        height: int = 32,
        width: int = 32,
        init: Tensor | None = None,
        lr: float = DEFAULT_LR_PIXELS,
    ) -> None:
        """init: optional starting image [3, H, W] or [1, 3, H, W] in [0, 1]."""
        super().__init__()
        self.lr = lr
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

    @classmethod
    def from_config(cls, cfg: Any) -> ImageScene:
        """From a run's config: the camera's size, the albedo learning rate."""
        return cls(cfg.camera.height, cfg.camera.width, lr=cfg.optim.lr_albedo)

    @staticmethod
    def describe(cfg: Any) -> str:
        return f"image {cfg.camera.width}×{cfg.camera.height} px"

    def param_groups(self) -> list[dict[str, Any]]:
        return named_groups({"pixels": [self.logits]}, {"pixels": self.lr})

    def restructure(self, step: int) -> bool:
        return False

    def observe_gradients(self, step: int) -> None:
        return None

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        return {}

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        return {}

    def export_mesh(self, resolution: int) -> trimesh.Trimesh:
        raise SSD3DError("a 2D image scene has no mesh")

    def export_files(self, folder: Path) -> dict[str, Path]:
        from ssd3d.export import save_png

        image = (self.image()[0].detach().cpu().permute(1, 2, 0) * 255).round().byte().numpy()
        return {"image": save_png(image, Path(folder) / "image.png")}
