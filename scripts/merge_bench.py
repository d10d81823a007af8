"""Merge benchmark folders that ran parts of one grid (split by --estimators or --prompts,
on several processes or machines) into one results.json that `ssd3d bench` can continue.

    python scripts/merge_bench.py part-a part-b part-c --out bench/toy
    ssd3d bench --prior toy --seeds 3 --out bench/toy     # finds every run done: table + plot

The parts must agree on what makes their numbers comparable (prior, model, overrides,
evaluation settings); a run present in several parts is kept once (the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssd3d.errors import SSD3DError
from ssd3d.toyworld.bench import RESULTS_FILE, read_results, run_key, write_results

MUST_AGREE = ("prior", "model", "overrides", "eval")


def merge(datas: list[dict]) -> dict:
    base = datas[0]
    merged = {**base, "runs": []}
    seen = set()
    for data in datas:
        for key in MUST_AGREE:
            if data["config"].get(key) != base["config"].get(key):
                raise SSD3DError(f"the parts differ in {key}: cannot merge them")
        for run in data["runs"]:
            if run_key(run) not in seen:
                seen.add(run_key(run))
                merged["runs"].append(run)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", type=Path, help="benchmark folders")
    parser.add_argument("--out", type=Path, required=True, help="folder of the merged results")
    args = parser.parse_args(argv)
    try:
        merged = merge([read_results(p / RESULTS_FILE) for p in args.parts])
        target = args.out / RESULTS_FILE
        if target.exists():
            raise SSD3DError(f"{target} exists; merge into a new folder")
        args.out.mkdir(parents=True, exist_ok=True)
        write_results(target, merged)
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {target} ({len(merged['runs'])} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
