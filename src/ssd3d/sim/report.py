"""metrics.json, the terminal table, and the markdown results with the paper's claims.

Everything after the run works from the plain metrics dictionary (what metrics.json
holds), so ``scripts/sim_results.py`` can rebuild the report from the file alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ssd3d.sim.run import ScenarioResult, SimulationConfig
from ssd3d.sim.scenario import scenario_to_dict

# Labels of DEFAULT_ESTIMATORS the claims compare.
MODE_SEEKING, MODE_DISENGAGING, SSD = "mode-seeking", "mode-disengaging", "SSD"
SDS_LOW, SDS_HIGH = "SDS s=7.5", "SDS s=100"


def results_to_dict(
    results: Sequence[ScenarioResult], config: SimulationConfig, elapsed_s: float
) -> dict[str, Any]:
    """The content of metrics.json."""
    scenarios = {}
    for r in results:
        estimators = {}
        for run in r.runs:
            m = run.metrics
            estimators[run.label] = {
                "spec": run.spec,
                "mean_log_prob": m.mean_log_prob,
                "support_fraction": m.support_fraction,
                "modes_covered": m.modes_covered,
                "num_modes": m.num_modes,
                "mode_coverage": m.mode_coverage,
                "mean_nearest_mean_distance": m.mean_nearest_mean_distance,
                "spread_ratio": m.spread_ratio,
                "grad_variance_by_t": {
                    "t": list(r.bin_timesteps),
                    "variance": [v.variance for v in run.variance],
                    "relative": [v.relative for v in run.variance],
                },
                "mean_relative_variance": sum(v.relative for v in run.variance) / len(run.variance),
                "prior_calls_per_step": run.prior_calls,
            }
        scenarios[r.scenario.name] = {
            "description": r.scenario.description,
            "dim": r.prior.dim,
            "prompt": r.scenario.prompt,
            "negative": r.scenario.negative,
            "seconds": r.seconds,
            "estimators": estimators,
            "variance_vs_t": {
                "t": list(r.curve_timesteps),
                "variance": {k: [v.variance for v in vs] for k, vs in r.curves.items()},
                "relative": {k: [v.relative for v in vs] for k, vs in r.curves.items()},
                "bias2": {k: [v.bias2 for v in vs] for k, vs in r.curves.items()},
                "bias2_floor": {k: [v.bias2_floor for v in vs] for k, vs in r.curves.items()},
                "coefficient": {k: [v.coefficient for v in vs] for k, vs in r.curves.items()},
            },
            "scenario": scenario_to_dict(r.scenario),
        }
    return {
        "config": dataclasses.asdict(config),
        "elapsed_s": elapsed_s,
        "scenarios": scenarios,
    }


def table_rows(scenario: dict[str, Any]) -> list[list[str]]:
    """One row of formatted cells per estimator (for the terminal and the markdown)."""
    rows = []
    for label, e in scenario["estimators"].items():
        rows.append(
            [
                label,
                f"{e['mean_log_prob']:.2f}",
                f"{100 * e['support_fraction']:.0f}%",
                f"{e['modes_covered']}/{e['num_modes']}",
                f"{e['mean_nearest_mean_distance']:.2f}",
                f"{e['spread_ratio']:.2f}",
                f"{e['mean_relative_variance']:.2f}",
                _calls(e.get("prior_calls_per_step")),
            ]
        )
    return rows


TABLE_HEADER = [
    "estimator",
    "mean log p(x|y)",
    "in support",
    "modes covered",
    "dist. to nearest mean",
    "spread / data's",
    "noise share of grad",
    "prior calls/step",
]


def _calls(value: float | None) -> str:
    # metrics.json files written before the count was recorded have none.
    return "–" if value is None or value != value else f"{value:.1f}"


def print_tables(metrics: dict[str, Any], console=None) -> None:
    """A rich table per scenario."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for name, s in metrics["scenarios"].items():
        table = Table(title=f"{name} (D = {s['dim']}, prompt '{s['prompt']}')", title_style="bold")
        for i, col in enumerate(TABLE_HEADER):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in table_rows(s):
            table.add_row(*row)
        console.print(table)


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, checked on one scenario's numbers."""

    scenario: str
    claim: str  # what the paper says
    holds: bool
    evidence: str  # the numbers it rests on


def _fmt(e: dict[str, Any]) -> str:
    return f"log p {e['mean_log_prob']:.2f}, support {100 * e['support_fraction']:.0f}%"


