"""Where do ToyWorld's true renders draw each shape's outline? The true surface, offset.

    python benchmarks/truth_halo.py [--offsets 0,0.01,0.02,0.03,0.04,0.05] [--size 32]

The ground-truth field is a soft step, ``DENSITY_SCALE * sigmoid(-sdf / SURFACE_WIDTH)``
(``ssd3d.toyworld.truth``). A ray that meets the surface head-on turns opaque about one width
outside it, but a ray grazing a face travels a long chord through the tail: on a chord of
length l its opacity reaches one half where ``l * DENSITY_SCALE * sigmoid(-d / width) = ln 2``,
d = 0.045 for the cube's 0.6 side. So the true renders' outlines lie outside the true shape.

This measures by how much: each shape's exact surface offset outward by d (marching cubes of
sdf = d, 128^3) is rasterised hard-edged (``ssd3d.scene.raster``, the mesh scene's renderer)
into the scorer's orbit, and its silhouette IoU against the true renders is printed for each
d, beside the 3D IoU of the offset shape against the true one (the scorer's grid and yaw
search). A scene that reproduced the true renders exactly would have the best-matching d's
silhouettes, so the 3D IoU in that column is what a perfect photometric oracle scores with
a sharp surface.
"""

from __future__ import annotations

import argparse

import torch

from ssd3d.bench.config import EvalConfig
from ssd3d.bench.metrics import iou_over_yaw, silhouette_iou
from ssd3d.bench.scoring import Scorer
from ssd3d.export.mesh import extract_mesh
from ssd3d.scene import fixed_shading
from ssd3d.scene.mesh import MeshConfig, MeshScene
from ssd3d.toyworld.shapes import SHAPES, sdf
from ssd3d.toyworld.truth import TRUTH_RENDERERS
from ssd3d.toyworld.vocabulary import make_prompt

# Density of the offset-surface grids: inside is 1 + (d - sdf), so the level 1 is sdf = d.
MESH_RESOLUTION = 128


def offset_surface(shape: str, offset: float) -> MeshScene:
    mesh = extract_mesh(
        lambda p: (1 + offset - sdf(shape, p)).clamp(min=0),
        None,
        resolution=MESH_RESOLUTION,
        threshold=1.0,
    )
    # Rendered, never optimised: the vertices themselves (no large-steps inverse to build).
    return MeshScene.from_trimesh(mesh, MeshConfig(smoothing=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", default="0,0.01,0.02,0.03,0.04,0.05")
    parser.add_argument("--size", type=int, default=32, help="render width and height, px")
    parser.add_argument("--truth", choices=TRUTH_RENDERERS, default="volume")
    args = parser.parse_args()
    torch.set_num_threads(2)
    offsets = [float(x) for x in args.offsets.split(",")]
    scorer = Scorer(EvalConfig(truth_renderer=args.truth))
    cameras = scorer.cameras(args.size, args.size, "cpu")
    shading = fixed_shading("albedo", cameras)
    print(
        f"True renders by {args.truth!r}. Silhouette IoU of the true surface offset by d against the true renders "
        f"({cameras.batch_size} orbit views, {args.size}x{args.size}) / 3D IoU of that offset shape:\n"
    )
    print("| shape | " + " | ".join(f"d = {d:g}" for d in offsets) + " | best d |")
    print("|---|" + ":-:|" * (len(offsets) + 1))
    for shape in SHAPES:
        _, truth, _ = scorer.truth_maps(make_prompt(shape, "red"), 0.0, cameras)
        cells, best = [], (-1.0, 0.0)
        for d in offsets:
            with torch.no_grad():
                opacity = offset_surface(shape, d).render(cameras, shading).opacity
            sil = silhouette_iou(opacity, truth)
            iou = iou_over_yaw(
                lambda p, d=d, s=shape: (sdf(s, p) < d).float(), shape, threshold=0.5
            )[0]
            cells.append(f"{sil:.3f} / {iou:.3f}")
            best = max(best, (sil, d))
        print(f"| {shape} | " + " | ".join(cells) + f" | {best[1]:g} |", flush=True)


if __name__ == "__main__":
    main()
