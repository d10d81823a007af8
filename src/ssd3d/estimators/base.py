"""What an estimator sees, and what it promises back.

An estimator is a pure function of tensors: no model calls, no random numbers. The caller
draws ``t``, makes x_t the way the estimator's ``noising`` says (random noise, or DDIM
inversion of x0 with the prior), asks the prior for the branches the estimator ``needs``,
and gets back a gradient on ``x0`` with the shape of ``x0``. Every per-sample quantity (a
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
    # The eps with x_t = sqrt(a) x0 + sqrt(1 - a) eps: drawn (random noising) or implied by
    # the x_t that DDIM inversion reached (ISM, SDI).
    noise: Tensor
    t: Tensor  # [B] integer timesteps
    alpha_bar: Tensor  # [B] cumulative alphas at t
    eps_cond: Tensor  # eps_phi(x_t; y, t)
    eps_uncond: Tensor | None = None  # eps_phi(x_t; t), empty prompt
    eps_neg: Tensor | None = None  # eps_phi(x_t; y_neg, t), negative prompt
    # DDIM inversion only (``DDIMInversion.keep_start``): the start s of the inversion's last
    # step (into x_t), [B], and the inversion's prediction there, which made that step. For
    # ISM that is eps_phi(x_s; s) with the empty prompt: its target.
    t_start: Tensor | None = None
    eps_start: Tensor | None = None
    # eps of the particles' own noised distribution at the same x_t (VSD's variational
    # score: a LoRA of the prior trained on the renders, or a fitted closed form).
    eps_particle: Tensor | None = None

    def __post_init__(self) -> None:
        shape = self.x0.shape
        if self.x0.dim() < 1:
            raise ValueError("x0 must have a batch dimension [B, ...]")
        for name in ("noise", "eps_cond", "eps_uncond", "eps_neg", "eps_start", "eps_particle"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, x0 has {tuple(shape)}")
        for name in ("t", "alpha_bar", "t_start"):
            value = getattr(self, name)
            if value is not None and value.shape != (shape[0],):
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


@dataclass(frozen=True)
class RandomNoising:
    """``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` with eps ~ N(0, I) drawn by the caller.

    What SDS and every estimator before ISM and SDI use; costs no prior call.
    """

    kind: ClassVar[str] = "random"


@dataclass(frozen=True)
class DDIMInversion:
    """x_t by deterministic DDIM (eta = 0) run forward from x0, with the prior's predictions.

    Per sample, the path starts at x0 itself (alpha_bar = 1, predicted at timestep 0) and
    visits every multiple of ``spacing`` below ``end = max(t - interval, 0)``, then ``end``,
    then ``t`` when ``interval > 0``. One step from u to v (a_u, a_v its alpha_bars):

        e = eps_uncond + guidance_scale (eps_cond - eps_uncond)   at (x_u, u)
        x0_hat = (x_u - sqrt(1 - a_u) e) / sqrt(a_u)
        x_v = sqrt(a_v) x0_hat + sqrt(1 - a_v) e  (+ eta sigma z, z ~ N(0, I))

    with sigma^2 = (1 - a_u) / (1 - a_v) (1 - a_v / a_u), the DDPM posterior variance
    (threestudio's SDI adds it on top of the deterministic step). ``guidance_scale`` 0
    predicts with the empty prompt only, 1 with the prompt only, anything else with both
    (two network evaluations a step). The noise an estimator sees is the implied one,
    ``(x_t - sqrt(a_t) x0) / sqrt(1 - a_t)``; ``keep_start`` also hands it the last step's
    start s and eps_phi(x_s; s) (``NoisePredictions.t_start``, ``eps_start``).
    """

    spacing: int  # timesteps between the path's points (T / inversion steps)
    guidance_scale: float = 0.0  # CFG of the inversion's own predictions
    interval: int = 0  # > 0: the last step is a single one from s = t - interval to t
    eta: float = 0.0
    keep_start: bool = False

    kind: ClassVar[str] = "ddim_inversion"

    def __post_init__(self) -> None:
        if self.spacing < 1:
            raise ValueError(f"inversion spacing must be >= 1 timestep; got {self.spacing}")
        if self.interval < 0:
            raise ValueError(f"interval must be >= 0; got {self.interval}")
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0; got {self.eta}")

    def branches(self) -> frozenset[Branch]:
        """The conditioning rows each inversion step predicts with."""
        if self.guidance_scale == 0.0:
            return frozenset({"uncond"})
        if self.guidance_scale == 1.0:
            return frozenset({"cond"})
        return frozenset({"cond", "uncond"})

    def path(self, t: int) -> list[int]:
        """The timesteps visited after x0 on the way to t (the last one is t)."""
        end = max(t - self.interval, 0)
        points = list(range(self.spacing, end, self.spacing)) + [end]
        return points + [t] if self.interval > 0 else points


Noising = RandomNoising | DDIMInversion
RANDOM_NOISING = RandomNoising()


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
    # The timestep range its authors use, as GenerateConfig overrides (None: the default
    # schedule); shown by ``ssd3d estimators``. The pipeline's schedule draws t, never the
    # estimator, so a run gets it only when the user passes the overrides.
    recommended_timesteps: ClassVar[str | None] = None

    @property
    def noising(self) -> Noising:
        """How x_t is made from x0 for this estimator (``guidance.predictions`` runs it)."""
        return RANDOM_NOISING

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
