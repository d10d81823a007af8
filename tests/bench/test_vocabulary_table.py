"""The vocabulary page says which judge scored it, so first-judge numbers are not read as current."""

import runpy
from pathlib import Path

SCRIPT = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "vocabulary_table.py"))
judge_sentence = SCRIPT["judge_sentence"]


def test_a_file_without_a_scoring_rule_is_marked_as_the_first_judges():
    sentence = judge_sentence({"judge": {"available": True, "note": ""}})
    assert "first judge" in sentence and "rescores" in sentence


def test_a_file_with_the_current_rule_names_its_judge():
    sentence = judge_sentence({"judge": {"available": True, "weights": "abc123", "rule": 2}})
    assert "abc123" in sentence and "rule 2" in sentence and "first" not in sentence


def test_a_file_without_a_judge_says_nothing_was_scored():
    assert "not scored" in judge_sentence({"judge": {"available": False}})


def run(spec, iou, status="ok", prompt="a red cube", seed=0):
    return {"spec": spec, "prompt": prompt, "seed": seed, "status": status,
            "checkpoints": [{"step": 0, "iou": 0.2}, {"step": 600, "iou": iou}]}  # fmt: skip


def test_the_oracles_runs_are_their_own_row_not_the_estimators():
    final_metrics = SCRIPT["final_metrics"]
    data = {
        "runs": [run("oracle", 0.9), run("sds guidance_scale=7.5", 0.6), run("ssd", 0.1, "failed")]
    }
    assert final_metrics(data) == {("a red cube", 0): {"step": 600, "iou": 0.6}}
    assert final_metrics(data, oracle=True) == {("a red cube", 0): {"step": 600, "iou": 0.9}}
    assert SCRIPT["initial_metrics"](data) == {("a red cube", 0): {"step": 0, "iou": 0.2}}


def test_seeds_are_averaged_per_shape_and_the_worst_shape_is_named():
    data = {
        "runs": [
            run("ssd", 0.6, seed=0),
            run("ssd", 0.8, seed=1),  # the same prompt, another seed: not overwritten
            run("ssd", 0.5, prompt="a blue cube"),
            run("ssd", 0.3, prompt="a red mug"),
            run("ssd", 0.5, prompt="a red mug", seed=1),
        ]
    }
    final = SCRIPT["final_metrics"](data)
    assert len(final) == 5
    means = SCRIPT["shape_means"](final)
    assert abs(means["cube"] - (0.6 + 0.8 + 0.5) / 3) < 1e-12
    assert abs(means["mug"] - 0.4) < 1e-12
    assert SCRIPT["worst_shape"](final) == ("mug", means["mug"])
    assert abs(SCRIPT["mean_over"](final, "iou", final) - 2.7 / 5) < 1e-12
