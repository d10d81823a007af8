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


def test_the_oracles_runs_are_their_own_row_not_the_estimators():
    final_metrics = SCRIPT["final_metrics"]

    def run(spec, iou, status="ok"):
        return {"spec": spec, "prompt": "a red cube", "status": status,
                "checkpoints": [{"iou": 0.0}, {"iou": iou}]}  # fmt: skip

    data = {
        "runs": [run("oracle", 0.9), run("sds guidance_scale=7.5", 0.6), run("ssd", 0.1, "failed")]
    }
    assert final_metrics(data) == {"a red cube": {"iou": 0.6}}
    assert final_metrics(data, oracle=True) == {"a red cube": {"iou": 0.9}}
