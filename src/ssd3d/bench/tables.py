"""The benchmark's report: mean ± std tables (markdown, and HTML in report.html) and the
metric-against-steps figure.

Everything here reads the ``results.json`` dict alone, so a table in the docs is printed
from the file (``scripts/``), never typed by hand. ``write_report`` hands the tables and the
gallery to ``ssd3d.report.bench_page``, which draws them.

Longer than the project's 400-line mark: every table, the notes that say how to read them,
the figure and the gallery read the same results dict and share its label and metric order;
split, they would pass it around in pieces.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssd3d.bench.oracle import ORACLE_SPEC
from ssd3d.bench.results import RESULTS_FILE, entry_canonical, read_results, selected_runs
from ssd3d.bench.scoring import MULTI_FACE_SHAPES
from ssd3d.estimators import build_estimator, describe
from ssd3d.report.page import Cell, Table
from ssd3d.toyworld.vocabulary import parse_prompt

TABLE_FILE = "table.md"
PLOT_FILE = "metrics_vs_steps.png"
NO_JUDGE = "no judge"
BLOB_LABEL = "initial blob"


@dataclass(frozen=True)
class Metric:
    key: str  # in each checkpoint's dict
    title: str  # column / panel title
    higher_is_better: bool
    digits: int  # decimals in tables
    judge: bool = False  # needs the judge


METRICS = (
    Metric("iou", "IoU", True, 3),
    Metric("silhouette_iou", "sil. IoU", True, 3),
    Metric("depth_error", "depth err", False, 3),
    Metric("chamfer", "Chamfer", False, 3),
    Metric("normal_consistency", "normal cons.", True, 2),
    Metric("colour_error", "colour err", False, 3),
    Metric("psnr", "PSNR dB", True, 2),
    Metric("psnr_yaw0", "PSNR@0° dB", True, 2),
    Metric("r_precision", "R-prec", True, 2, judge=True),
    Metric("multi_face", "multi-face", True, 2, judge=True),
)
# The metrics of the side-by-side table (two priors): the ones a reader compares first.
SIDE_BY_SIDE = ("iou", "chamfer", "colour_error", "psnr", "r_precision", "multi_face")


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (n - 1) of the finite-or-inf values; NaNs dropped."""

    mean: float
    std: float  # NaN when n < 2
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> Summary:
        kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not kept:
            return Summary(math.nan, math.nan, 0)
        if any(math.isinf(v) for v in kept):
            return Summary(math.fsum(kept) / len(kept), math.nan, len(kept))
        mean = math.fsum(kept) / len(kept)
        std = statistics.stdev(kept) if len(kept) > 1 else math.nan
        return Summary(mean, std, len(kept))

    def text(self, digits: int) -> str:
        if self.n == 0:
            return "–"
        mean = f"{self.mean:.{digits}f}"
        return mean if math.isnan(self.std) else f"{mean} ± {self.std:.{digits}f}"


def checkpoint_at(run: dict, step: int) -> dict | None:
    return next((c for c in run["checkpoints"] if c["step"] == step), None)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def labels_in_order(data: dict) -> list[str]:
    return [e["label"] for e in data["config"]["estimators"]]


def aggregate(data: dict, step: int | None = None) -> dict[str, dict[str, Summary]]:
    """label -> metric key -> Summary over the label's runs at ``step`` (default: the end).

    Runs that stopped before ``step`` (failed) contribute nothing.
    """
    step = data["config"]["steps"] if step is None else step
    runs = selected_runs(data)
    out = {}
    for label in labels_in_order(data):
        points = [checkpoint_at(r, step) for r in runs if r["label"] == label]
        points = [p for p in points if p is not None]
        out[label] = {m.key: Summary.of([p.get(m.key, math.nan) for p in points]) for m in METRICS}
    return out


def run_counts(data: dict) -> dict[str, tuple[int, int]]:
    """label -> (runs finished, runs in the file's plan so far)."""
    runs = selected_runs(data)
    return {
        label: (
            sum(1 for r in runs if r["label"] == label and r["status"] == "ok"),
            sum(1 for r in runs if r["label"] == label),
        )
        for label in labels_in_order(data)
    }


def _best(values: dict[str, Summary], metric: Metric) -> str | None:
    """The best mean's text (ties share it), or None if no label has a finite mean."""
    finite = [s.mean for s in values.values() if s.n and math.isfinite(s.mean)]
    if not finite:
        return None
    best = max(finite) if metric.higher_is_better else min(finite)
    return f"{best:.{metric.digits}f}"


