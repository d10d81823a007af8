"""Scoring a scene against the true object of its prompt: every metric of a checkpoint."""

from __future__ import annotations

import math

import torch
import trimesh

from ssd3d.bench.config import EvalConfig
from ssd3d.bench.metrics import (
    depth_error,
    psnr,
    score_object,
    silhouette_iou,
    surface_metrics,
)
from ssd3d.errors import SSD3DError
from ssd3d.scene import VolumeScene
from ssd3d.toyworld.shapes import VIEW_DISTINCT_SHAPES
from ssd3d.toyworld.truth import GroundTruthField, render_truth
from ssd3d.toyworld.vocabulary import parse_prompt

# Shapes whose front and back views differ, so a view classifier can tell a Janus object
# (shapes.py: the asymmetric shapes point along +y). The cube is not yaw-symmetric but
# looks the same every 90 degrees, so its view labels are chance, like the sphere's.
MULTI_FACE_SHAPES = VIEW_DISTINCT_SHAPES


def load_judge(path: str | None = None, device: str = "cpu"):
    """(judge or None, why not): a missing or unreadable judge is not an error here."""
    try:
        from ssd3d.models.judge import Judge as ToyJudge  # loads torch weights: only when asked

        return ToyJudge.load(path, device=device), ""
    except SSD3DError as e:
        return None, str(e)


class Scorer:
    """Scores scenes of one benchmark; caches the true renders per (prompt, yaw, camera)."""

    def __init__(self, eval_config: EvalConfig, judge=None) -> None:
        self.cfg = eval_config
        self.judge = judge
        self._truth: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def cameras(self, width: int, height: int, device):
        from ssd3d.scene import orbit_cameras

        return orbit_cameras(self.cfg.views, width=width, height=height, device=device)

    def truth(self, prompt: str, yaw_deg: float, cameras) -> torch.Tensor:
        """Renders [V, 3, H, W] of the true object turned by ``yaw_deg`` (cached)."""
        return self.truth_maps(prompt, yaw_deg, cameras)[0]

    def truth_maps(self, prompt: str, yaw_deg: float, cameras):
        """(rgb [V, 3, H, W], opacity [V, 1, H, W], depth [V, 1, H, W]) of the true object
        turned by ``yaw_deg``, on the CPU (cached)."""
        from ssd3d.scene import SolidBackground, fixed_shading

        key = (prompt, float(yaw_deg), cameras.width, cameras.height, str(cameras.device))
        if key not in self._truth:
            gt = GroundTruthField.from_prompt(prompt, yaw_deg=yaw_deg).to(cameras.device)
            shading = fixed_shading(self.cfg.shading, cameras)
            # Rendered on white like the dataset; a run's background only differs if
            # overridden, and then it is part of what is scored.
            out = render_truth(gt, cameras, SolidBackground(), shading, self.cfg.truth_renderer)
            self._truth[key] = (out.rgb.clamp(0, 1).cpu(), out.opacity.cpu(), out.depth.cpu())
        return self._truth[key]

    def view_targets(self, cameras, yaw_deg: float) -> torch.Tensor:
        """The judge's view label index [V] each camera should read on an object turned by
        ``yaw_deg`` (the best-IoU yaw, like every other metric): a Janus object shows a
        front from behind whichever way it faces; facing the wrong way is PSNR@0°'s job."""
        from ssd3d.scene import view_labels

        return torch.tensor(
            [self.judge.view_names.index(v) for v in view_labels(cameras, object_yaw_deg=yaw_deg)]
        )

    @torch.no_grad()
    def score(self, scene: VolumeScene, prompt: str, width: int, height: int) -> dict[str, float]:
        """Every metric of ``scene`` against ``prompt``'s true object."""
        from ssd3d.export import extract_mesh
        from ssd3d.scene import fixed_shading

        c = self.cfg
        level = c.threshold if c.threshold is not None else scene.surface_level
        device = next(iter(scene.state_dict().values())).device
        try:
            mesh = extract_mesh(
                scene.density,
                None,
                resolution=c.mesh_resolution,
                threshold=level,
                device=device,
            )
        except SSD3DError:  # nothing above the threshold: Chamfer is inf
            mesh = torch.zeros(0, 3)
        metrics = score_object(
            scene.density,
            scene.albedo,
            prompt,
            surface=mesh,
            threshold=level,
            resolution=c.iou_resolution,
            n_yaw=c.n_yaw,
            n_surface=c.n_surface,
            generator=torch.Generator().manual_seed(c.seed),
            device=device,
        )
        metrics.pop("threshold")
        shape = parse_prompt(prompt).shape
        if isinstance(mesh, trimesh.Trimesh):
            surface = surface_metrics(
                mesh,
                shape,
                yaw_deg=metrics["yaw_deg"],
                n_surface=c.n_surface,
                generator=torch.Generator().manual_seed(c.seed),
            )
            metrics["normal_consistency"] = surface["normal_consistency"]
        else:
            metrics["normal_consistency"] = math.nan
        cameras = self.cameras(width, height, device)
        out = scene.render(cameras, fixed_shading(c.shading, cameras))
        renders = out.rgb.clamp(0, 1).cpu()
        true_rgb, true_opacity, true_depth = self.truth_maps(prompt, metrics["yaw_deg"], cameras)
        metrics["psnr"] = psnr(renders, true_rgb)
        opacity, depth = out.opacity.cpu(), out.depth.cpu()
        metrics["silhouette_iou"] = silhouette_iou(opacity, true_opacity)
        metrics["depth_error"] = depth_error(depth, opacity, true_depth, true_opacity)
        metrics["psnr_yaw0"] = psnr(renders, self.truth(prompt, 0.0, cameras))
        metrics["r_precision"] = metrics["multi_face"] = math.nan
        if self.judge is not None:
            try:
                metrics["r_precision"] = self.judge.r_precision(renders, prompt)
            except SSD3DError:  # a prompt the judge was not trained on
                pass
            if shape in MULTI_FACE_SHAPES:
                labels = self.view_targets(cameras, metrics["yaw_deg"])
                metrics["multi_face"] = self.judge.multi_face_score(renders, labels)
        return {k: float(v) for k, v in metrics.items()}


__all__ = ["MULTI_FACE_SHAPES", "Scorer", "load_judge"]
