"""Replace a generated section of README.md: ``<!-- BEGIN name -->`` … ``<!-- END name -->``.

    python scripts/sim_results.py outputs/simulate/metrics.json \
        | python scripts/readme_section.py simulations

Figures in README.md come from commands like this one, never from hand edits.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"error: README.md has no '{begin}' … '{end}' section")
    return pattern.sub(lambda _: f"{begin}\n{body.strip()}\n{end}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="section name")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    args.readme.write_text(replace_section(args.readme.read_text(), args.name, sys.stdin.read()))


if __name__ == "__main__":
    main()
