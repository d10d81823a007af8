"""The default `ssd3d generate` over ToyWorld's whole vocabulary, against the issue's goals,
as markdown for the README:

    python benchmarks/toyworld_bench.py --prior toy --estimators ssd --prompts all \\
        --steps 600 --out bench/vocabulary
    python scripts/vocabulary_readme.py bench/vocabulary | python scripts/readme_section.py vocabulary
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from statistics import fmean

from ssd3d.toyworld.bench import RESULTS_FILE, read_results
from ssd3d.toyworld.vocabulary import COLOURS, SHAPES, parse_prompt

GOALS = {"iou": 0.6, "r_precision": 0.9}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    data = read_results(args.folder / RESULTS_FILE)
    cfg = data["config"]
    final = {r["prompt"]: r["checkpoints"][-1] for r in data["runs"] if r["status"] == "ok"}
    failed = [r["prompt"] for r in data["runs"] if r["status"] != "ok"]

    def mean(metric: str, prompts) -> float:
        values = [final[p][metric] for p in prompts if p in final]
        values = [v for v in values if not math.isnan(v)]
        return fmean(values) if values else math.nan

    estimator = ", ".join(e["spec"] for e in cfg["estimators"])
    print(
        f"### The default run over the whole vocabulary: {cfg['prior']} prior, `{estimator}`, "
        f"{cfg['steps']} steps, seed {cfg['seeds'][0]}\n"
    )
    print(
        f"{len(final)} of {len(cfg['prompts'])} prompts scored"
        + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else "")
        + "; goals from the ToyWorld issue in brackets.\n"
    )
    print("| metric | mean over prompts | goal | met |")
    print("|---|:-:|:-:|:-:|")
    for metric, label in (("iou", "IoU"), ("r_precision", "R-precision")):
        value = mean(metric, final)
        print(
            f"| {label} | {value:.3f} | ≥ {GOALS[metric]} | {'yes' if value >= GOALS[metric] else 'no'} |"
        )
    for metric, label in (
        ("multi_face", "multi-face (asymmetric shapes)"),
        ("colour_error", "colour error"),
        ("psnr", "PSNR dB"),
    ):
        print(f"| {label} | {mean(metric, final):.3f} | – | – |")

    print("\nIoU / R-precision per prompt (rows: shapes, columns: colours):\n")
    print("| shape | " + " | ".join(COLOURS) + " | mean IoU |")
    print("|---|" + ":-:|" * (len(COLOURS) + 1))
    for shape in SHAPES:
        prompts = [p for p in final if parse_prompt(p).shape == shape]
        cells = []
        for colour in COLOURS:
            match = [p for p in prompts if parse_prompt(p).colour == colour]
            m = final[match[0]] if match else None
            cells.append(f"{m['iou']:.2f} / {m['r_precision']:.2f}" if m else "–")
        print(f"| {shape} | " + " | ".join(cells) + f" | {mean('iou', prompts):.2f} |")


if __name__ == "__main__":
    main()
