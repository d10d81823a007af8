"""Replace a generated section of a results page: ``<!-- BEGIN name -->`` … ``<!-- END name -->``.

    python scripts/sim_results.py outputs/simulate/metrics.json \
        | python scripts/results_section.py simulations

Each section lives in one page under docs/results/ (``SECTIONS``); ``--file`` writes one
into another page (a model card, say). Figures in the docs come from commands like this
one, never from hand edits.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DOCS = ROOT / "docs" / "results"
# Section name -> the page under docs/results/ that holds it.
SECTIONS = {
    "vocabulary": "vocabulary.md",
    "default-representation": "default-representation.md",
    "default-representation-levers": "default-representation.md",
    "bench-priors": "toyworld-priors.md",
    "bench": "toyworld-ablations.md",
    "smoothing": "exact-smoothing.md",
    "bench-smoothing": "exact-smoothing.md",
    "simulations": "simulations.md",
    "sd": "sd-gpu.md",
    "batch": "batch.md",
    "ssd-3d": "ssd-3d.md",
    "ssd-3d-toy": "ssd-3d.md",
    "ssd-3d-gaussians": "ssd-3d.md",
    "ssd-3d-gaussians-toy": "ssd-3d.md",
    "ssd-3d-three-interval-toy": "ssd-3d.md",
    "ssd-claims-3d": "ssd-3d.md",
    "judge-views": "judge-views.md",
    "representations": "representations.md",
    "representations-speed": "representations.md",
    "representations-toy": "representations.md",
    "representations-toy-600": "representations.md",
    "representations-toy-sparsity": "representations.md",
    "peers-exact": "peers.md",
    "peers-toy": "peers.md",
    "surface-level": "surface-level.md",
    "surface-level-voxel": "surface-level.md",
    "surface-level-dilation": "surface-level.md",
    "mesh-smoothing": "../mesh.md",
    "mesh-bench": "../mesh.md",
    "mesh-sigma": "../mesh.md",
    "mesh-stages": "../mesh.md",
    "mesh-steps": "../mesh.md",
    "mesh-seven": "../mesh.md",
    "mug-cavity": "vocabulary.md",
    "learned-exact": "vocabulary.md",
}


def section_file(name: str) -> Path:
    """The page that holds section ``name``."""
    if name not in SECTIONS:
        known = ", ".join(sorted(SECTIONS))
        raise SystemExit(f"error: unknown section '{name}' (known: {known}); or pass --file")
    return RESULTS_DOCS / SECTIONS[name]


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"error: no '{begin}' … '{end}' section")
    return pattern.sub(lambda _: f"{begin}\n{body.strip()}\n{end}", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="section name")
    parser.add_argument("--file", type=Path, help="the page to write (default: the section's)")
    args = parser.parse_args(argv)
    path = args.file or section_file(args.name)
    path.write_text(replace_section(path.read_text(), args.name, sys.stdin.read()))


if __name__ == "__main__":
    main()
