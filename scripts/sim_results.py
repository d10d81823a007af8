"""Print the markdown results section of a simulation run from its metrics.json.

    ssd3d simulate --out outputs/simulate
    python scripts/sim_results.py outputs/simulate/metrics.json

A table per scenario, then one line per paper claim: holds / does not hold, with the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssd3d.sim.report import markdown_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by `ssd3d simulate`")
    args = parser.parse_args(argv)
    if not args.metrics.is_file():
        print(f"error: no such file: {args.metrics}", file=sys.stderr)
        return 2
    try:
        metrics = json.loads(args.metrics.read_text())
        text = markdown_report(metrics)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        print(
            f"error: {args.metrics} is not a metrics.json of ssd3d simulate ({e})", file=sys.stderr
        )
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
