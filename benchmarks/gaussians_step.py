"""Milliseconds per render + backward on the CPU: 3D Gaussians (default config) vs the voxel scene.

    python benchmarks/gaussians_step.py [--repeats 10] [--views 2] [--size 32] [--count N]

Both scenes render ``--views`` random training views of ``--size`` px with lambertian shading
(normals on) and backpropagate a weighted sum of the image; the median of ``--repeats`` timed
calls after two warm-up calls is printed, with torch's thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from ssd3d.scene import (
    CameraConfig,
    RadianceScene,
    RenderConfig,
    SolidBackground,
    VoxelGridConfig,
    VoxelGridField,
    fixed_shading,
    sample_cameras,
)
from ssd3d.scene.gaussians import GaussianConfig, GaussianScene


def time_scene(scene, cameras, shading, repeats: int) -> tuple[float, float]:
    weights = torch.rand(cameras.batch_size, 3, cameras.height, cameras.width)
    forward, backward = [], []
    for i in range(repeats + 2):
        scene.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = scene.render(cameras, shading)
        mid = time.perf_counter()
        (out.rgb * weights).sum().backward()
        end = time.perf_counter()
        if i >= 2:
            forward.append((mid - start) * 1e3)
            backward.append((end - mid) * 1e3)
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--count", type=int, default=None, help="Gaussians (default: config's)")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    cameras = sample_cameras(CameraConfig(width=args.size, height=args.size), args.views, gen)
    shading = fixed_shading("lambertian", cameras)
    cfg = GaussianConfig(backend="torch")
    if args.count is not None:
        cfg = dataclasses.replace(cfg, initial_count=args.count, max_count=max(args.count, 1))
    scenes = {
        f"gaussians ({cfg.initial_count})": GaussianScene(cfg),
        "voxels (24^3, 48 samples)": RadianceScene(
            VoxelGridField(VoxelGridConfig()), SolidBackground((1, 1, 1)), RenderConfig()
        ),
    }
    print(
        f"{args.views} views of {args.size}x{args.size}, lambertian, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    for name, scene in scenes.items():
        fwd, bwd = time_scene(scene, cameras, shading, args.repeats)
        print(
            f"  {name:28s} render {fwd:7.1f} ms  backward {bwd:7.1f} ms  total {fwd + bwd:7.1f} ms"
        )


if __name__ == "__main__":
    main()
