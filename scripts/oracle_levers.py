"""One row per setting of a scene: the oracle's 3D IoU per prompt (mean over seeds), its mean
and its silhouette IoU, read from benchmark folders that ran the oracle, as markdown:

    python scripts/oracle_levers.py results/bench/exact-mesh-smoothing-5 \\
        results/bench/exact-oracle-mesh-smoothing-2 --names "λ 5,λ 2"
    python scripts/oracle_levers.py A B --names "a,b" --estimator preset   # an estimator's rows

The lever tables of docs/ (what a setting of the scene buys the fit to the true renders) come
from here, so no oracle number in them is typed by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import fmean

from ssd3d.bench import RESULTS_FILE, read_results
from ssd3d.bench.oracle import ORACLE_SPEC
from ssd3d.errors import SSD3DError


def finished_runs(data: dict, label: str | None = None) -> list[dict]:
    """The finished runs of the oracle, or of the estimator labelled ``label``, among the
    seeds the folder's plan names (a stopped grid can hold runs of seeds it dropped since)."""
    seeds = data.get("config", {}).get("seeds")
    return [
        r
        for r in data["runs"]
        if r["status"] == "ok"
        and (r["label"] == label if label else r["spec"] == ORACLE_SPEC)
        and (seeds is None or r["seed"] in seeds)
    ]


def per_prompt(runs: list[dict], metric: str) -> dict[str, float]:
    """prompt -> the mean of ``metric`` at the last checkpoint over its seeds."""
    prompts = dict.fromkeys(r["prompt"] for r in runs)
    return {
        p: fmean(r["checkpoints"][-1][metric] for r in runs if r["prompt"] == p) for p in prompts
    }


def lever_table(datas: list[dict], names: list[str], label: str | None = None) -> str:
    """The oracle of each folder as a row; the prompts of the first folder as columns."""
    rows = [(name, finished_runs(data, label)) for name, data in zip(names, datas, strict=True)]
    whose = f"the {label} runs'" if label else "the oracle's"
    for name, runs in rows:
        if not runs:
            raise SSD3DError(f"{name}: no finished {label or 'oracle'} run")
    prompts = list(per_prompt(rows[0][1], "iou"))
    seeds = sorted({r["seed"] for _, runs in rows for r in runs})
    lines = [
        "| setting | " + " | ".join(prompts) + " | mean 3D IoU | sil. IoU | seeds | train s/run |",
        "|---|" + ":-:|" * (len(prompts) + 4),
    ]
    for name, runs in rows:
        iou = per_prompt(runs, "iou")
        cells = [f"{iou[p]:.3f}" if p in iou else "–" for p in prompts]
        silhouette = fmean(r["checkpoints"][-1]["silhouette_iou"] for r in runs)
        n_seeds = len({r["seed"] for r in runs})
        seconds = fmean(r["train_seconds"] for r in runs)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {fmean(iou.values()):.3f} | "
            f"{silhouette:.3f} | {n_seeds} | {seconds:.0f} |"
        )
    lines.append("")
    lines.append(
        "3D IoU at the last checkpoint, mean over the seeds"
        + (f" ({', '.join(map(str, seeds))})" if len(seeds) > 1 else f" (seed {seeds[0]})")
        + f"; the mean is over the prompts; train s/run: wall seconds of {whose} steps."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="benchmark folders")
    parser.add_argument("--names", required=True, help="comma-separated row names, one per folder")
    parser.add_argument(
        "--estimator",
        default=None,
        help="the rows of the estimator with this label, not the oracle's",
    )
    args = parser.parse_args(argv)
    names = args.names.split(",")
    try:
        if len(names) != len(args.dirs):
            raise SSD3DError("give one name per folder with --names a,b")
        datas = [read_results(d / RESULTS_FILE) for d in args.dirs]
        print(lever_table(datas, names, args.estimator), end="")
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
