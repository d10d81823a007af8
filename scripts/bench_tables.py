"""Print the benchmark's markdown table(s) from results.json, for docs/results/.

    python scripts/bench_tables.py results/bench/exact     # one table, with its notes
    python scripts/bench_tables.py results/bench/exact results/bench/toy   # side by side
    python scripts/bench_tables.py results/bench/exact --by-step iou       # over the steps

Every figure comes from the results file, so no number in the docs is typed by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssd3d.bench import RESULTS_FILE, read_results
from ssd3d.bench.tables import (
    METRICS,
    by_step_markdown,
    markdown_table,
    per_prompt_markdown,
    side_by_side_markdown,
)
from ssd3d.errors import SSD3DError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="benchmark folders (or results.json)")
    parser.add_argument(
        "--names", help="comma-separated column names for side by side (default: the priors)"
    )
    parser.add_argument(
        "--by-step",
        metavar="METRIC",
        choices=[m.key for m in METRICS],
        help="instead: that metric per estimator at every checkpoint, then per prompt at the end (one folder)",
    )
    args = parser.parse_args(argv)
    try:
        paths = [d / RESULTS_FILE if d.is_dir() else d for d in args.dirs]
        datas = [read_results(p) for p in paths]
        if args.by_step:
            if len(datas) != 1:
                raise SSD3DError("--by-step reads one benchmark folder")
            print(by_step_markdown(datas[0], args.by_step))
            print(per_prompt_markdown(datas[0], args.by_step), end="")
            return 0
        if len(datas) == 1:
            print(markdown_table(datas[0]), end="")
            return 0
        names = args.names.split(",") if args.names else [d["config"]["prior"] for d in datas]
        if len(names) != len(datas) or len(set(names)) != len(names):
            raise SSD3DError("give one distinct name per folder with --names a,b")
        print(side_by_side_markdown(datas, names), end="")
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