def check_claims(metrics: dict[str, Any]) -> list[Claim]:
    """The paper's claims (docs/method.md, "The claims this project checks") that the metrics can test."""
    claims = []
    for name, s in metrics["scenarios"].items():
        est = s["estimators"]
        if MODE_DISENGAGING in est and SSD in est:
            md, ssd = est[MODE_DISENGAGING], est[SSD]
            holds = (
                md["mean_log_prob"] < ssd["mean_log_prob"]
                and md["support_fraction"] <= ssd["support_fraction"]
            )
            claims.append(
                Claim(
                    name,
                    "mode-disengaging alone leaves the data support (lower log p and support "
                    "than SSD)",
                    holds,
                    f"mode-disengaging {_fmt(md)}; SSD {_fmt(ssd)}",
                )
            )
        if MODE_SEEKING in est:
            ms = est[MODE_SEEKING]
            claims.append(
                Claim(
                    name,
                    "mode-seeking alone collapses toward the conditional mean (over-smoothing): "
                    "its particles spread less around E[x|y] than the data do",
                    ms["spread_ratio"] < 1.0,
                    f"spread ratio {ms['spread_ratio']:.2f} (data = 1), modes covered "
                    f"{ms['modes_covered']}/{ms['num_modes']}, {_fmt(ms)}",
                )
            )
        curves = s["variance_vs_t"]["variance"]
        for form, name_c in (("running", "running c"), ("per_sample", "per-sample c")):
            if "one" not in curves or form not in curves:
                continue
            t = s["variance_vs_t"]["t"]
            sds, ada = curves["one"], curves[form]
            mean_sds, mean_ada = sum(sds) / len(sds), sum(ada) / len(ada)
            lower = [ti for ti, a, b in zip(t, ada, sds, strict=True) if a < b]
            higher = [ti for ti, a, b in zip(t, ada, sds, strict=True) if a >= b]
            if not higher:
                where = "lower at every t on the grid"
            else:
                tail = higher == t[len(t) - len(higher) :]
                at = f"t >= {higher[0]}" if tail else "t = " + ", ".join(map(str, higher))
                where = f"lower at {len(lower)}/{len(t)} grid points; c = 1 is lower at {at}"
            bias = s["variance_vs_t"].get("bias2", {}).get(form)
            bias_text = f"; mean squared bias {sum(bias) / len(bias):.3g}" if bias else ""
            claims.append(
                Claim(
                    name,
                    f"SDS's c = 1 has a higher gradient variance than the {name_c}",
                    mean_sds > mean_ada,
                    f"mean over t: c = 1 {mean_sds:.3g}, {name_c} {mean_ada:.3g}; {name_c} is "
                    f"{where}{bias_text}",
                )
            )
        for sds_label in (SDS_LOW, SDS_HIGH):
            if sds_label in est and SSD in est:
                sds, ssd = est[sds_label], est[SSD]
                holds = (
                    ssd["mean_log_prob"] > sds["mean_log_prob"]
                    and ssd["support_fraction"] >= sds["support_fraction"]
                )
                claims.append(
                    Claim(
                        name,
                        f"SSD ends closer to the data than {sds_label} (higher log p and support)",
                        holds,
                        f"SSD {_fmt(ssd)}; {sds_label} {_fmt(sds)}",
                    )
                )
    return claims


def variance_note(metrics: dict[str, Any]) -> str | None:
    """Mean variance and squared bias over t of each coefficient, per scenario."""
    parts = []
    for name, sc in metrics["scenarios"].items():
        vt = sc["variance_vs_t"]
        if not vt["variance"]:
            continue
        bias = vt.get("bias2", {})
        means = ", ".join(
            f"{k} {sum(v) / len(v):.3g}"
            + (f" (bias^2 {sum(bias[k]) / len(bias[k]):.3g})" if k in bias else "")
            for k, v in vt["variance"].items()
        )
        parts.append(f"{name} (D = {sc['dim']}): {means}")
    if not parts:
        return None
    return (
        "Gradient variance (and squared bias ||E[c eps]||^2) of eps_cond - c eps at fixed "
        "x0 ~ p(x|y), mean over t: " + "; ".join(parts) + "."
    )


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short markdown results section: a table per scenario and a line per claim."""
    cfg = metrics["config"]
    lines = [
        "## Simulation results",
        "",
        f"{cfg['particles']} particles, {cfg['steps']} steps, seed {cfg['seed']}; "
        f"run time {metrics['elapsed_s']:.1f} s. Mean log p(x|y) and support are measured on "
        "the final particles; support = Mahalanobis distance to some component of the prompt's "
        "class below 3 (in D dimensions, the radius holding the same 98.9% of a Gaussian's "
        "mass); a mode is covered when it holds >= 5% of the particles; the noise share of a "
        "gradient is E||g - E g||^2 / E||g||^2 over noise draws at fixed x0 ~ p(x|y), averaged "
        "over 10 timestep bins.",
        "",
    ]
    for name, s in metrics["scenarios"].items():
        lines += [f"### {name} (D = {s['dim']}): {s['description']}", ""]
        lines.append("| " + " | ".join(TABLE_HEADER) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(TABLE_HEADER) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(s)]
        lines.append("")
    lines += ["### The paper's claims", ""]
    for c in check_claims(metrics):
        verdict = "holds" if c.holds else "does not hold"
        lines.append(f"- **{c.scenario}** — {c.claim}: **{verdict}** ({c.evidence}).")
    note = variance_note(metrics)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"
