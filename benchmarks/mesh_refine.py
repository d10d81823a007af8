"""Does a mesh stage after the volume raise the oracle? Gaussians, then their mesh, refined.

    python benchmarks/mesh_refine.py [--prompts "a green cube;..."] [--volume-steps 200]
        [--mesh-steps 100] [--mesh-resolution 48] [--seed 0] [--out results/mesh/refine.json]
        [--start gaussians|truth]

Magic3D's and threestudio's second stage, measured on the benchmark's oracle: 3D Gaussians
fitted to ToyWorld's true renders (exact preset, ``--volume-steps``), exported (marching
cubes at their surface level, ``--mesh-resolution``), and the mesh's vertices and colours
fitted for ``--mesh-steps`` more steps to the same true renders through the soft rasteriser
(``ssd3d.scene.mesh``), with the same cameras, shading and views a step. Both stages are
scored by the benchmark's scorer (``ssd3d.bench.scoring``); beside them, each stage's wall
time.

``--start truth`` asks what the mesh stage's own fit costs: it starts on the true surface
(``toyworld.shapes.surface_mesh`` at ``--mesh-resolution`` points a side, in the prompt's
true colour) instead of the Gaussians' export, so that every step away from the first row's
scores is the fit moving off a surface it cannot improve on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gaussians_solid  # noqa: E402  (the oracle runs)

from ssd3d.bench.config import EvalConfig  # noqa: E402
from ssd3d.bench.scoring import Scorer  # noqa: E402
from ssd3d.pipeline.loop import build_optimizer  # noqa: E402
from ssd3d.scene.mesh import MeshConfig, MeshScene  # noqa: E402
from ssd3d.toyworld.shapes import surface_mesh  # noqa: E402
from ssd3d.toyworld.truth import DEFAULT_TRUTH_RENDERER, TRUTH_RENDERERS  # noqa: E402
from ssd3d.toyworld.vocabulary import colour_rgb  # noqa: E402

STARTS = ("gaussians", "truth")
METRICS = ("iou", "silhouette_iou", "chamfer", "normal_consistency", "depth_error", "psnr")


def refine(
    prompt: str,
    volume_steps: int,
    mesh_steps: int,
    resolution: int,
    seed: int,
    mesh_config: MeshConfig,
    truth: str = DEFAULT_TRUTH_RENDERER,
):
    """Scores of the Gaussian oracle and of its refined mesh, with each stage's seconds."""
    _, run = gaussians_solid.prepare_gaussians(
        "default", "oracle", prompt, volume_steps + mesh_steps, seed, truth=truth
    )
    scorer = Scorer(EvalConfig(truth_renderer=truth))
    width, height = run.cfg.camera.width, run.cfg.camera.height
    start = time.perf_counter()
    while run.step < volume_steps:
        run.run_step()
    volume_seconds = time.perf_counter() - start
    gaussians = run.scene
    rows = {
        "gaussians": {**scorer.score(gaussians, prompt, width, height), "seconds": volume_seconds}
    }
    start = time.perf_counter()
    mesh = MeshScene.from_trimesh(
        gaussians.export_mesh(resolution), mesh_config, gaussians.background
    )
    rows["mesh, unrefined"] = {
        **scorer.score(mesh, prompt, width, height),
        "seconds": time.perf_counter() - start,
    }
    run.scene = mesh
    run.optimizer = build_optimizer(run.cfg, mesh)
    while run.step < volume_steps + mesh_steps:
        run.run_step()
    rows["mesh, refined"] = {
        **scorer.score(mesh, prompt, width, height),
        "seconds": volume_seconds + time.perf_counter() - start,
    }
    return rows


