"""A benchmark folder's report.html: the metric tables, the metric-against-steps figure and a
gallery, one row per prompt and seed and one column per estimator, to compare by eye.

The benchmark computes every table (``ssd3d.bench.tables``) and hands them here: the page
knows how to draw a benchmark, not how to read one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ssd3d.report.page import Table, bullets, image, links, render_page, section, table


def write_bench_report(
    out_dir: Path,
    *,
    title: str,
    facts: list[tuple[str, str]],
    summary: Table,
    notes: list[str],
    per_prompt: Table,
    gallery: Table,
    normalised: Table | None = None,
    plot: str,
    files: list[str],
) -> Path:
    """Write ``out_dir/report.html``: ``plot`` and ``files`` are names inside ``out_dir``."""
    out_dir = Path(out_dir)
    sections = [
        section("Results", table(replace(summary, title="")), bullets(notes)),
    ]
    if normalised is not None:
        sections.append(section("Toward the oracle", table(normalised)))
    sections.append(section("Per prompt", table(per_prompt)))
    if (out_dir / plot).is_file():
        figure = image(plot, "every metric against steps", "mean over prompts × seeds")
        sections.append(section("Metrics against steps", figure))
    sections.append(
        section(
            "Gallery",
            bullets(
                [
                    "The end of every run from the same orbit (front, side, back, side), normal "
                    "maps below: one column per estimator, one row per prompt and seed, so "
                    "estimators are compared on the same prompt and seed."
                ]
            ),
            table(gallery, gallery=True),
        )
    )
    sections.append(section("Files", links(out_dir, files)))
    return render_page(
        out_dir,
        title=title,
        subtitle=f"ssd3d bench · {out_dir.resolve().name}",
        facts=facts,
        sections=sections,
    )


__all__ = ["write_bench_report"]
