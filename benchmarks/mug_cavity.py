"""Do the renders see the mug's cavity? The true mug against the same mug filled in.

    python benchmarks/mug_cavity.py [--views 64] [--size 32]

The mug's oracle stops near 3D IoU 0.40 on every scene (voxel grid, Gaussians, their mesh)
and at 64x64 renders too, while its silhouettes match (0.93-0.98). A filled mug (the cup and
handle without the cavity) has a 3D IoU against the true one of about the cavity's share of
the cup. If its renders are close to the true renders, the photometric loss cannot tell the
two apart and the oracle has no reason to carve. This prints, for the filled mug against the
true one: the 3D IoU (the scorer's grid), and over random training cameras (the run's
default camera distribution) and over the scorer's orbit, in each shading mode, the PSNR of
the renders, the silhouette IoU and the share of views where any pixel differs by more than
0.1.
"""

from __future__ import annotations

import argparse

import torch

from ssd3d.bench.metrics import occupancy_iou, psnr, silhouette_iou
from ssd3d.scene import SolidBackground, fixed_shading
from ssd3d.scene.cameras import CameraConfig, orbit_cameras, sample_cameras
from ssd3d.scene.shading import SHADING_MODES
from ssd3d.toyworld.shapes import MUG_HALF_HEIGHT, MUG_RADIUS, sdf, sdf_cylinder
from ssd3d.toyworld.truth import GroundTruthField, render_truth

IOU_RESOLUTION = 64
ORBIT_VIEWS = 12
# A pixel that differs by more than this (in any channel) is a visible difference.
VISIBLE = 0.1


class FilledMug(GroundTruthField):
    """The mug with its cavity filled: the cup's cylinder union the true mug (its handle)."""

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        cup = sdf_cylinder(points, MUG_RADIUS, MUG_HALF_HEIGHT)
        return torch.minimum(cup, super().sdf(points))


def compare(true: GroundTruthField, filled: GroundTruthField, cameras, mode: str) -> dict:
    background = SolidBackground()
    shading = fixed_shading(mode, cameras)
    a = render_truth(true, cameras, background, shading)
    b = render_truth(filled, cameras, background, shading)
    visible = (a.rgb - b.rgb).abs().amax(dim=1) > VISIBLE  # [B, H, W], over the channels
    return {
        "psnr": psnr(b.rgb, a.rgb),
        "silhouette_iou": silhouette_iou(b.opacity, a.opacity),
        "views_with_visible_difference": float(visible.flatten(1).any(dim=1).float().mean()),
        "pixels_with_visible_difference": float(visible.float().mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=64, help="random training cameras")
    parser.add_argument("--size", type=int, default=32, help="render width and height")
    args = parser.parse_args(argv)
    true, filled = GroundTruthField("mug", "red"), FilledMug("mug", "red")

    axis = torch.linspace(-1, 1, IOU_RESOLUTION)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    iou = occupancy_iou(sdf("mug", points) < 0, filled.sdf(points) < 0)
    print(f"3D IoU of the filled mug against the true one ({IOU_RESOLUTION}³ grid): {iou:.3f}")

    generator = torch.Generator().manual_seed(0)
    camera_config = CameraConfig(width=args.size, height=args.size)
    sets = {
        f"{args.views} training cameras": sample_cameras(camera_config, args.views, generator),
        f"the scorer's {ORBIT_VIEWS}-view orbit": orbit_cameras(
            ORBIT_VIEWS, width=args.size, height=args.size
        ),
    }
    print(f"\nThe filled mug's renders against the true mug's, {args.size}x{args.size}:\n")
    print("| cameras | shading | PSNR dB | sil. IoU | views with a visible difference | pixels |")
    print("|---|---|:-:|:-:|:-:|:-:|")
    for name, cameras in sets.items():
        for mode in SHADING_MODES:
            m = compare(true, filled, cameras, mode)
            print(
                f"| {name} | {mode} | {m['psnr']:.1f} | {m['silhouette_iou']:.3f} | "
                f"{m['views_with_visible_difference']:.2f} | "
                f"{m['pixels_with_visible_difference']:.4f} |"
            )


if __name__ == "__main__":
    main()
