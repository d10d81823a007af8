"""Scoring the prior's samples with the judge: the vote, ties, and shape/colour hit rates."""

from __future__ import annotations

import pytest
import torch

from ssd3d.models.prior_eval import judge_samples, score_predictions, summarise


def test_majority_vote_decides_and_shape_colour_are_counted_apart():
    scores = score_predictions(
        ["a red cube", "a blue sphere"],
        [
            ["a red cube", "a red cube", "a green cube"],  # right by majority; one colour miss
            ["a blue cube", "a blue cube", "a blue sphere"],  # wrong shape wins the vote
        ],
    )
    cube, sphere = scores
    assert cube.recognised and cube.predicted == "a red cube"
    assert cube.sample_accuracy == pytest.approx(2 / 3)
    assert cube.shape_accuracy == 1.0 and cube.colour_accuracy == pytest.approx(2 / 3)
    assert not sphere.recognised and sphere.predicted == "a blue cube"
    assert sphere.shape_accuracy == pytest.approx(1 / 3) and sphere.colour_accuracy == 1.0
    summary = summarise(scores)
    assert summary["recognised"] == 0.5 and summary["prompts"] == 2


def test_a_tie_is_not_recognised():
    (score,) = score_predictions(["a red cube"], [["a red cube", "a green cube"]])
    assert score.predicted is None and not score.recognised


class FakeJudge:
    """Answers by the mean red level: a stand-in whose verdicts the test controls."""

    prompts = ["a red cube", "a green cube"]

    def predict(self, images):
        red = images[:, 0].mean(dim=(1, 2))
        logits = torch.stack([red, 1 - red], dim=-1)
        return logits.softmax(-1), torch.zeros(images.shape[0], 4)


def test_judge_samples_splits_prompt_major_batches():
    red, green = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    red[0], green[1] = 1, 1
    # Two samples per prompt: the red prompt gets red, red; the green one green, red.
    samples = torch.stack([red, red, green, red])
    first, second = judge_samples(FakeJudge(), samples, ["a red cube", "a green cube"])
    assert first.recognised and first.sample_accuracy == 1.0
    assert second.predicted is None and second.sample_accuracy == 0.5
    with pytest.raises(ValueError, match="do not split"):
        judge_samples(FakeJudge(), samples[:3], ["a red cube", "a green cube"])
