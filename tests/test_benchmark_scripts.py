"""Every script in benchmarks/ loads: its imports resolve against the package as it is now
(the scripts run for hours and nothing else imports them, so a renamed export would only
show when someone reruns a table)."""

import runpy
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmark_script_loads(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import one another
    namespace = runpy.run_path(str(script), run_name="benchmark_under_test")
    assert callable(namespace.get("main")), f"{script.name} has no main()"