def _judge_ok(data: dict) -> bool:
    return bool(data.get("judge", {}).get("available"))


def summary_table(data: dict, title: str | None = None) -> Table:
    """Mean ± std per estimator and metric at the end, best in bold; train time, runs ok."""
    cfg = data["config"]
    summaries = aggregate(data)
    counts = run_counts(data)
    seconds = _train_seconds(data)
    calls = prior_calls(data)
    judge_ok = _judge_ok(data)
    head = ["estimator"]
    head += [f"{m.title} {'↑' if m.higher_is_better else '↓'}" for m in METRICS]
    head += ["prior calls/step", "train s/run", "runs ok"]
    if title is None:
        title = (
            f"ToyWorld benchmark: {cfg['prior']} prior, {cfg['steps']} steps, "
            f"{_count(len(cfg['prompts']), 'prompt')} × {_count(len(cfg['seeds']), 'seed')}"
        )
    best = {m.key: _best({k: v[m.key] for k, v in summaries.items()}, m) for m in METRICS}
    blob = blob_summary(data)
    rows = [
        [Cell(BLOB_LABEL, italic=True)]
        + [
            Cell(NO_JUDGE) if m.judge and not judge_ok else Cell(blob[m.key].text(m.digits))
            for m in METRICS
        ]
        + [Cell("–"), Cell("–"), Cell("–")]
    ]
    for label in labels_in_order(data):
        cells = [Cell(label)]
        for m in METRICS:
            s = summaries[label][m.key]
            if m.judge and not judge_ok:
                cells.append(Cell(NO_JUDGE))
                continue
            is_best = bool(s.n) and best[m.key] == f"{s.mean:.{m.digits}f}"
            cells.append(Cell(s.text(m.digits), bold=is_best))
        cells.append(Cell(calls[label].text(1) if calls[label].n else "–"))
        cells.append(Cell(seconds[label].text(1) if seconds[label].n else "–"))
        ok, n = counts[label]
        cells.append(Cell(f"{ok}/{n}"))
        rows.append(cells)
    return Table(title, head, rows)


def prior_calls(data: dict) -> dict[str, Summary]:
    """label -> mean network evaluations of the batch per step over its runs (what the
    estimator costs next to what it scores; results written before the count have none)."""
    runs = selected_runs(data)
    return {
        label: Summary.of(
            [
                r["prior_calls_per_step"]
                for r in runs
                if r["label"] == label and r.get("prior_calls_per_step") is not None
            ]
        )
        for label in labels_in_order(data)
    }


def _train_seconds(data: dict) -> dict[str, Summary]:
    runs = selected_runs(data)
    return {
        label: Summary.of([r["train_seconds"] for r in runs if r["label"] == label])
        for label in labels_in_order(data)
    }


def blob_summary(data: dict) -> dict[str, Summary]:
    """metric key -> Summary of the initial scene (step 0) over the plan's prompts and seeds:
    the floor every row starts from (one blob per prompt: its runs share step 0)."""
    firsts = {}
    for run in selected_runs(data):
        first = checkpoint_at(run, 0)
        if first is not None:
            firsts[(run["prompt"], run["seed"])] = first
    return {m.key: Summary.of([c.get(m.key, math.nan) for c in firsts.values()]) for m in METRICS}


def gap_closed(estimator: float, blob: float, oracle: float) -> float:
    """(estimator - floor) / (oracle - floor): 0 at the initial blob, 1 at the oracle (for a
    lower-is-better metric too, the ratio has the same sign); NaN without a gap."""
    gap = oracle - blob
    if not (math.isfinite(gap) and math.isfinite(estimator)) or abs(gap) < 1e-12:
        return math.nan
    return (estimator - blob) / gap


def normalised_table(data: dict) -> Table | None:
    """Per estimator and metric, the share of the reachable gap it closes: its mean against
    the initial blob's (0) and the oracle's (1). None without an oracle row."""
    oracle = next(
        (e["label"] for e in data["config"]["estimators"] if e["spec"] == ORACLE_SPEC), None
    )
    if oracle is None:
        return None
    summaries, blob, judge_ok = aggregate(data), blob_summary(data), _judge_ok(data)
    metrics = [m for m in METRICS if judge_ok or not m.judge]
    rows = []
    for label in labels_in_order(data):
        if label == oracle:
            continue
        cells = [Cell(label)]
        for m in metrics:
            share = gap_closed(
                summaries[label][m.key].mean, blob[m.key].mean, summaries[oracle][m.key].mean
            )
            cells.append(Cell("–" if math.isnan(share) else f"{share:.2f}"))
        rows.append(cells)
    head = ["estimator", *(m.title for m in metrics)]
    title = (
        "Share of the gap from the initial blob (0) to the oracle (1) that each estimator closes"
    )
    return Table(title, head, rows)


