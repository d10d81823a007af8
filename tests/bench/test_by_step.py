"""The over-the-steps table: each estimator's mean at every checkpoint, its peak marked."""

from ssd3d.bench.tables import by_step_table


def run(canonical, prompt, ious):
    checkpoints = [{"step": s, "iou": v} for s, v in zip((0, 100, 200), ious, strict=True)]
    return {"canonical": canonical, "prompt": prompt, "seed": 0, "steps": 200,
            "status": "ok", "checkpoints": checkpoints}  # fmt: skip


def data():
    estimators = [{"label": "sds", "spec": "sds", "canonical": "sds"},
                  {"label": "ssd", "spec": "ssd", "canonical": "ssd"}]  # fmt: skip
    return {
        "config": {
            "estimators": estimators,
            "prompts": ["a", "b"],
            "seeds": [0],
            "steps": 200,
            "checkpoints": [0, 100, 200],
        },
        "runs": [
            run("sds", "a", (0.2, 0.8, 0.4)),
            run("sds", "b", (0.4, 0.6, 0.2)),
            run("ssd", "a", (0.2, 0.3, 0.5)),
            run("ssd", "b", (0.4, 0.5, 0.9)),
            run("other", "a", (0.0, 1.0, 1.0)),  # not in the plan: no row
        ],
    }


def test_each_cell_is_the_mean_over_prompts_and_the_row_peak_is_bold():
    table = by_step_table(data(), "iou")
    assert table.head == ["estimator", "step 0", "step 100", "step 200"]
    rows = {r[0].text: r[1:] for r in table.rows}
    assert set(rows) == {"sds", "ssd"}
    assert [c.text for c in rows["sds"]] == ["0.300", "0.700", "0.300"]
    assert [c.bold for c in rows["sds"]] == [False, True, False]  # formed, then drifted
    assert [c.text for c in rows["ssd"]] == ["0.300", "0.400", "0.700"]
    assert [c.bold for c in rows["ssd"]] == [False, False, True]


def test_a_lower_is_better_metric_marks_its_minimum():
    d = data()
    for r in d["runs"]:
        for c in r["checkpoints"]:
            c["chamfer"] = 1 - c["iou"]
    rows = {r[0].text: r[1:] for r in by_step_table(d, "chamfer").rows}
    assert [c.bold for c in rows["sds"]] == [False, True, False]
