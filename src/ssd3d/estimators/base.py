"""What an estimator sees, and what it promises back.

An estimator is a pure function of tensors: no model calls, no random numbers. The caller
draws ``t`` and ``noise``, asks the prior for the branches the estimator ``needs``, and gets
back a gradient on ``x0`` with the shape of ``x0``. Every per-sample quantity (a
coefficient, a norm, a branch on ``t``) is computed per sample, never over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from torch import Tensor

# "particle" is not a prior branch: it is the particles' own score (VSD), predicted by a
# trainable or fitted model beside the prior, which guidance does not call.
Branch = Literal["cond", "uncond", "neg", "particle"]

# Timesteps of every prior in ssd3d (diffusers' convention: t in [0, 1000)).
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class NoisePredictions:
    """Everything an estimator may look at, for one batch. Shapes: x0-like tensors [B, ...]."""

    x0: Tensor  # clean sample in the prior's space (points, pixels or latents)
    noise: Tensor  # the eps that was added to x0
    t: Tensor  # [B] integer timesteps
    alpha_bar: Tensor  # [B] cumulative alphas at t
    eps_cond: Tensor  # eps_phi(x_t; y, t)
    eps_uncond: Tensor | None = None  # eps_phi(x_t; t), empty prompt
    eps_neg: Tensor | None = None  # eps_phi(x_t; y_neg, t), negative prompt
    # eps of the particles' own noised distribution at the same x_t (VSD's variational
    # score: a LoRA of the prior trained on the renders, or a fitted closed form).
    eps_particle: Tensor | None = None

    def __post_init__(self) -> None:
        shape = self.x0.shape
        if self.x0.dim() < 1:
            raise ValueError("x0 must have a batch dimension [B, ...]")
        for name in ("noise", "eps_cond", "eps_uncond", "eps_neg", "eps_particle"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, x0 has {tuple(shape)}")
        for name in ("t", "alpha_bar"):
            value = getattr(self, name)
            if value.shape != (shape[0],):
                raise ValueError(
                    f"{name} must have shape [B] = ({shape[0]},), got {tuple(value.shape)}"
                )

    def require(self, branch: Branch) -> Tensor:
        value = {
            "cond": self.eps_cond,
            "uncond": self.eps_uncond,
            "neg": self.eps_neg,
            "particle": self.eps_particle,
        }[branch]
        if value is None:
            raise ValueError(
                f"this estimator needs the '{branch}' prediction, which was not computed"
            )
        return value


class EstimatorState(Protocol):
    """What a stateful estimator's companion offers the training loop (control_variate.py)."""

    def update(self, p: NoisePredictions) -> None: ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


class Estimator:
    """Base class: subclasses are frozen dataclasses with a ``needs`` class attribute.

    An estimator stays a pure function of its inputs. One that estimates something from
    earlier steps (SSD's running coefficient) keeps it in a companion object made by
    ``make_state()`` and passed back as ``state=``; the loop calls ``state.update(preds)``
    after each gradient. Stateless estimators return None and ignore ``state``.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[Branch]] = frozenset({"cond", "uncond"})

    def __call__(
        self, p: NoisePredictions, state: EstimatorState | None = None
    ) -> Tensor:  # gradient on x0, same shape
        raise NotImplementedError

    def make_state(self) -> EstimatorState | None:
        """A fresh companion for one run, or None when the estimator keeps no state."""
        return None

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        """The predictions this instance needs; given the batch's timesteps t [B], only
        those that some sample of this batch uses (an instance may need fewer than its
        class, and a batch fewer than its instance)."""
        return self.needs


def check_guidance_scale(value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"guidance_scale must be >= 0; got {value}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_timestep(name: str, value: int, num_train_timesteps: int) -> None:
    if not 0 <= value < num_train_timesteps:
        raise ValueError(f"{name} must be in [0, {num_train_timesteps}); got {value}")