def markdown_table(data: dict, title: str | None = None) -> str:
    """The benchmark's table with notes: mean ± std per estimator and metric, best in bold;
    the initial blob's row, and the gap each estimator closes toward the oracle."""
    lines = summary_table(data, title).markdown_lines("###")
    lines += ["", *(f"- {note}" for note in notes(data))]
    normalised = normalised_table(data)
    if normalised is not None:
        lines += ["", *normalised.markdown_lines("####")]
    lines += ["", per_prompt_markdown(data, "iou")]
    return "\n".join(lines)


def per_prompt_table(data: dict, key: str = "iou") -> Table:
    """One metric per estimator and prompt (mean over seeds) at the end, with the initial
    blob's row: the spread over prompts in the main table is mostly prompt difficulty, and
    estimators are compared within a column."""
    cfg = data["config"]
    metric = next(m for m in METRICS if m.key == key)
    prompts, step = cfg["prompts"], cfg["steps"]
    runs = selected_runs(data)
    rows: dict[str, dict[str, Summary]] = {}
    blob = {}
    for prompt in prompts:
        starts = [checkpoint_at(r, 0) for r in runs if r["prompt"] == prompt]
        blob[prompt] = Summary.of([c.get(key, math.nan) for c in starts if c][:1])
    for label in labels_in_order(data):
        rows[label] = {}
        for prompt in prompts:
            points = [
                checkpoint_at(r, step)
                for r in runs
                if r["label"] == label and r["prompt"] == prompt
            ]
            rows[label][prompt] = Summary.of([p.get(key, math.nan) for p in points if p])
    arrow = "↑" if metric.higher_is_better else "↓"
    title = f"{metric.title} {arrow} per prompt at step {step} (mean over seeds; best in bold)"
    cells = [
        [Cell("initial blob", italic=True)] + [Cell(blob[p].text(metric.digits)) for p in prompts]
    ]
    best = {p: _best({k: v[p] for k, v in rows.items()}, metric) for p in prompts}
    for label, row in rows.items():
        cells.append(
            [Cell(label)]
            + [
                Cell(
                    row[p].text(metric.digits),
                    bold=bool(row[p].n) and best[p] == f"{row[p].mean:.{metric.digits}f}",
                )
                for p in prompts
            ]
        )
    return Table(title, ["estimator", *prompts], cells)


def per_prompt_markdown(data: dict, key: str = "iou") -> str:
    return "\n".join(per_prompt_table(data, key).markdown_lines("####")) + "\n"


def by_step_table(data: dict, key: str = "iou") -> Table:
    """One metric per estimator at every scored checkpoint (mean over prompts × seeds), so a
    reader sees whether more steps would have helped: a shape that forms and then drifts
    peaks before the end."""
    metric = next(m for m in METRICS if m.key == key)
    steps = data["config"]["checkpoints"]
    series = curves(data, key)
    cells = []
    for label, (xs, ys) in series.items():
        at = dict(zip(xs, ys, strict=True))
        peak = (
            max(at.values(), default=math.nan)
            if metric.higher_is_better
            else min(at.values(), default=math.nan)
        )
        cells.append(
            [Cell(label)]
            + [
                Cell(f"{at[s]:.{metric.digits}f}", bold=at[s] == peak) if s in at else Cell("–")
                for s in steps
            ]
        )
    arrow = "↑" if metric.higher_is_better else "↓"
    title = f"{metric.title} {arrow} at each checkpoint (mean over prompts × seeds; each row's best in bold)"
    return Table(title, ["estimator", *[f"step {s}" for s in steps]], cells)


def by_step_markdown(data: dict, key: str = "iou") -> str:
    return "\n".join(by_step_table(data, key).markdown_lines("####")) + "\n"


