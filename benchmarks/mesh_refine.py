"""Does a mesh stage after the volume raise the oracle? Gaussians, then their mesh, refined.

    python benchmarks/mesh_refine.py [--prompts "a green cube;..."] [--volume-steps 200]
        [--mesh-steps 100] [--mesh-resolution 48] [--seed 0] [--out results/mesh/refine.json]

Magic3D's and threestudio's second stage, measured on the benchmark's oracle: 3D Gaussians
fitted to ToyWorld's true renders (exact preset, ``--volume-steps``), exported (marching
cubes at their surface level, ``--mesh-resolution``), and the mesh's vertices and colours
fitted for ``--mesh-steps`` more steps to the same true renders through the soft rasteriser
(``ssd3d.scene.mesh``), with the same cameras, shading and views a step. Both stages are
scored by the benchmark's scorer (``ssd3d.bench.scoring``); beside them, each stage's wall
time.
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
from ssd3d.bench.oracle import TrueRenders  # noqa: E402
from ssd3d.bench.scoring import Scorer  # noqa: E402
from ssd3d.pipeline.loop import build_optimizer  # noqa: E402
from ssd3d.scene.mesh import MeshConfig, MeshScene  # noqa: E402
from ssd3d.toyworld.truth import DEFAULT_TRUTH_RENDERER, TRUTH_RENDERERS  # noqa: E402

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
        "default", "oracle", prompt, volume_steps + mesh_steps, seed
    )
    run.supervision = TrueRenders(prompt, run.cfg.background.colour, truth)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--truth",
        choices=TRUTH_RENDERERS,
        default=DEFAULT_TRUTH_RENDERER,
        help="how the true renders (supervision and scores) are drawn",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = MeshConfig(
        lr_vertices=args.lr_vertices, laplacian=args.laplacian, smoothing=args.smoothing
    )
    results = {}
    for prompt in args.prompts.split(";"):
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
    print(
        f"\n{args.volume_steps} oracle steps on 3D Gaussians, then {args.mesh_steps} on their mesh "
        f"(marching cubes at {args.mesh_resolution}^3; vertex rate {args.lr_vertices:g}, Laplacian {args.laplacian:g}, smoothing {args.smoothing:g}); "
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
