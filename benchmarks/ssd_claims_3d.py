"""Claim (c) in 3D: SSD against SDS (and CSD) on ToyWorld, paired by prompt and seed.

    PYTHONPATH=src python benchmarks/ssd_claims_3d.py \
        exact=results/bench/exact-ssd-oracle toy=results/bench/toy-ssd \
        | python scripts/results_section.py ssd-claims-3d

Reads benchmark folders (``ssd3d bench`` results) and, for each pair of estimators
(SSD's label first), compares the two on the runs they share (same prompt and seed) at the
benchmark's last step. A metric *favours* one estimator when the mean of the paired
differences is more than two standard errors from zero (a paired two-sided test at about
95% for the run counts here); otherwise it shows no difference. A category of the claim
(geometry, colour, plausibility) **holds** when at least one of its metrics favours SSD
and none favours the other, **does not hold** when none favours SSD, and is **mixed**
otherwise. Every number comes from the results files; nothing is typed in.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from ssd3d.bench import RESULTS_FILE, merge_results, read_results
from ssd3d.bench.results import selected_runs
from ssd3d.bench.tables import METRICS, checkpoint_at
from ssd3d.errors import SSD3DError

CATEGORIES = {
    "geometry": ("iou", "silhouette_iou", "depth_error", "chamfer", "normal_consistency"),
    "colour": ("colour_error", "psnr"),
    "plausibility": ("r_precision", "multi_face"),
}
METRIC = {m.key: m for m in METRICS}
# (SSD's label, the label it is compared with), as the benchmark folders name them.
DEFAULT_PAIRS = (
    ("ssd", "sds s=7.5"),
    ("ssd (earlier defaults)", "sds s=7.5"),
    ("ssd", "csd"),
    # SSD's middle interval guided: whether the unguided mode-seeking branch is what SSD
    # loses where it loses (docs/results/ssd-3d.md, "SSD on 3D Gaussians").
    ("ssd (three intervals)", "sds s=7.5"),
    ("ssd (three intervals)", "ssd"),
)
# Paired differences further than this many standard errors from 0 count as a difference.
SIGNIFICANCE_SE = 2.0


def final_points(data: dict, label: str) -> dict[tuple[str, int], dict]:
    """(prompt, seed) -> the last checkpoint's metrics of ``label``'s finished runs."""
    step = data["config"]["steps"]
    points = {}
    for run in selected_runs(data):
        if run["label"] == label and run["status"] == "ok":
            point = checkpoint_at(run, step)
            if point is not None:
                points[(run["prompt"], run["seed"])] = point
    return points


def paired(a: dict, b: dict, key: str) -> list[float]:
    """Differences a - b, signed so that positive means ``a`` is better, where both are finite."""
    sign = 1.0 if METRIC[key].higher_is_better else -1.0
    out = []
    for cell in sorted(set(a) & set(b)):
        x, y = a[cell].get(key, math.nan), b[cell].get(key, math.nan)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            out.append(sign * (x - y))
    return out


def verdict_of_metric(diffs: list[float]) -> str:
    """'a', 'b' or '=' (no difference beyond SIGNIFICANCE_SE standard errors)."""
    if len(diffs) < 2:
        return "="
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    if se == 0:
        return "a" if mean > 0 else "b" if mean < 0 else "="
    if mean > SIGNIFICANCE_SE * se:
        return "a"
    if mean < -SIGNIFICANCE_SE * se:
        return "b"
    return "="


def verdict_of_category(metric_verdicts: list[str]) -> str:
    if "a" in metric_verdicts and "b" not in metric_verdicts:
        return "holds"
    if "a" not in metric_verdicts:
        return "does not hold"
    return "mixed"


def compare(data: dict, a: str, b: str) -> list[dict]:
    """One row per category: verdict, and per metric the means, the paired difference, wins."""
    pa, pb = final_points(data, a), final_points(data, b)
    rows = []
    for category, keys in CATEGORIES.items():
        cells, verdicts = [], []
        for key in keys:
            diffs = paired(pa, pb, key)
            if not diffs:
                continue
            v = verdict_of_metric(diffs)
            verdicts.append(v)
            both = sorted(set(pa) & set(pb))
            mean_a = statistics.fmean(pa[c][key] for c in both if math.isfinite(pa[c][key]))
            mean_b = statistics.fmean(pb[c][key] for c in both if math.isfinite(pb[c][key]))
            wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
            digits = METRIC[key].digits
            mark = {"a": f" (favours {a})", "b": f" (favours {b})", "=": ""}[v]
            cells.append(
                f"{METRIC[key].title} {mean_a:.{digits}f} vs {mean_b:.{digits}f}, "
                f"better in {wins}, worse in {losses} of {len(diffs)}{mark}"
            )
        if cells:
            rows.append(
                {
                    "category": category,
                    "verdict": verdict_of_category(verdicts),
                    "evidence": "; ".join(cells),
                    "runs": len(set(pa) & set(pb)),
                }
            )
    return rows


def cost_row(data: dict, a: str, b: str) -> str | None:
    """Claim (d) in 3D: prior calls per step where the runs recorded them, and the training
    wall time per run, paired (on a shared machine the wall time also measures its load)."""
    parts = []
    for key, what in (("prior_calls_per_step", "prior calls per step"), ("train_seconds", "")):
        values = {}
        for label in (a, b):
            values[label] = {
                (r["prompt"], r["seed"]): r[key]
                for r in selected_runs(data)
                if r["label"] == label and r["status"] == "ok" and r.get(key)
            }
        both = sorted(set(values[a]) & set(values[b]))
        if not both:
            continue
        if what:
            mean_a = statistics.fmean(values[a][c] for c in both)
            mean_b = statistics.fmean(values[b][c] for c in both)
            parts.append(f"{what} {mean_a:.2f} vs {mean_b:.2f}")
        else:
            ratio = statistics.fmean(values[a][c] / values[b][c] for c in both)
            parts.append(
                f"train wall time per run {a} / {b} {ratio:.2f} (mean over {len(both)} paired "
                "runs, on a shared machine whose load varied between them)"
            )
    return "; ".join(parts) or None


def read_parts(spec: str) -> dict:
    """The results of ``folder`` or of ``folder+folder+…``: benchmarks of the same prior,
    overrides and evaluation run apart with different estimators, read as one (their plans'
    estimators together), so that estimators of different folders pair run by run."""
    paths = [Path(p) for p in spec.split("+")]
    datas = [read_results(p / RESULTS_FILE if p.is_dir() else p) for p in paths]
    if len(datas) == 1:
        return datas[0]
    merged = merge_results(datas)
    estimators, seen = [], set()
    for data in datas:
        for entry in data["config"]["estimators"]:
            if entry["label"] not in seen:
                seen.add(entry["label"])
                estimators.append(entry)
    merged["config"] = {**merged["config"], "estimators": estimators}
    return merged


def markdown(folders: list[tuple[str, str]], pairs: tuple[tuple[str, str], ...]) -> str:
    lines = [
        "| prior | claim | verdict | runs | evidence (means at the last step; paired runs where the first is better / worse) |",
        "|---|---|---|:-:|---|",
    ]
    facts = []
    for name, folder in folders:
        data = read_parts(folder)
        labels = {e["label"] for e in data["config"]["estimators"]}
        cfg = data["config"]
        facts.append(
            f"- {name}: `{folder}`, {len(cfg['prompts'])} prompts × {len(cfg['seeds'])} "
            f"seeds, {cfg['steps']} steps, prior {cfg['prior']}."
        )
        for a, b in pairs:
            if a not in labels or b not in labels:
                continue
            for row in compare(data, a, b):
                lines.append(
                    f"| {name} | {a} beats {b} on {row['category']} | **{row['verdict']}** | "
                    f"{row['runs']} | {row['evidence']} |"
                )
            cost = cost_row(data, a, b)
            if cost:
                lines.append(f"| {name} | {a} costs no more than {b} | – | – | {cost} |")
    notes = [
        "",
        *facts,
        f"- A metric favours one side when the mean paired difference is more than "
        f"{SIGNIFICANCE_SE:g} standard errors from zero; a category holds when one of its "
        "metrics favours SSD and none the other, does not hold when none favours SSD, and is "
        "mixed otherwise. Multi-face counts only the shapes whose front and back differ.",
        "- Made by `python benchmarks/ssd_claims_3d.py "
        + " ".join(f"{n}={f}" for n, f in folders)
        + " | python scripts/results_section.py ssd-claims-3d`.",
    ]
    return "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folders",
        nargs="+",
        help="name=benchmark folder, e.g. exact=results/…; folder+folder reads several as one",
    )
    args = parser.parse_args(argv)
    folders = []
    for item in args.folders:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            print(f"error: expected name=folder, got {item!r}", file=sys.stderr)
            return 2
        folders.append((name, path))
    try:
        sys.stdout.write(markdown(folders, DEFAULT_PAIRS))
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