def notes(data: dict) -> list[str]:
    """What a reader needs to read the table: settings, alignments, caveats, failures."""
    cfg, ev = data["config"], data["config"]["eval"]
    threshold = data.get("threshold", ev.get("threshold"))
    if threshold == "measured":
        level = (
            "the level each scene measures from its renders (its level set's silhouettes "
            "match the rendered ones, docs/results/surface-level.md)"
        )
    else:
        level = f"{threshold:g}" if threshold is not None else "the scene's surface level"
    out = [
        f"Mean ± sample std over prompts × seeds at step {cfg['steps']} (no ± with one run); "
        "best mean per column in bold.",
        f"Prompts: {'; '.join(cfg['prompts'])}. Seeds: {', '.join(map(str, cfg['seeds']))}. "
        f"Prior: {cfg['prior']}"
        + (f" ({cfg['model']})" if cfg.get("model") else "")
        + (f". Overrides: {' '.join(cfg['overrides'])}" if cfg["overrides"] else "")
        + ".",
        f"IoU: occupancy density > {level} on a {ev['iou_resolution']}³ grid, "
        f"maximised over {ev['n_yaw']} yaws about the up axis. Chamfer (scene units, "
        f"the cube is [-1, 1]³): marching cubes at the same level "
        f"({ev['mesh_resolution']}³), {ev['n_surface']} samples per surface, truth at the "
        "best yaw; inf = empty field; normal consistency: mean dot product of the mesh's and "
        "the true surface's normals at nearest points (1 = same orientation everywhere). "
        "Silhouette IoU (opacity > 0.5) and depth error (mean |E[t | hit]| difference where "
        "both are opaque) over the orbit views below, truth at the best yaw: they need no "
        "density level. Colour error: RGB distance of the albedo on the true surface at the "
        "best yaw.",
        f"PSNR: {ev['views']} orbit views (15° elevation, {ev['shading']} headlight) against "
        "the true object rendered with the same cameras and shading, turned by the best IoU "
        "yaw; PSNR@0°: against the unturned truth (the view prompts define a front).",
    ]
    if _judge_ok(data):
        asym = [p for p in cfg["prompts"] if parse_prompt(p).shape in MULTI_FACE_SHAPES]
        shapes = ", ".join(MULTI_FACE_SHAPES)
        which = "; ".join(asym) if asym else "none in this prompt set, so –"
        if data["judge"].get("rule") is None:  # scored before the rule was recorded
            rule = (
                "Multi-face (scored by the first judge, with its first rule): fraction of orbit "
                "views whose judged view label matches the camera's on the unturned object, "
                "where a judge answering 'side' throughout scores 0.5 "
                "(docs/results/judge-views.md; a rerun into a new folder rescores it), over "
                f"the shapes whose front and back differ ({shapes}): "
            )
        else:
            rule = (
                "Multi-face: balanced accuracy of the judged view labels "
                "(front/side/back/overhead) of the orbit views against those the cameras see "
                "on the object turned by its best-IoU yaw (the mean over the labels of the "
                "fraction read right: any constant answer scores 1/3; "
                f"docs/results/judge-views.md; judge {data['judge'].get('weights')}), over "
                f"the shapes whose front and back differ ({shapes}): "
            )
        out.append(
            "R-precision: fraction of the orbit views whose top-1 prompt under the ToyWorld "
            "judge is the right one. " + rule + which + "."
        )
    else:
        reason = data.get("judge", {}).get("note", "")
        out.append(
            f"R-precision and multi-face: {NO_JUDGE}"
            + (f" ({reason.split(';')[0]})" if reason else "")
            + "."
        )
    negative = data.get("generate_config", {}).get("negative_prompt", "")
    if any(e["spec"].split()[0] == "nfsd" for e in cfg["estimators"]) and not negative:
        out.append(
            "NFSD: ToyWorld's vocabulary has no negative prompt, so its negative branch is the "
            'unconditional "" (above its t_threshold NFSD then equals CSD).'
        )
    if any(e["spec"].split()[0] == "vsd" for e in cfg["estimators"]):
        if cfg["prior"] == "exact":
            particle = "its particle score is a fitted Gaussian in closed form (no network)"
        else:
            particle = (
                "its LoRA copy of the prior adds one forward and one training step (forward and "
                "backward) of the batch a step, which the column leaves out"
            )
        out.append(f"VSD: prior calls/step counts the frozen prior's calls; {particle}.")
    out.append(
        "Estimators: "
        + "; ".join(f"`{e['label']}` = `{e['spec']}`" for e in cfg["estimators"])
        + "."
    )
    for entry in cfg["estimators"]:
        ran = entry_canonical(data, entry)
        if ran != ORACLE_SPEC and ran != describe(build_estimator(entry["spec"])):
            out.append(
                f"`{entry['label']}` ran as `{ran}`: the defaults of its estimator when it ran, "
                "not today's."
            )
    failed = [r for r in selected_runs(data) if r["status"] != "ok"]
    for r in failed:
        out.append(f"Failed: {r['label']} | {r['prompt']} | seed {r['seed']}: {r['error']}")
    runs = selected_runs(data)
    if runs:
        # Summed over runs, not one invocation's wall time: a grid may have been run in
        # parts (benchmarks/toyworld_bench.py) or continued after a stop.
        compute_min = sum(r.get("wall_seconds", 0.0) for r in runs) / 60
        out.append(
            f"Run time: {compute_min:.1f} min summed over {len(runs)} runs "
            f"({data.get('machine', {}).get('threads', '?')} torch threads, "
            f"{data.get('machine', {}).get('device', 'cpu')})."
        )
    return out


