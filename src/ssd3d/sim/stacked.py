"""Several estimators side by side in one batch, so that one prior call serves them all."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators import Branch, Estimator, NoisePredictions


@dataclass(frozen=True)
class Stacked(Estimator):
    """Several estimators side by side: estimator i owns samples [i * block, (i + 1) * block).

    Needs the union of their branches, so one prior call serves them all.
    """

    estimators: tuple[Estimator, ...]
    block: int  # samples per estimator

    name = "stacked"

    def branches(self) -> frozenset[Branch]:
        return frozenset().union(*(e.branches() for e in self.estimators))

    def __call__(self, p: NoisePredictions) -> Tensor:
        if p.x0.shape[0] != self.block * len(self.estimators):
            raise ValueError(
                f"batch of {p.x0.shape[0]} is not {len(self.estimators)} blocks of {self.block}"
            )
        out = []
        for i, estimator in enumerate(self.estimators):
            part = slice(i * self.block, (i + 1) * self.block)
            sub = NoisePredictions(
                **{k: None if v is None else v[part] for k, v in vars(p).items()}
            )
            out.append(estimator(sub))
        return torch.cat(out)
