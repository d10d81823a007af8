"""benchmarks/ssd_claims_3d.py: the paired verdicts on a hand-made results file."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def claims():
    spec = importlib.util.spec_from_file_location(
        "ssd_claims_3d", ROOT / "benchmarks" / "ssd_claims_3d.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(points: dict[str, list[dict]]) -> dict:
    """A minimal results dict: one run per (label, seed) with a final checkpoint."""
    runs = []
    for label, per_seed in points.items():
        for seed, metrics in enumerate(per_seed):
            runs.append(
                {
                    "label": label,
                    "prompt": "a green cube",
                    "seed": seed,
                    "status": "ok",
                    "steps": 10,
                    "train_seconds": 1.0,
                    "checkpoints": [{"step": 10, **metrics}],
                    "canonical": label,
                }
            )
    return {
        "config": {
            "estimators": [{"label": k, "spec": k, "canonical": k} for k in points],
            "steps": 10,
            "prompts": ["a green cube"],
            "seeds": list(range(len(next(iter(points.values()))))),
            "prior": "exact",
        },
        "runs": runs,
    }


def test_a_consistent_lead_favours_and_noise_does_not(claims):
    ssd = [{"iou": 0.8 + 0.01 * i, "chamfer": 0.05, "psnr": 20.0 + (-1) ** i} for i in range(4)]
    sds = [{"iou": 0.6 + 0.01 * i, "chamfer": 0.05, "psnr": 20.0 - (-1) ** i} for i in range(4)]
    data = _data({"ssd": ssd, "sds": sds})
    rows = {r["category"]: r for r in claims.compare(data, "ssd", "sds")}
    # IoU higher by 0.2 in every pair, Chamfer tied: geometry holds
    assert rows["geometry"]["verdict"] == "holds"
    assert "better in 4, worse in 0 of 4 (favours ssd)" in rows["geometry"]["evidence"]
    # PSNR alternates +-2 dB around a zero mean: no difference, so colour does not hold
    assert rows["colour"]["verdict"] == "does not hold"
    assert "plausibility" not in rows  # no judge metrics in the file


def test_lower_is_better_metrics_are_signed_and_mixed_is_reported(claims):
    ssd = [{"iou": 0.9, "chamfer": 0.10 + 0.001 * i} for i in range(3)]
    sds = [{"iou": 0.5, "chamfer": 0.05 + 0.001 * i} for i in range(3)]
    rows = {r["category"]: r for r in claims.compare(_data({"ssd": ssd, "sds": sds}), "ssd", "sds")}
    assert rows["geometry"]["verdict"] == "mixed"  # IoU favours ssd, Chamfer (lower) sds
    assert "(favours sds)" in rows["geometry"]["evidence"]


def test_non_finite_metrics_are_left_out_of_the_pairs(claims):
    a = {(p, 0): {"multi_face": math.nan} for p in "x"}
    b = {(p, 0): {"multi_face": 0.5} for p in "x"}
    assert claims.paired(a, b, "multi_face") == []


def test_folders_run_apart_pair_their_estimators_run_by_run(claims, tmp_path):
    import json

    from ssd3d.bench.results import RESULTS_FORMAT
    from ssd3d.errors import SSD3DError

    ssd = [{"iou": 0.8 + 0.01 * i} for i in range(3)]
    sds = [{"iou": 0.6 + 0.01 * i} for i in range(3)]
    paths = []
    for name, points in (("a", {"sds": sds}), ("b", {"ssd": ssd})):
        data = {"format": RESULTS_FORMAT, **_data(points)}
        data["config"] |= {"model": None, "overrides": [], "eval": {}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(data))
        paths.append(str(tmp_path / name))
    alone = claims.markdown([("x", paths[1])], (("ssd", "sds"),))
    assert "beats" not in alone  # one folder holds only one of the two
    merged = claims.read_parts("+".join(paths))
    assert [e["label"] for e in merged["config"]["estimators"]] == ["sds", "ssd"]
    rows = {r["category"]: r for r in claims.compare(merged, "ssd", "sds")}
    assert rows["geometry"]["verdict"] == "holds" and rows["geometry"]["runs"] == 3
    # parts whose numbers are not comparable are refused
    other = json.loads((tmp_path / "b" / "results.json").read_text())
    other["config"]["overrides"] = ["representation=gaussians"]
    (tmp_path / "b" / "results.json").write_text(json.dumps(other))
    with pytest.raises(SSD3DError, match="differ in overrides"):
        claims.read_parts("+".join(paths))
