"""Milliseconds per render + backward on the CPU: 3D Gaussians (default config) vs the voxel scene.

    python benchmarks/gaussians_step.py [--repeats 10] [--views 2] [--size 32] [--count N]

Both scenes render ``--views`` random training views of ``--size`` px with lambertian shading
(normals on) and backpropagate a weighted sum of the image; the median of ``--repeats`` timed
calls after two warm-up calls is printed, with torch's thread count: wall time and this
process's CPU time (``time.process_time``; on a shared machine the CPU time is what the code
costs, the wall time adds the wait for a core). The Gaussians are timed with the default sparse
compositor and with the dense reference (``compositor="dense"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
from ssd3d.scene.splat import splat


def time_scene(render, params, cameras, shading, repeats: int) -> tuple[float, float, float]:
    """Median (render, backward, CPU time of both) in ms."""
    weights = torch.rand(cameras.batch_size, 3, cameras.height, cameras.width)
    forward, backward, cpu = [], [], []
    for i in range(repeats + 2):
        for p in params:
            p.grad = None
        start, start_cpu = time.perf_counter(), time.process_time()
        out = render(cameras, shading)
        mid = time.perf_counter()
        (out.rgb * weights).sum().backward()
        end, end_cpu = time.perf_counter(), time.process_time()
        if i >= 2:
            forward.append((mid - start) * 1e3)
            backward.append((end - mid) * 1e3)
            cpu.append((end_cpu - start_cpu) * 1e3)
    return statistics.median(forward), statistics.median(backward), statistics.median(cpu)


def dense_render(scene: GaussianScene, cameras, shading):
    """The scene's render with the dense reference compositor."""
    return splat(
        scene.means,
        scene.log_scales,
        scene.quaternions,
        scene.opacity_logits,
        scene.sh(),
        cameras,
        scene.background,
        shading,
        backend="torch",
        compositor="dense",
    ).render


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
    gaussians = GaussianScene(cfg)
    voxels = RadianceScene(
        VoxelGridField(VoxelGridConfig()), SolidBackground((1, 1, 1)), RenderConfig()
    )
    scenes = {
        f"gaussians ({cfg.initial_count})": (gaussians.render, gaussians),
        f"gaussians ({cfg.initial_count}), dense": (
            functools.partial(dense_render, gaussians),
            gaussians,
        ),
        "voxels (24^3, 48 samples)": (voxels.render, voxels),
    }
    print(
        f"{args.views} views of {args.size}x{args.size}, lambertian, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    for name, (render, module) in scenes.items():
        fwd, bwd, cpu = time_scene(
            render, list(module.parameters()), cameras, shading, args.repeats
        )
        print(
            f"  {name:28s} render {fwd:7.1f} ms  backward {bwd:7.1f} ms  "
            f"total {fwd + bwd:7.1f} ms  (CPU {cpu:7.1f} ms)"
        )


if __name__ == "__main__":
    main()