def refine_truth(
    prompt: str,
    mesh_steps: int,
    resolution: int,
    seed: int,
    mesh_config: MeshConfig,
    truth: str = DEFAULT_TRUTH_RENDERER,
):
    """Scores of the true surface as a mesh scene, and of it after ``mesh_steps`` oracle steps."""
    _, run = gaussians_solid.prepare_gaussians(
        "default", "oracle", prompt, mesh_steps, seed, truth=truth
    )
    scorer = Scorer(EvalConfig(truth_renderer=truth))
    width, height = run.cfg.camera.width, run.cfg.camera.height
    colour, shape = prompt.split()[-2:]
    true_surface = surface_mesh(shape, resolution)
    true_surface.visual.vertex_colors = [round(255 * c) for c in colour_rgb(colour)] + [255]
    mesh = MeshScene.from_trimesh(true_surface, mesh_config, run.scene.background)
    rows = {"true surface": {**scorer.score(mesh, prompt, width, height), "seconds": 0.0}}
    run.scene = mesh
    run.optimizer = build_optimizer(run.cfg, mesh)
    start = time.perf_counter()
    while run.step < mesh_steps:
        run.run_step()
    rows["true surface, refined"] = {
        **scorer.score(mesh, prompt, width, height),
        "seconds": time.perf_counter() - start,
    }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts", default="a green cube;a purple cylinder;a yellow wedge;a yellow arrow"
    )
    parser.add_argument("--volume-steps", type=int, default=200)
    parser.add_argument("--mesh-steps", type=int, default=100)
    parser.add_argument("--mesh-resolution", type=int, default=48)
    parser.add_argument("--lr-vertices", type=float, default=MeshConfig.lr_vertices)
    parser.add_argument("--laplacian", type=float, default=MeshConfig.laplacian)
    parser.add_argument("--smoothing", type=float, default=MeshConfig.smoothing)
    parser.add_argument("--dihedral", type=float, default=MeshConfig.dihedral)
    parser.add_argument(
        "--smooth-normals",
        action=argparse.BooleanOptionalAction,
        default=MeshConfig.smooth_normals,
        help="shade the mesh with interpolated vertex normals (mesh.smooth_normals)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--truth",
        choices=TRUTH_RENDERERS,
        default=DEFAULT_TRUTH_RENDERER,
        help="how the true renders (supervision and scores) are drawn",
    )
    parser.add_argument(
        "--start",
        choices=STARTS,
        default="gaussians",
        help="the mesh stage's start: the Gaussian oracle's export, or the true surface",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = MeshConfig(
        lr_vertices=args.lr_vertices,
        laplacian=args.laplacian,
        smoothing=args.smoothing,
        dihedral=args.dihedral,
        smooth_normals=args.smooth_normals,
    )
    results = {}
    for prompt in args.prompts.split(";"):
        if args.start == "truth":
            results[prompt] = refine_truth(
                prompt, args.mesh_steps, args.mesh_resolution, args.seed, config, args.truth
            )
        else:
            results[prompt] = refine(
                prompt,
                args.volume_steps,
                args.mesh_steps,
                args.mesh_resolution,
                args.seed,
                config,
                args.truth,
            )
        for stage, row in results[prompt].items():
            print(
                f"{prompt} / {stage}: "
                + ", ".join(f"{k} {row[k]:.3f}" for k in (*METRICS, "seconds")),
                flush=True,
            )
    start = (
        f"{args.volume_steps} oracle steps on 3D Gaussians"
        if args.start == "gaussians"
        else "the true surface"
    )
    print(
        f"\n{start}, then {args.mesh_steps} on its mesh "
        f"(marching cubes at {args.mesh_resolution}^3; vertex rate {args.lr_vertices:g}, Laplacian {args.laplacian:g}, smoothing {args.smoothing:g}, dihedral {args.dihedral:g}, smooth normals {args.smooth_normals}); "
        f"true renders by {args.truth!r}; seed {args.seed}.\n"
    )
    print("| prompt | stage | " + " | ".join(METRICS) + " | wall s |")
    print("|---|---|" + ":-:|" * (len(METRICS) + 1))
    for prompt, stages in results.items():
        for stage, row in stages.items():
            print(
                f"| {prompt} | {stage} | "
                + " | ".join(f"{row[k]:.3f}" for k in METRICS)
                + f" | {row['seconds']:.0f} |"
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.out.write_text(json.dumps(payload, indent=2, default=float))


if __name__ == "__main__":
    main()
