"""The lever tables' oracle rows: the oracle's own runs, averaged over seeds per prompt."""

import runpy
from pathlib import Path

import pytest

SCRIPT = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "oracle_levers.py"))


def run(spec, prompt, seed, iou, status="ok"):
    end = {"step": 200, "iou": iou, "silhouette_iou": 0.9}
    return {"spec": spec, "prompt": prompt, "seed": seed, "status": status,
            "train_seconds": 10.0, "checkpoints": [{"step": 0, "iou": 0.1}, end]}  # fmt: skip


def test_a_row_averages_the_oracles_seeds_and_leaves_out_the_estimators():
    data = {
        "runs": [
            run("oracle", "a green cube", 0, 0.9),
            run("oracle", "a green cube", 1, 0.8),
            run("oracle", "a yellow wedge", 0, 0.6),
            run("sds", "a green cube", 0, 0.1),  # an estimator: not the oracle's row
            run("oracle", "a yellow wedge", 1, 0.0, status="failed"),  # not scored
        ]
    }
    table = SCRIPT["lever_table"]([data], ["λ 2"])
    row = next(line for line in table.splitlines() if line.startswith("| λ 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # cube: (0.9 + 0.8) / 2; wedge: its one finished seed; mean over the two prompts
    assert cells[1:4] == ["0.850", "0.600", "0.725"]
    assert cells[5] == "2"  # seeds


def test_a_folder_without_an_oracle_is_refused():
    with pytest.raises(Exception, match="no finished oracle run"):
        SCRIPT["lever_table"]([{"runs": [run("sds", "a green cube", 0, 0.5)]}], ["x"])


def test_an_estimators_rows_are_read_by_its_label():
    data = {"runs": [run("oracle", "a green cube", 0, 0.9), run("sds", "a green cube", 0, 0.4)]}
    for r, label in zip(data["runs"], ("oracle (true renders)", "preset"), strict=True):
        r["label"] = label
    table = SCRIPT["lever_table"]([data], ["x"], "preset")
    row = next(line for line in table.splitlines() if line.startswith("| x |"))
    assert [c.strip() for c in row.strip("|").split("|")][1] == "0.400"
    assert "the preset runs' steps" in table
    with pytest.raises(Exception, match="no finished other run"):
        SCRIPT["lever_table"]([data], ["x"], "other")
