"""A benchmark folder's report.html: the metric tables, the metric-against-steps figure and a
gallery, one row per prompt and seed and one column per estimator, to compare by eye."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ssd3d.report.page import Cell, Table, bullets, image, links, render_page, section, table
from ssd3d.toyworld.bench import RESULTS_FILE, selected_runs
from ssd3d.toyworld.bench_report import (
    PLOT_FILE,
    TABLE_FILE,
    labels_in_order,
    notes,
    per_prompt_table,
    summary_table,
)


def gallery_table(out_dir: Path, data: dict) -> Table:
    """Each run's orbit views (``run["image"]``, written by the benchmark) with its final IoU."""
    cfg = data["config"]
    labels = labels_in_order(data)
    runs = {(r["label"], r["prompt"], r["seed"]): r for r in selected_runs(data)}
    rows = []
    for prompt in cfg["prompts"]:
        for seed in cfg["seeds"]:
            row = [Cell(f"{prompt}, seed {seed}")]
            for label in labels:
                run = runs.get((label, prompt, seed))
                row.append(_gallery_cell(out_dir, run))
            rows.append(row)
    return Table("", ["prompt", *labels], rows)


def _gallery_cell(out_dir: Path, run: dict | None) -> Cell:
    if run is None:
        return Cell("not run yet")
    if run["status"] != "ok":
        return Cell(f"failed at step {run['steps_done']} (see the notes)")
    iou = run["checkpoints"][-1].get("iou", math.nan)
    text = f"IoU {iou:.3f}"
    src = run.get("image")
    if not src or not (Path(out_dir) / src).is_file():
        return Cell(f"{text} (no image)")
    return Cell(text, src=src)


def write_bench_report(out_dir: Path, data: dict) -> Path:
    """Write ``out_dir/report.html`` from the results (``results.json``'s dict)."""
    out_dir = Path(out_dir)
    cfg = data["config"]
    machine = data.get("machine", {})
    judge = data.get("judge", {})
    facts = [
        ("prior", cfg["prior"] + (f" ({cfg['model']})" if cfg.get("model") else "")),
        ("steps per run", str(cfg["steps"])),
        ("prompts", "; ".join(cfg["prompts"])),
        ("seeds", ", ".join(map(str, cfg["seeds"]))),
        ("estimators", str(len(cfg["estimators"]))),
        ("overrides", " ".join(cfg["overrides"]) or "none"),
        ("judge", "yes" if judge.get("available") else "none"),
    ]
    if "last_wall_seconds" in data:
        facts.append(("wall time", f"{data['last_wall_seconds'] / 60:.1f} min (last invocation)"))
    if machine:
        facts.append(("machine", f"{machine.get('device', 'cpu')}, torch {machine.get('torch')}"))
    summary = summary_table(data)
    plain_notes = [note.replace("`", "") for note in notes(data)]
    sections = [
        # The notes are markdown (table.md); their `code` marks would show as backticks.
        section("Results", table(replace(summary, title="")), bullets(plain_notes)),
        section("Per prompt", table(per_prompt_table(data, "iou"))),
    ]
    if (out_dir / PLOT_FILE).is_file():
        plot = image(PLOT_FILE, "every metric against steps", "mean over prompts × seeds")
        sections.append(section("Metrics against steps", plot))
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
            table(gallery_table(out_dir, data), gallery=True),
        )
    )
    sections.append(section("Files", links(out_dir, [RESULTS_FILE, TABLE_FILE, PLOT_FILE])))
    return render_page(
        out_dir,
        title=summary.title,
        subtitle=f"ssd3d bench · {out_dir.resolve().name}",
        facts=facts,
        sections=sections,
    )


__all__ = ["gallery_table", "write_bench_report"]
