"""A run folder's report.html: what was asked, what came out, and how the run went.

Reads only the folder's files through ``RunDir`` (config, log, summary and the exports), so
it can be rewritten at any time: at the end of a run, by ``ssd3d export``, by ``ssd3d view``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ssd3d.estimators import build_estimator, describe
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.run_dir import (
    CONFIG_FILE,
    EXPORT_FILES,
    LOG_FILE,
    SUMMARY_FILE,
    TRAINING_PLOT,
    RunDir,
)
from ssd3d.pipeline.variational import describe_particle_score
from ssd3d.report.page import (
    Cell,
    Table,
    bullets,
    image,
    links,
    pre,
    render_page,
    section,
    table,
    video,
    viewer,
)
from ssd3d.scene import describe_scene

# What a run may leave behind, in the order the page lists them.
RUN_FILES = [*EXPORT_FILES, CONFIG_FILE, LOG_FILE, SUMMARY_FILE]


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` steps: the loss is one noisy sample per step."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training(log: list[dict], path: Path) -> Path:
    """Loss, gradient norm, t and milliseconds per stage against steps: one PNG, 4 panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ssd3d.atomic import atomic_path

    steps = [r["step"] for r in log]
    window = max(1, len(log) // 50)
    fig = Figure(figsize=(11, 6.4), dpi=100)
    FigureCanvasAgg(fig)
    (loss_ax, grad_ax), (t_ax, time_ax) = fig.subplots(2, 2)
    for ax, key, title in [
        (loss_ax, "loss", "surrogate loss"),
        (grad_ax, "grad_norm", "gradient norm (per view, mean)"),
    ]:
        values = [r[key] for r in log]
        ax.plot(steps, values, lw=0.6, alpha=0.35, color="tab:blue")
        if window > 1:
            ax.plot(steps, _moving_average(values, window), lw=1.5, color="tab:blue")
        ax.set_title(title + (f", {window}-step mean" if window > 1 else ""))
    if all(r["grad_norm"] > 0 for r in log):
        grad_ax.set_yscale("log")
    t_steps = [r["step"] for r in log for _ in r["t"]]
    t_ax.scatter(t_steps, [t for r in log for t in r["t"]], s=3, alpha=0.5, color="tab:orange")
    t_ax.set_title("diffusion timestep t of each view")
    stages = list(log[0]["timings_ms"])
    stacked = [_moving_average([r["timings_ms"].get(s, 0.0) for r in log], window) for s in stages]
    time_ax.stackplot(steps, stacked, labels=stages, alpha=0.85)
    time_ax.set_title("milliseconds per step by stage")
    time_ax.legend(loc="upper right", fontsize=8, ncol=len(stages))
    for ax in (loss_ax, grad_ax, t_ax, time_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def timing_table(log: list[dict]) -> Table:
    """Mean milliseconds per step by stage, and each stage's share."""
    stages = list(log[0]["timings_ms"])
    means = {s: math.fsum(r["timings_ms"].get(s, 0.0) for r in log) / len(log) for s in stages}
    total = math.fsum(means.values())
    rows = [[Cell(s), Cell(f"{ms:.1f}"), Cell(f"{ms / total:.0%}")] for s, ms in means.items()]
    rows.append([Cell("total", italic=True), Cell(f"{total:.1f}"), Cell("100%")])
    return Table(f"Time per step, mean over {len(log)} steps", ["stage", "ms", "share"], rows)


def _facts(cfg: GenerateConfig, log: list[dict], summary: dict) -> list[tuple[str, str]]:
    done = log[-1]["step"] if log else 0
    facts = [
        ("prompt", cfg.prompt),
        ("prior", cfg.prior + (f" ({cfg.model})" if cfg.model else "")),
        ("estimator", describe(build_estimator(cfg.estimator))),
        ("steps", f"{done} of {cfg.steps}" if done != cfg.steps else str(cfg.steps)),
        ("seed", str(cfg.seed)),
        ("views per step", f"{cfg.views_per_step} at {cfg.camera.width}×{cfg.camera.height} px"),
        (
            "timesteps",
            f"{cfg.timesteps.schedule}, t in [{cfg.timesteps.t_min}, {cfg.timesteps.t_max}]",
        ),
    ]
    particle = describe_particle_score(cfg)
    if particle is not None:
        facts.insert(3, ("particle score", particle))
    facts.append(("scene", describe_scene(cfg)))
    calls = [r["prior_calls"] for r in log if "prior_calls" in r]  # older logs have none
    if calls:
        facts.append(("prior calls per step", f"{math.fsum(calls) / len(calls):.2f} (mean)"))
    facts.append(("device", cfg.device))
    if "train_seconds" in summary:
        facts.append(("training time", f"{summary['train_seconds']:.1f} s"))
    return facts


def write_run_report(folder: RunDir | str | os.PathLike, summary: dict | None = None) -> Path:
    """Write the run's report.html (and training.png) from the folder's files.

    ``summary``: the run's summary when the caller writes summary.json after the report
    (it marks the run complete, so it comes last); else the folder's, if any.
    """
    run = folder if isinstance(folder, RunDir) else RunDir(folder)
    run_dir = run.path
    cfg = run.read_config()
    log = run.read_log()
    if summary is None:
        summary = run.read_summary() or {}
    has = {name for name in RUN_FILES if (run_dir / name).is_file()}

    sections = []
    shown = []
    if "mesh.glb" in has:
        shown.append(viewer(run_dir / "mesh.glb", f"the mesh of {cfg.prompt!r}"))
    if "turntable.mp4" in has:
        shown.append(video("turntable.mp4", "turntable.mp4: the radiance field, rendered"))
    if "image.png" in has:
        shown.append(image("image.png", cfg.prompt, "the optimised image"))
    if shown:
        sections.append(section("Result", *shown, side_by_side=True))
    if "contact_sheet.png" in has:
        caption = "orbit views with their normal maps below"
        sections.append(section("Contact sheet", image("contact_sheet.png", "views", caption)))
    if summary.get("notes"):
        sections.insert(0, section("Notes", bullets(list(summary["notes"]))))
    elif not {"mesh.glb", "image.png"} & has:
        note = "No exports yet: the run has not finished (ssd3d export DIR writes them)."
        sections.insert(0, section("Result", bullets([note])))
    if log:
        plot = plot_training(log, run_dir / TRAINING_PLOT).name
        sections.append(
            section(
                "Training",
                image(plot, "loss, gradient norm, t and time per step against steps"),
                table(timing_table(log)),
                side_by_side=True,
            )
        )
    config_text = run.config_path.read_text()
    sections.append(section("Configuration", pre(config_text, "config.yaml (resolved)")))
    sections.append(section("Files", links(run_dir, RUN_FILES)))
    subtitle = f"ssd3d run · {cfg.prior} prior · {cfg.estimator} · {run_dir.name}"
    return render_page(
        run_dir,
        title=cfg.prompt,
        subtitle=subtitle,
        facts=_facts(cfg, log, summary),
        sections=sections,
    )


__all__ = ["plot_training", "timing_table", "write_run_report"]
