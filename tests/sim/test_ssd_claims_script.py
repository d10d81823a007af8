"""benchmarks/ssd_claims.py end to end at a toy size: it writes the JSON and the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_claims_script_writes_json_and_markdown(tmp_path: Path) -> None:
    out, page = tmp_path / "claims", tmp_path / "claims.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    args = ["--out", str(out), "--markdown", str(page), "--copies", "0", "--steps", "3"]
    args += ["--particles", "8"]
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ssd_claims.py"), *args],
        env=env,
        check=True,
        capture_output=True,
    )
    data = json.loads((out / "claims.json").read_text())
    assert list(data["instances"]) == ["separated", "overlapping", "highdim"]
    ids = [c["id"] for c in data["claims"]]
    assert ids[:2] == ["a1", "a2"] and "d" in ids
    # model calls per sample and step: SDS needs cond + uncond, NFSD up to three
    assert data["model_calls"]["SDS s=7.5"] == 2.0 and data["model_calls"]["NFSD"] > 2.0
    text = page.read_text()
    assert "## Claims" in text and "## SSD variants" in text and "| `SSD` |" in text
