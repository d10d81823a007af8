"""Markdown table of Stable Diffusion step timings from results/sd/sd_*.json.

python scripts/sd_results.py | python scripts/results_section.py sd
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results" / "sd"


def row(result: dict) -> str:
    stages = result["stages"]
    minutes = result.get("minutes_per_10k_steps", "–")
    parts = ", ".join(
        f"{name} {value['median_ms']:.1f}" for name, value in stages.items() if name != "total"
    )
    return (
        f"| {result['step']} | {result['estimator']} | {result['batch']} "
        f"| {result['device_name']}, {result['dtype']} | {stages['total']['median_ms']:.1f} "
        f"| {parts} | {result['peak_memory_mb']:.0f} ({result['memory_kind']}) "
        f"| {minutes if isinstance(minutes, str) else f'{minutes:.1f}'} |"
    )


def main(paths: list[str]) -> None:
    files = [Path(p) for p in paths] or sorted(RESULTS.glob("sd_*.json"))
    results = [json.loads(f.read_text()) for f in files]
    # GPU first, then the full pipeline step before the distillation-only step.
    results.sort(key=lambda r: (r["device"] != "cuda", r["step"] != "pipeline", r["batch"]))
    models = sorted({r["model"] for r in results})
    print("### Stable Diffusion step time (`bash benchmarks/sd_gpu.sh`, `benchmarks/sd_step.py`)")
    print()
    print(
        "Median per step after warm-up; `pipeline` is a whole step of `ssd3d generate` with the "
        "preset (render 64×64, VAE encode at 512, one batched UNet call, estimator, backward "
        "through VAE and renderer, Adam); `distill` leaves out the 3D scene. "
        f"Models: {'; '.join(models)}."
    )
    print()
    print(
        "| step | estimator | views | device | ms/step | stages (ms) | peak MiB | "
        "min per 10k steps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(row(result))


if __name__ == "__main__":
    main(sys.argv[1:])
