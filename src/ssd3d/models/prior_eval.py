"""Does the toy prior draw what it is asked for? Its guided samples, read by the judge.

The judge (trained on ground-truth renders, sharing nothing with the prior) classifies
each sample. A prompt counts as recognised when the judge's most frequent top-1 answer
over its samples is that prompt: single samples may be textureless-shaded (grey, as a
third of the training renders are) and carry no colour, so one sample cannot decide it.
Shape and colour hit rates are kept apart to say which of the two the prior gets wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.toyworld.vocabulary import parse_prompt


@dataclass(frozen=True)
class PromptScore:
    """The judge's verdict on one prompt's samples."""

    prompt: str
    predicted: str | None  # the judge's most frequent top-1 prompt; None on a tie
    sample_accuracy: float  # fraction of samples whose top-1 is the prompt
    shape_accuracy: float  # ... whose top-1 has the prompt's shape
    colour_accuracy: float  # ... whose top-1 has the prompt's colour

    @property
    def recognised(self) -> bool:
        return self.predicted == self.prompt


def score_predictions(
    prompts: Sequence[str], predictions: Sequence[Sequence[str]]
) -> list[PromptScore]:
    """One score per prompt from the judge's top-1 prompt for each of its samples.

    A tie for the most frequent answer gives no prediction, so it is not recognised.
    """
    scores = []
    for prompt, answers in zip(prompts, predictions, strict=True):
        if not answers:
            raise ValueError(f"no samples for {prompt!r}")
        counts = Counter(answers)
        top = max(counts.values())
        leaders = [p for p, c in counts.items() if c == top]
        predicted = leaders[0] if len(leaders) == 1 else None
        want = parse_prompt(prompt)
        parsed = [parse_prompt(a) for a in answers]
        n = len(answers)
        scores.append(
            PromptScore(
                prompt=prompt,
                predicted=predicted,
                sample_accuracy=sum(a == prompt for a in answers) / n,
                shape_accuracy=sum(p.shape == want.shape for p in parsed) / n,
                colour_accuracy=sum(p.colour == want.colour for p in parsed) / n,
            )
        )
    return scores


def judge_samples(judge, samples: Tensor, prompts: Sequence[str]) -> list[PromptScore]:
    """samples [len(prompts) * n, 3, H, W] in [0, 1], prompt-major (as ``priors.toy.sample``
    returns them) -> one score per prompt."""
    n, rest = divmod(samples.shape[0], len(prompts))
    if n == 0 or rest:
        raise ValueError(f"{samples.shape[0]} samples do not split over {len(prompts)} prompts")
    prompt_probs, _ = judge.predict(samples)
    top1 = [judge.prompts[i] for i in prompt_probs.argmax(-1).tolist()]
    return score_predictions(prompts, [top1[i * n : (i + 1) * n] for i in range(len(prompts))])


def evaluate_prior(
    prior,
    judge,
    prompts: Sequence[str] | None = None,
    samples_per_prompt: int = 8,
    guidance_scale: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    chunk: int = 5,
    spacing: str = "leading",
) -> list[PromptScore]:
    """Sample ``samples_per_prompt`` guided images per prompt and score them with the judge.

    Sampled ``chunk`` prompts at a time (memory stays flat as the vocabulary grows); one
    generator seeded with ``seed`` for the whole run, so the result is deterministic.
    """
    from ssd3d.priors.toy import DEFAULT_SAMPLE_GUIDANCE, DEFAULT_SAMPLE_STEPS, sample

    prompts = list(prompts or prior.prompts)
    generator = torch.Generator().manual_seed(seed)
    scores: list[PromptScore] = []
    for start in range(0, len(prompts), chunk):
        part = prompts[start : start + chunk]
        images = sample(
            prior,
            part,
            samples_per_prompt,
            DEFAULT_SAMPLE_GUIDANCE if guidance_scale is None else guidance_scale,
            DEFAULT_SAMPLE_STEPS if steps is None else steps,
            generator,
            spacing,
        )
        scores += judge_samples(judge, images, part)
    return scores


def summarise(scores: Sequence[PromptScore]) -> dict[str, float]:
    """Fractions over prompts: recognised, and the mean sample / shape / colour accuracy."""
    n = len(scores)
    return {
        "prompts": n,
        "recognised": sum(s.recognised for s in scores) / n,
        "sample_accuracy": sum(s.sample_accuracy for s in scores) / n,
        "shape_accuracy": sum(s.shape_accuracy for s in scores) / n,
        "colour_accuracy": sum(s.colour_accuracy for s in scores) / n,
    }
