"""Print the benchmark's markdown table(s) from results.json, for docs/results/.

    python scripts/bench_tables.py results/bench/exact     # one table, with its notes
    python scripts/bench_tables.py results/bench/exact results/bench/toy   # side by side

Every figure comes from the results file, so no number in the docs is typed by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssd3d.bench import RESULTS_FILE, read_results
from ssd3d.bench.tables import markdown_table, side_by_side_markdown
from ssd3d.errors import SSD3DError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="benchmark folders (or results.json)")
    parser.add_argument(
        "--names", help="comma-separated column names for side by side (default: the priors)"
    )
    args = parser.parse_args(argv)
    try:
        paths = [d / RESULTS_FILE if d.is_dir() else d for d in args.dirs]
        datas = [read_results(p) for p in paths]
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
