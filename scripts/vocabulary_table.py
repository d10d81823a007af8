"""The default `ssd3d generate` over ToyWorld's whole vocabulary, against the issue's goals,
as markdown for docs/results/vocabulary.md:

    python benchmarks/toyworld_bench.py --prior toy --estimators preset --prompts all \\
        --steps 600 --out results/bench/vocabulary
    python scripts/vocabulary_table.py results/bench/vocabulary \
        | python scripts/results_section.py vocabulary

``--compare FOLDER --compare-name TEXT`` adds a row per other run of the same grid (e.g. the
vocabulary without a setting the default now has) under the goals table.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from statistics import fmean

from ssd3d.bench import MULTI_FACE_SHAPES, RESULTS_FILE, read_results
from ssd3d.bench.oracle import ORACLE_LABEL, ORACLE_SPEC
from ssd3d.toyworld.vocabulary import COLOURS, SHAPES, parse_prompt

GOALS = {"iou": 0.6, "r_precision": 0.9}
# A turned object's IoU is taken at its best yaw; within this it faces the truth's way.
YAW_TOLERANCE_DEG = 10
COMPARED = ("iou", "r_precision", "multi_face", "colour_error", "psnr")


def final_metrics(data: dict, oracle: bool = False) -> dict[str, dict]:
    """prompt -> its run's last checkpoint, for the runs that finished: the estimator's, or
    with ``oracle`` the oracle row's (the scene fitted to the true renders)."""
    return {
        r["prompt"]: r["checkpoints"][-1]
        for r in data["runs"]
        if r["status"] == "ok" and (r["spec"] == ORACLE_SPEC) == oracle
    }


def mean_over(final: dict[str, dict], metric: str, prompts) -> float:
    """Mean of ``metric`` over ``prompts`` (NaN ones, e.g. multi-face of a sphere, left out)."""
    values = [final[p][metric] for p in prompts if p in final]
    values = [v for v in values if not math.isnan(v)]
    return fmean(values) if values else math.nan


def yaw_sentence(final: dict[str, dict], name: str) -> str:
    """Which asymmetric prompts came out turned: the best yaw, wrapped to (-180, 180]."""
    asymmetric = sorted(p for p in final if parse_prompt(p).shape in MULTI_FACE_SHAPES)
    turned = []
    for prompt in asymmetric:
        yaw = (final[prompt]["yaw_deg"] + 180) % 360 - 180
        if abs(yaw) > YAW_TOLERANCE_DEG:
            turned.append(f"{prompt} at {final[prompt]['yaw_deg']:g}°")
    return (
        f"{name}: the best yaw is within {YAW_TOLERANCE_DEG}° of the truth's for "
        f"{len(asymmetric) - len(turned)} of {len(asymmetric)} asymmetric prompts"
        + (f" (not: {', '.join(turned)})" if turned else "")
        + "."
    )


def judge_sentence(data: dict) -> str:
    """Which judge and rule scored R-precision and multi-face (older files predate rule 2)."""
    judge = data.get("judge") or {}
    if not judge.get("available"):
        return "R-precision and multi-face: not scored (no judge)."
    if judge.get("rule") is None:
        return (
            "R-precision and multi-face were scored by the first judge, multi-face with its "
            "first rule (plain accuracy against the unturned object's view labels, where a "
            "judge answering 'side' throughout scores 0.5; docs/results/judge-views.md): a "
            "rerun into a new folder rescores them."
        )
    return (
        f"R-precision and multi-face scored by judge {judge.get('weights')}, rule "
        f"{judge['rule']} (docs/results/judge-views.md)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--compare", type=Path, action="append", default=[])
    parser.add_argument("--compare-name", action="append", default=[])
    args = parser.parse_args(argv)
    if len(args.compare) != len(args.compare_name):
        parser.error("give one --compare-name per --compare")
    data = read_results(args.folder / RESULTS_FILE)
    cfg = data["config"]
    final = final_metrics(data)
    failed = [r["prompt"] for r in data["runs"] if r["status"] != "ok" and r["spec"] != ORACLE_SPEC]

    def mean(metric: str, prompts) -> float:
        return mean_over(final, metric, prompts)

    estimator = ", ".join(e["spec"] for e in cfg["estimators"] if e["spec"] != ORACLE_SPEC)
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
    print(f"\n{judge_sentence(data)}")
    if args.compare:
        print("\n| # | run | IoU | R-precision | multi-face | colour error | PSNR dB |")
        print("|:-:|---|:-:|:-:|:-:|:-:|:-:|")
        overrides = " ".join(cfg.get("overrides", [])) or "no overrides"
        named = [(f"this run ({overrides})", data)]
        named += [
            (name, read_results(folder / RESULTS_FILE))
            for folder, name in zip(args.compare, args.compare_name, strict=True)
        ]
        runs = [(name, final_metrics(d)) for name, d in named]
        # A folder that ran the oracle too gets its row: what the same scene reaches when
        # fitted to the true renders.
        oracles = [(f"{name}: {ORACLE_LABEL}", final_metrics(d, oracle=True)) for name, d in named]
        table = runs + [(n, m) for n, m in oracles if m]
        for number, (name, metrics) in enumerate(table, 1):
            cells = [f"{mean_over(metrics, m, metrics):.3f}" for m in COMPARED]
            print(f"| {number} | {name} | " + " | ".join(cells) + " |")
        print()
        for name, metrics in runs:
            print(f"- {yaw_sentence(metrics, name)}")
        print("\nMean IoU per shape, a column for each run of the table above (by its #):\n")
        print("| shape | " + " | ".join(str(i + 1) for i in range(len(table))) + " |")
        print("|---|" + ":-:|" * len(table))
        for shape in SHAPES:
            cells = []
            for _, metrics in table:
                prompts = [p for p in metrics if parse_prompt(p).shape == shape]
                cells.append(f"{mean_over(metrics, 'iou', prompts):.2f}")
            print(f"| {shape} | " + " | ".join(cells) + " |")

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