def side_by_side_markdown(datas: Sequence[dict], names: Sequence[str]) -> str:
    """One table, rows = estimators (union, first file's order), a column per metric and
    results file (e.g. the exact and the learned prior)."""
    summaries = [aggregate(d) for d in datas]
    labels: list[str] = []
    for d in datas:
        labels += [x for x in labels_in_order(d) if x not in labels]
    metrics = [m for m in METRICS if m.key in SIDE_BY_SIDE]
    head = ["estimator"]
    for m in metrics:
        head += [f"{m.title} {'↑' if m.higher_is_better else '↓'} ({n})" for n in names]
    # What each row cost, next to what it scored.
    head += [f"prior calls/step ({n})" for n in names] + [f"train s/run ({n})" for n in names]
    costs = [(prior_calls(d), _train_seconds(d)) for d in datas]
    lines = ["| " + " | ".join(head) + " |"]
    lines.append("|" + "|".join(["---"] + [":-:"] * (len(head) - 1)) + "|")
    best = {
        (m.key, i): _best({k: v[m.key] for k, v in summ.items()}, m)
        for m in metrics
        for i, summ in enumerate(summaries)
    }
    for label in labels:
        cells = [label]
        for m in metrics:
            for i, (d, s) in enumerate(zip(datas, summaries, strict=True)):
                if m.judge and not _judge_ok(d):
                    cells.append(NO_JUDGE)
                elif label not in s or s[label][m.key].n == 0:
                    cells.append("–")
                else:
                    x = s[label][m.key]
                    text = x.text(m.digits)
                    if best[(m.key, i)] == f"{x.mean:.{m.digits}f}":
                        text = f"**{text}**"
                    cells.append(text)
        for which, digits in ((0, 1), (1, 1)):
            for cost in costs:
                x = cost[which].get(label)
                cells.append(x.text(digits) if x is not None and x.n else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for d, n in zip(datas, names, strict=True):
        c = d["config"]
        lines.append(
            f"- {n}: {c['prior']} prior, {c['steps']} steps, "
            f"{_count(len(c['prompts']), 'prompt')} × {_count(len(c['seeds']), 'seed')}"
            + (f", with {' '.join(c['overrides'])}" if c.get("overrides") else "")
            + "; mean ± sample std, best per column in bold."
        )
    return "\n".join(lines) + "\n"


def curves(data: dict, metric: str) -> dict[str, tuple[list[int], list[float]]]:
    """label -> (checkpoint steps, mean of ``metric`` over the runs that reached each step)."""
    steps = data["config"]["checkpoints"]
    out = {}
    for label in labels_in_order(data):
        runs = [r for r in selected_runs(data) if r["label"] == label]
        xs, ys = [], []
        for step in steps:
            s = Summary.of([c.get(metric, math.nan) for r in runs if (c := checkpoint_at(r, step))])
            if s.n and math.isfinite(s.mean):
                xs.append(step)
                ys.append(s.mean)
        out[label] = (xs, ys)
    return out


# Line style per estimator family, so that nine SSD variants read as one family.
FAMILY_STYLES = {"sds": "-", "csd": "-.", "nfsd": ":", "ssd": "--"}
PANEL_INCHES = 3.6
DPI = 110


def plot_metrics_vs_steps(data: dict, path: Path) -> Path:
    """One panel per metric, one line per estimator (mean over prompts × seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ssd3d.atomic import atomic_path

    cfg = data["config"]
    judge_ok = _judge_ok(data)
    metrics = list(METRICS)
    cols = 4
    rows = math.ceil(len(metrics) / cols)
    labels = labels_in_order(data)
    fig = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows * 0.85 + 1.2), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    palette = _palette(len(labels))
    handles = {}
    for ax, m in zip(axes, metrics, strict=False):
        ax.set_title(f"{m.title} ({'higher' if m.higher_is_better else 'lower'} is better)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if m.judge and not judge_ok:
            ax.text(0.5, 0.5, NO_JUDGE, ha="center", va="center", transform=ax.transAxes)
            continue
        for i, (label, (xs, ys)) in enumerate(curves(data, m.key).items()):
            style = FAMILY_STYLES.get(label.split()[0], "-")
            (line,) = ax.plot(
                xs, ys, style, marker="o", ms=3, lw=1.5, color=palette[i], label=label
            )
            handles.setdefault(label, line)
    for ax in axes[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(
        f"ToyWorld benchmark: {cfg['prior']} prior, mean over "
        f"{_count(len(cfg['prompts']), 'prompt')} × {_count(len(cfg['seeds']), 'seed')} "
        "(step 0 = the initial blob)"
    )
    legend_ax = axes[len(metrics)] if len(axes) > len(metrics) else None
    ordered = [handles[x] for x in labels if x in handles]
    if legend_ax is not None:
        legend_ax.legend(
            ordered,
            [h.get_label() for h in ordered],
            loc="center",
            fontsize=8,
            ncol=1 if len(ordered) <= 14 else 2,
            frameon=False,
        )
    else:
        fig.legend(ordered, [h.get_label() for h in ordered], loc="lower center", ncol=5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def gallery_table(out_dir: Path, data: dict) -> Table:
    """Each run's orbit views (``run["image"]``, written by the benchmark) with its final IoU:
    a row per prompt and seed, a column per estimator."""
    cfg = data["config"]
    labels = labels_in_order(data)
    runs = {(r["label"], r["prompt"], r["seed"]): r for r in selected_runs(data)}
    rows = []
    for prompt in cfg["prompts"]:
        for seed in cfg["seeds"]:
            row = [Cell(f"{prompt}, seed {seed}")]
            for label in labels:
                row.append(_gallery_cell(out_dir, runs.get((label, prompt, seed))))
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


def facts(data: dict) -> list[tuple[str, str]]:
    """What the benchmark ran, for the top of its page."""
    cfg = data["config"]
    machine = data.get("machine", {})
    judge = data.get("judge", {})
    out = [
        ("prior", cfg["prior"] + (f" ({cfg['model']})" if cfg.get("model") else "")),
        ("steps per run", str(cfg["steps"])),
        ("prompts", "; ".join(cfg["prompts"])),
        ("seeds", ", ".join(map(str, cfg["seeds"]))),
        ("estimators", str(len(cfg["estimators"]))),
        ("overrides", " ".join(cfg["overrides"]) or "none"),
        ("judge", "yes" if judge.get("available") else "none"),
    ]
    if "last_wall_seconds" in data:
        out.append(("wall time", f"{data['last_wall_seconds'] / 60:.1f} min (last invocation)"))
    if machine:
        out.append(("machine", f"{machine.get('device', 'cpu')}, torch {machine.get('torch')}"))
    return out


def write_report(out_dir: Path, data: dict | None = None) -> dict[str, Path]:
    """table.md, metrics_vs_steps.png and report.html in ``out_dir`` (from its results.json
    when ``data`` is not given)."""
    from ssd3d.atomic import atomic_write_bytes
    from ssd3d.report.bench_page import write_bench_report

    out_dir = Path(out_dir)
    if data is None:
        data = read_results(out_dir / RESULTS_FILE)
    table = atomic_write_bytes(out_dir / TABLE_FILE, markdown_table(data).encode())
    plot = plot_metrics_vs_steps(data, out_dir / PLOT_FILE)
    summary = summary_table(data)
    html = write_bench_report(
        out_dir,
        title=summary.title,
        facts=facts(data),
        summary=summary,
        notes=[note.replace("`", "") for note in notes(data)],
        per_prompt=per_prompt_table(data, "iou"),
        normalised=normalised_table(data),
        gallery=gallery_table(out_dir, data),
        plot=PLOT_FILE,
        files=[RESULTS_FILE, TABLE_FILE, PLOT_FILE],
    )
    return {"table": table, "plot": plot, "html": html}


__all__ = [
    "METRICS",
    "Summary",
    "aggregate",
    "curves",
    "facts",
    "gallery_table",
    "markdown_table",
    "notes",
    "per_prompt_markdown",
    "per_prompt_table",
    "plot_metrics_vs_steps",
    "side_by_side_markdown",
    "summary_table",
    "write_report",
]
