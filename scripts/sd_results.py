"""Markdown table of Stable Diffusion step timings from benchmarks/sd_step.py's JSON files.

    python scripts/sd_results.py | python scripts/results_section.py sd
    python scripts/sd_results.py results/sd_gpu/*.json --out docs/results/gpu.md

Without paths it reads results/sd/sd_*.json. A file holds one row (older runs) or
several under ``rows`` (eager, compiled and floor rows of one run). ``--out`` writes the
table to that file, under a title, instead of printing it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results" / "sd"


def rows_of(result: dict) -> list[dict]:
    """The file's rows; a file from before ``rows`` existed is one eager row."""
    if "rows" in result:
        return result["rows"]
    return [
        {
            "name": "eager",
            "stages": result["stages"],
            "peak_memory_mb": result["peak_memory_mb"],
            "memory_kind": result["memory_kind"],
            "minutes_per_10k_steps": result.get("minutes_per_10k_steps"),
        }
    ]


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def row(result: dict, entry: dict) -> str:
    stages = entry["stages"]
    parts = ", ".join(
        f"{name} {value['median_ms']:.1f}" for name, value in stages.items() if name != "total"
    )
    fraction = entry.get("floor_fraction")
    return (
        f"| {result['step']} | {result['estimator']} | {result['batch']} "
        f"| {result['device_name']}, {result['dtype']} | {entry['name']} "
        f"| {fmt(entry.get('first_step_s'), '.1f')} | {stages['total']['median_ms']:.1f} "
        f"| {parts} | {entry['peak_memory_mb']:.0f} ({entry['memory_kind']}) "
        f"| {fmt(entry.get('minutes_per_10k_steps'), '.1f')} "
        f"| {'–' if fraction is None else f'{fraction:.0%}'} |"
    )


def table(files: list[Path]) -> str:
    results = [json.loads(f.read_text()) for f in files]
    # GPU first, then the full pipeline step before the distillation-only step.
    results.sort(key=lambda r: (r["device"] != "cuda", r["step"] != "pipeline", r["batch"]))
    models = sorted({r["model"] for r in results})
    lines = [
        "### Stable Diffusion step time (`bash benchmarks/sd_gpu.sh`, `benchmarks/sd_step.py`)",
        "",
        "Median per step after warm-up; `pipeline` is a whole step of `ssd3d generate` with the "
        "preset (render 64×64, VAE encode at 512, 64 for the tiny pipeline, one batched UNet "
        "call, estimator, backward through VAE and renderer, Adam); `distill` leaves out the "
        "3D scene; a `floor` row "
        "times the VAE encode, its backward and the UNet call alone, and `of floor` is floor / "
        "step. `first s` is the first step's wall time (a compiled row's compile). "
        f"Models: {'; '.join(models)}.",
        "",
        "| step | estimator | views | device | row | first s | ms/step | stages (ms) | peak MiB "
        "| min per 10k steps | of floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [row(result, entry) for result in results for entry in rows_of(result)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", help="result JSON files (default: results/sd)")
    p.add_argument("--out", type=Path, default=None, help="write to this markdown file")
    args = p.parse_args(argv)
    files = [Path(f) for f in args.paths] or sorted(RESULTS.glob("sd_*.json"))
    text = table(files)
    if args.out is None:
        print(text, end="")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Stable Diffusion on a GPU: results\n\n"
        "Written by `python scripts/sd_results.py` from the JSON files of "
        "`bash benchmarks/sd_gpu.sh` (do not edit by hand; docs/gpu.md says how to run it).\n\n"
    )
    args.out.write_text(header + text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
