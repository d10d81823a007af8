"""``ssd3d simulate`` through typer's test runner, and scripts/sim_results.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ssd3d.cli import app
from ssd3d.estimators import build_estimator, describe

ROOT = Path(__file__).resolve().parents[2]


def test_small_run_writes_figures_metrics_and_table(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--scenario",
            "separated",
            "--estimators",
            "SSD; ssd tau=0",
            "--steps",
            "30",
            "--particles",
            "32",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "results.md",
        "separated.png",
        "variance.png",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["steps"] == 30 and metrics["config"]["seed"] == 3
    est = metrics["scenarios"]["separated"]["estimators"]
    assert list(est) == ["SSD", "ssd tau=0"]
    # The recorded spec rebuilds the same estimator.
    assert describe(build_estimator(est["ssd tau=0"]["spec"])) == est["ssd tau=0"]["spec"]
    assert build_estimator(est["ssd tau=0"]["spec"]).tau == 0
    assert "separated" in result.output and "done in" in result.output

    report = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sim_results.py"), str(out / "metrics.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert report.stdout.startswith("## Simulation results")
    assert "| ssd tau=0 |" in report.stdout


def test_bad_scenario_path_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--scenario", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: scenario file not found: {tmp_path / 'missing.yaml'}"]


def test_bad_field_in_scenario_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nclasses: [{name: a, means: [[0, 0]], stds: -1}]\nprompt: a\n")
    result = CliRunner().invoke(app, ["simulate", "--scenario", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: scenario bad.yaml: class 'a': stds must be > 0; got -1"


def test_help_states_the_real_defaults() -> None:
    from ssd3d.sim.run import SimulationConfig

    result = CliRunner().invoke(app, ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"(default {SimulationConfig().steps})" in result.output
    assert f"(default {SimulationConfig().particles})" in result.output


def test_copies_add_transformed_scenarios(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "--scenario", "overlapping", "--estimators", "SSD", "--steps", "3"]
    args += ["--particles", "8", "--copies", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["scenarios"]) == ["overlapping", "overlapping-t1"]
    assert (out / "overlapping-t1.png").is_file()
    bad = CliRunner().invoke(app, ["simulate", "--copies", "-1", "--out", str(out)])
    assert bad.exit_code == 2 and "--copies must be >= 0" in bad.output
