"""Several estimators side by side in one batch, so that one prior call serves them all."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators import Branch, Estimator, EstimatorState, NoisePredictions, Noising
from ssd3d.priors.variational import gaussian_eps


def block_of(p: NoisePredictions, part: slice) -> NoisePredictions:
    return NoisePredictions(**{k: None if v is None else v[part] for k, v in vars(p).items()})


class StackedState:
    """The companions of a Stacked estimator's members (None for stateless members)."""

    def __init__(self, states: list[EstimatorState | None], block: int):
        self.states, self.block = states, block

    def update(self, p: NoisePredictions) -> None:
        for i, state in enumerate(self.states):
            if state is not None:
                state.update(block_of(p, slice(i * self.block, (i + 1) * self.block)))

    def state_dict(self) -> dict[str, Tensor]:
        out = {}
        for i, state in enumerate(self.states):
            if state is not None:
                out.update({f"{i}.{k}": v for k, v in state.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for i, member in enumerate(self.states):
            if member is not None:
                prefix = f"{i}."
                member.load_state_dict(
                    {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                )


@dataclass(frozen=True)
class Stacked(Estimator):
    """Several estimators side by side: estimator i owns samples [i * block, (i + 1) * block).

    Needs the union of their branches, so one prior call serves them all. The members must
    make x_t the same way (``noising``); ``noising_groups`` splits a list that does not.
    """

    estimators: tuple[Estimator, ...]
    block: int  # samples per estimator

    name = "stacked"

    def _part(self, i: int) -> slice:
        return slice(i * self.block, (i + 1) * self.block)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        if t is None:
            return frozenset().union(*(e.branches() for e in self.estimators))
        return frozenset().union(
            *(e.branches(t[self._part(i)]) for i, e in enumerate(self.estimators))
        )

    @property
    def noising(self) -> Noising:
        kinds = {e.noising for e in self.estimators}
        if len(kinds) != 1:
            raise ValueError("stacked estimators make x_t differently: split by noising_groups")
        return kinds.pop()

    def make_state(self) -> StackedState | None:
        states = [e.make_state() for e in self.estimators]
        return None if all(s is None for s in states) else StackedState(states, self.block)

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        if p.x0.shape[0] != self.block * len(self.estimators):
            raise ValueError(
                f"batch of {p.x0.shape[0]} is not {len(self.estimators)} blocks of {self.block}"
            )
        states = state.states if isinstance(state, StackedState) else [None] * len(self.estimators)
        out = []
        for i, estimator in enumerate(self.estimators):
            out.append(estimator(block_of(p, self._part(i)), state=states[i]))
        return torch.cat(out)


def noising_groups(estimators: tuple[Estimator, ...]) -> list[list[int]]:
    """The members' indices grouped by noising step, in order of first appearance: each
    group is one ``Stacked`` and one noising step (random noising: every estimator before
    ISM and SDI, so usually one group)."""
    groups: dict[Noising, list[int]] = {}
    for i, e in enumerate(estimators):
        groups.setdefault(e.noising, []).append(i)
    return list(groups.values())


def with_particle_scores(
    p: NoisePredictions, particles: Sequence[Tensor], alphas_cumprod: Tensor
) -> NoisePredictions:
    """``p`` with VSD's ``eps_particle``: block i (``len(p.x0) / len(particles)`` samples)
    gets the exact eps of a Gaussian fitted to ``particles[i]`` [N, D], that estimator's
    particles. With an exact prior there is no network to adapt: this closed form stands in
    for ProlificDreamer's LoRA (``ssd3d.priors.variational.FittedGaussianScore`` at
    momentum 1, the particles of this very step)."""
    block = p.x0.shape[0] // len(particles)
    alpha_bar = alphas_cumprod[p.t]
    parts = []
    for i, x in enumerate(particles):
        part = slice(i * block, (i + 1) * block)
        x = x.to(torch.float64)
        mean, second = x.mean(dim=0), (x * x).mean(dim=0)
        parts.append(gaussian_eps(p.x0[part], p.noise[part], alpha_bar[part], mean, second))
    return dataclasses.replace(p, eps_particle=torch.cat(parts))
