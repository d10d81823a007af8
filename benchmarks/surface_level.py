"""Which density level is the 3D Gaussians' surface? A fixed one against the measured one.

    python benchmarks/surface_level.py [--runs "oracle,oracle 4096,exact sds 600,toy"]
        [--prompts "a green cube;..."] [--seed 0] [--dilation]

3D IoU and the exported mesh take the summed density's level set; the Gaussians used to
take a fixed 0.5 (half an opaque Gaussian's peak). Each run here trains one scene (the
benchmark's way: ``bench_config``, the preset's settings) and scores its 3D IoU, at the
best yaw, at a ladder of levels: the fixed 0.5, the best level of the ladder (which needs the
truth, so no run can use it) and the level the scene measures from its own renders
(``ssd3d.scene.surface.silhouette_level``: its level set's silhouettes against the rendered
ones, 26 views all round). The runs: the oracle (fitted to the true renders) at the
Gaussians' defaults and with 4096 Gaussians at the faster scale rate; SDS with the exact
prior at 600 steps, where the opacities thin out; the toy preset's default run (learned
prior, its opacity sparsity, 600 steps). The voxel runs (``--runs "voxel oracle,voxel sds,voxel
toy"``, the last `ssd3d generate`'s default run) score the voxel grid's fixed density 2
against the level it measures with ``export.density_threshold=null``. ``--dilation``
measures the oracle's level with and without the splats' antialiasing dilation at three
render sizes instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gaussians_solid  # noqa: E402  (the Gaussians' variants and the oracle's prior size)

from ssd3d.bench.metrics import iou_over_yaw  # noqa: E402
from ssd3d.scene.gaussians import SURFACE_LEVEL_CANDIDATES, SURFACE_LOW_PASS  # noqa: E402
from ssd3d.scene.splat import LOW_PASS  # noqa: E402
from ssd3d.toyworld.vocabulary import parse_prompt  # noqa: E402

FIXED_LEVEL = 0.5
# name -> (prior, estimator, steps, gaussians_solid variant or None for the voxel grid at its
# defaults); "toy" is `ssd3d generate representation=gaussians`: the toy preset's Gaussian
# section names SDS at guidance 7.5. The voxel runs are not in the default --runs: the grid
# keeps its fixed level (density 2), and they show what the measurement would pick for it.
DEFAULT_RUNS = "oracle,oracle 4096,exact sds 600,toy"
RUNS = {
    "voxel oracle": ("exact", "oracle", 200, None),
    "voxel sds": ("exact", "sds guidance_scale=7.5", 200, None),
    # `ssd3d generate` at its defaults: the toy preset on the voxel grid, its own estimator
    "voxel toy": ("toy", "ssd tau=200 match_norm=true coefficient=per_sample", 600, None),
    "oracle": ("exact", "oracle", 200, "default"),
    "oracle 4096": ("exact", "oracle", 200, "default + lr scale 0.01 + 4096 Gaussians"),
    "exact sds 600": ("exact", "sds guidance_scale=7.5", 600, "default"),
    "toy": ("toy", "sds guidance_scale=7.5", 600, "default"),
}
PROMPTS = "a green cube;a red sphere;a purple cylinder;a blue torus;a yellow wedge;a red arrow"


def train(run: str, prompt: str, seed: int):
    prior, estimator, steps, variant = RUNS[run]
    if variant is None:
        return gaussians_solid.train_gaussians(
            "default", estimator, prompt, steps, seed, prior=prior, representation="nerf"
        )
    return gaussians_solid.train_gaussians(variant, estimator, prompt, steps, seed, prior=prior)


@torch.no_grad()
def measured_level(scene) -> tuple[float, tuple[float, ...]]:
    """The level the scene measures (a scene at a fixed level, as the voxel grid's density 2,
    measures what ``export.density_threshold=null`` would) and the ladder it picks from."""
    return scene.measure_surface_level(), scene.surface_level_candidates


# --dilation: the level the oracle measures with the splats' antialiasing dilation kept (the
# training renders' 0.3 px^2) or left out (the measurement's), at three render sizes.
DILATION_PROMPTS = "a red sphere;a blue torus"
DILATION_SIZES = (32, 64, 128)


def dilation_rows(prompts: str, seed: int) -> list[str]:
    rows = []
    for prompt in prompts.split(";"):
        scene = train("oracle", prompt, seed)
        shape = parse_prompt(prompt).shape
        iou = {
            lv: iou_over_yaw(scene.density, shape, threshold=lv)[0]
            for lv in SURFACE_LEVEL_CANDIDATES
        }
        best = max(iou, key=iou.get)
        for name, low_pass in (("kept", LOW_PASS), ("left out", SURFACE_LOW_PASS)):
            cells = []
            for size in DILATION_SIZES:
                level = scene.measure_surface_level(size, low_pass)
                cells.append(f"{level:.3f} ({iou[level]:.3f})")
            rows.append(
                f"| {prompt} | {best:.3f} ({iou[best]:.3f}) | {name} ({low_pass:g} px²) | "
                + " | ".join(cells) + " |"
            )  # fmt: skip
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


@torch.no_grad()
def score(scene, prompt: str) -> dict[str, float]:
    shape = parse_prompt(prompt).shape
    measured, candidates = measured_level(scene)
    fixed = FIXED_LEVEL if scene.measures_surface_level else scene.surface_level
    ladder = sorted({*candidates, fixed})
    iou = {level: iou_over_yaw(scene.density, shape, threshold=level)[0] for level in ladder}
    best = max(iou, key=iou.get)
    return {
        f"IoU at {fixed:g}": iou[fixed],
        "best level": best,
        "IoU at best": iou[best],
        "measured level": measured,
        "IoU at measured": iou_over_yaw(scene.density, shape, threshold=measured)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS, help=f"of: {', '.join(RUNS)}")
    parser.add_argument("--prompts", default=PROMPTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dilation", action="store_true", help="the dilation check on the oracle instead"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.dilation:
        prompts = DILATION_PROMPTS if args.prompts == PROMPTS else args.prompts
        print(f"Oracle, seed {args.seed}: measured level (its 3D IoU) by render size.\n")
        sizes = " | ".join(f"{size} px" for size in DILATION_SIZES)
        print(f"| prompt | best level (3D IoU) | dilation | {sizes} |")
        print("|---|:-:|---|" + ":-:|" * len(DILATION_SIZES))
        print("\n".join(dilation_rows(prompts, args.seed)))
        return
    rows = []
    for run in args.runs.split(","):
        for prompt in args.prompts.split(";"):
            row = score(train(run, prompt, args.seed), prompt)
            rows.append((run, prompt, row))
            progress = ", ".join(f"{k} {v:.3f}" for k, v in row.items())
            print(f"{run} / {prompt}: {progress}", file=sys.stderr, flush=True)
    keys = list(rows[0][2])
    if any(list(row) != keys for _, _, row in rows):  # the fixed level names a column
        raise SystemExit("error: give runs of one representation at a time (--runs)")
    print(f"Seed {args.seed}; 3D IoU at the best yaw on the 64³ grid.\n")
    print("| run | prompt | " + " | ".join(keys) + " |")
    print("|---|---|" + ":-:|" * len(keys))
    for run, prompt, row in rows:
        print(f"| {run} | {prompt} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    for run in dict.fromkeys(r for r, _, _ in rows):
        mine = [row for r, _, row in rows if r == run]
        means = {k: sum(row[k] for row in mine) / len(mine) for k in keys if k.startswith("IoU")}
        print(f"| {run} | mean of {len(mine)} | " + " | ".join(
            f"{means[k]:.3f}" if k in means else "–" for k in keys
        ) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
