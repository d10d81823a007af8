"""An analytic diffusion prior: class-conditional Gaussian mixtures with an exact score.

Each class (prompt) is a mixture of K Gaussians in D dimensions with isotropic or diagonal
covariance; the unconditional model is the class-weighted mixture of all classes. Noising
a Gaussian keeps it Gaussian, so every noised density is known in closed form:

    x_t = sqrt(a) x0 + sqrt(1 - a) eps,  x0 ~ N(mu_k, diag(sigma_k^2))
    =>  x_t ~ N(sqrt(a) mu_k, diag(a sigma_k^2 + 1 - a))

and the exact epsilon-prediction is ``eps(x_t) = -sqrt(1 - a) grad log p_t(x_t)`` (Tweedie),
with the score a responsibility-weighted sum of the components' Gaussian scores. This is
the prior of the numerical simulations (``ssd3d simulate``): the estimators see it through
the same interface as Stable Diffusion.

Variable map (symbol in docs/method.md -> here):

| symbol | here | shape |
|---|---|---|
| alpha_bar[t] | ``a`` | [B] |
| mu_k, sigma_k | ``means``, ``stds`` (all classes' components stacked) | [M, D] |
| w_k (class y) | ``log_weights[y]``, -inf for other classes' components | [C + 1, M] |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import (
    NUM_TRAIN_TIMESTEPS,
    SD_BETA_END,
    SD_BETA_START,
    BetaSchedule,
    make_alphas_cumprod,
)

# The conditioning row of the empty prompt "" (the unconditional mixture).
UNCONDITIONAL = -1
_LOG_2PI = math.log(2 * math.pi)
# Smallest D for which isotropic mixtures take the matmul path (measured: at D = 2 the
# elementwise path is as fast, and matmuls wake the BLAS thread pool for nothing).
MATMUL_MIN_DIM = 16


@dataclass(frozen=True)
class MixtureClass:
    """One class (prompt): a mixture of K Gaussians in D dimensions.

    ``means`` [K, D]; ``stds`` [K] (isotropic) or [K, D] (diagonal), all > 0; ``weights``
    [K], all > 0, normalised on use (None: uniform). Lists are accepted for any of them.
    """

    name: str  # the prompt that selects this class
    means: Tensor | Sequence  # [K, D] component means
    stds: Tensor | Sequence | float  # [K] isotropic, [K, D] diagonal, or one float for all
    weights: Tensor | Sequence | None = None  # [K] positive mixture weights; None: uniform


def _as_tensor(value, field: str, where: str) -> Tensor:
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError) as e:
        raise SSD3DError(f"{where}: {field} must be numbers ({e})") from None
    if not torch.isfinite(out).all():
        raise SSD3DError(f"{where}: {field} must be finite")
    return out


def _check_class(c: MixtureClass) -> tuple[Tensor, Tensor, Tensor]:
    """Validated (means [K, D], stds [K, D], normalised weights [K]) in float64."""
    where = f"class '{c.name}'"
    means = _as_tensor(c.means, "means", where)
    if means.dim() != 2 or means.shape[0] == 0 or means.shape[1] == 0:
        raise SSD3DError(
            f"{where}: means must be a non-empty [K, D] list; got shape {tuple(means.shape)}"
        )
    k, d = means.shape
    stds = _as_tensor(c.stds, "stds", where)
    if stds.dim() == 0:
        stds = stds.expand(k)
    if stds.dim() == 1:
        if stds.shape[0] != k:
            raise SSD3DError(f"{where}: stds has {stds.shape[0]} entries for {k} components")
        stds = stds[:, None].expand(k, d)
    elif stds.shape != (k, d):
        raise SSD3DError(
            f"{where}: stds must have shape [K] = ({k},) or [K, D] = ({k}, {d}); "
            f"got {tuple(stds.shape)}"
        )
    if not (stds > 0).all():
        raise SSD3DError(f"{where}: stds must be > 0; got {stds.min().item():g}")
    if c.weights is None:
        weights = torch.ones(k, dtype=torch.float64)
    else:
        weights = _as_tensor(c.weights, "weights", where)
        if weights.shape != (k,):
            raise SSD3DError(
                f"{where}: weights must have one entry per component ({k}); got shape "
                f"{tuple(weights.shape)}"
            )
        if not (weights > 0).all():
            raise SSD3DError(f"{where}: weights must be > 0; got {weights.min().item():g}")
    return means, stds.contiguous(), weights / weights.sum()


class GaussianMixturePrior:
    """Class-conditional Gaussian mixtures as a ``DiffusionPrior`` with the exact eps.

    ``embed`` gives one long per prompt (the class index, ``-1`` for ``""``); ``encode``
    is the identity, so x0 lives in the mixture's D-dimensional space. All computation is
    in float64; outputs take the input's dtype.
    """

    def __init__(
        self,
        classes: Sequence[MixtureClass],
        class_weights: Sequence[float] | Tensor | None = None,
        beta_schedule: BetaSchedule = "scaled_linear",
        beta_start: float = SD_BETA_START,
        beta_end: float = SD_BETA_END,
        num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    ) -> None:
        if not classes:
            raise SSD3DError("classes: a Gaussian-mixture prior needs at least one class")
        names = [c.name for c in classes]
        for name in names:
            if not isinstance(name, str) or not name:
                raise SSD3DError(f"classes: every class needs a non-empty name; got {name!r}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SSD3DError(f"classes: duplicate class name(s) {', '.join(duplicates)}")
        parts = [_check_class(c) for c in classes]
        dims = {means.shape[1] for means, _, _ in parts}
        if len(dims) != 1:
            raise SSD3DError(
                f"classes: every class's means must have the same D; got {sorted(dims)}"
            )
        if class_weights is None:
            cw = torch.full((len(classes),), 1.0 / len(classes), dtype=torch.float64)
        else:
            cw = _as_tensor(class_weights, "class_weights", "prior")
            if cw.shape != (len(classes),):
                raise SSD3DError(
                    f"class_weights must have one entry per class ({len(classes)}); got shape "
                    f"{tuple(cw.shape)}"
                )
            if not (cw > 0).all():
                raise SSD3DError(f"class_weights must be > 0; got {cw.min().item():g}")
            cw = cw / cw.sum()
        if beta_schedule not in ("scaled_linear", "linear"):
            raise SSD3DError(
                f"beta_schedule must be 'scaled_linear' or 'linear'; got {beta_schedule!r}"
            )

        self.class_names: tuple[str, ...] = tuple(names)
        self.class_weights = cw  # [C], sums to 1
        self.means = torch.cat([m for m, _, _ in parts])  # [M, D]
        self.stds = torch.cat([s for _, s, _ in parts])  # [M, D]
        self.component_class = torch.cat(
            [torch.full((m.shape[0],), i, dtype=torch.long) for i, (m, _, _) in enumerate(parts)]
        )  # [M] which class each component belongs to
        # Row y < C: log w_k of class y's components, -inf elsewhere; row C: unconditional.
        log_weights = torch.full(
            (len(classes) + 1, self.means.shape[0]), -math.inf, dtype=torch.float64
        )
        for i, (_, _, w) in enumerate(parts):
            log_weights[i, self.component_class == i] = w.log()
        within = torch.cat([w for _, _, w in parts])
        log_weights[-1] = (cw[self.component_class] * within).log()
        self.log_weights = log_weights  # [C + 1, M]
        # Every component isotropic: variances are [B, M], not [B, M, D]. With D large too,
        # distances go by matmul and nothing is [B, M, D]; in a few dimensions the
        # elementwise layout costs as little and wakes no BLAS threads.
        self.isotropic = bool((self.stds == self.stds[:, :1]).all())
        self.use_matmul = self.isotropic and self.dim >= MATMUL_MIN_DIM
        self.alphas_cumprod = make_alphas_cumprod(
            num_train_timesteps, beta_start, beta_end, beta_schedule
        )  # [T] float64

    # ------------------------------------------------------------------ DiffusionPrior

    @property
    def dim(self) -> int:
        """D, the dimension of x0."""
        return self.means.shape[1]

    def embed(self, prompts: Sequence[str]) -> Tensor:
        """One class index per prompt, [N] long; ``""`` -> -1 (unconditional)."""
        rows = []
        for p in prompts:
            if p == "":
                rows.append(UNCONDITIONAL)
            elif p in self.class_names:
                rows.append(self.class_names.index(p))
            else:
                raise SSD3DError(
                    f"prompt {p!r} is not a class of this mixture (classes: "
                    f"{', '.join(self.class_names)}; '' for unconditional)"
                )
        return torch.tensor(rows, dtype=torch.long)

    def encode(self, images: Tensor) -> Tensor:
        """Identity: x0 is the point itself. [B, D] -> [B, D]"""
        return images

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The exact eps = -sqrt(1 - a) grad log p_t(x_t | y). x_t [B, D], t [B], cond [B] -> [B, D]

        Each sample has its own timestep and class (or -1 for the unconditional mixture).
        """
        a = self._alpha_bar(t, x_t)
        x = x_t.to(torch.float64)
        _, eps = self._noised(x, a, self._rows(cond, x), want_eps=True)
        return eps.to(x_t.dtype)

    # ------------------------------------------------------------------ densities, samples

    def noised_log_prob(self, x_t: Tensor, t: Tensor | int, y: Tensor | str | int | None) -> Tensor:
        """log p_t(x_t | y) of the noised mixture at integer timestep(s) t. x_t [B, D] -> [B]

        ``y``: a class name or index, None or "" for the unconditional mixture, or rows [B]
        as ``embed`` returns them.
        """
        a = self._alpha_bar(t, x_t)
        x = x_t.to(torch.float64)
        log_p, _ = self._noised(x, a, self._rows(self._class_rows(y, x.shape[0]), x), False)
        return log_p.to(x_t.dtype)

    def log_prob(self, x: Tensor, y: Tensor | str | int | None = None) -> Tensor:
        """log p(x | y) of the clean mixture (None: unconditional). x [B, D] -> [B]"""
        xd = x.to(torch.float64)
        self._check_points(xd)
        clean = torch.ones(xd.shape[0], dtype=torch.float64)  # alpha_bar = 1: no noise
        log_p, _ = self._noised(xd, clean, self._rows(self._class_rows(y, xd.shape[0]), xd), False)
        return log_p.to(x.dtype)

    def sample(
        self, y: str | int | None, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """n draws from p(x | y) (None or "": unconditional), float64. -> [n, D]"""
        row = int(self._class_rows(y, 1)[0])
        probs = self.log_weights[row].exp()
        k = torch.multinomial(probs, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k] * noise

    def components(self, y: str | int) -> tuple[Tensor, Tensor, Tensor]:
        """Class y's (means [K, D], stds [K, D], weights [K]), weights summing to 1."""
        row = int(self._class_rows(y, 1)[0])
        if row == UNCONDITIONAL:
            raise SSD3DError("components: give a class, not the unconditional mixture")
        mask = self.component_class == row
        return self.means[mask], self.stds[mask], self.log_weights[row, mask].exp()

    def class_index(self, y: str | int) -> int:
        """The row ``embed`` gives class y (a name or an index)."""
        return int(self._class_rows(y, 1)[0])

    # ------------------------------------------------------------------ helpers

    def _alpha_bar(self, t: Tensor | int, x_t: Tensor) -> Tensor:
        self._check_points(x_t)
        t = torch.as_tensor(t, dtype=torch.long, device=self.alphas_cumprod.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must be [B] = ({x_t.shape[0]},); got {tuple(t.shape)}")
        return self.alphas_cumprod[t]

    def _check_points(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"points must be [B, D] with D = {self.dim}; got {tuple(x.shape)}")

    def _noised(
        self, x: Tensor, a: Tensor, log_w: Tensor, want_eps: bool
    ) -> tuple[Tensor, Tensor | None]:
        """One pass over the components of the noised mixture at x [B, D], alpha_bar a [B].

        Returns log p_t(x) [B] (log-sum-exp of log w_k + log N_k) and, with ``want_eps``,
        eps = -sqrt(1 - a) grad log p_t(x) = sqrt(1 - a) sum_k r_k (x - sqrt(a) mu_k) / v_k
        [B, D], r_k the posterior over components. Three layouts of the same formula:
        isotropic with large D (matmuls, nothing [B, M, D]), isotropic with small D, and
        diagonal (variances [B, M, D]).
        """
        sa, s1a = a.sqrt()[:, None], (1 - a).sqrt()[:, None]  # [B, 1]
        diff = None
        if self.use_matmul or self.isotropic:
            var = a[:, None] * self.stds[:, 0].square() + (1 - a)[:, None]  # [B, M]
            if self.use_matmul:
                sq = (
                    x.square().sum(1, keepdim=True)
                    - 2 * sa * (x @ self.means.T)
                    + a[:, None] * self.means.square().sum(1)
                ).clamp_min(0)  # ||x - sqrt(a) mu_k||^2 by expansion
            else:
                diff = x[:, None, :] - sa[:, :, None] * self.means  # [B, M, D]
                sq = diff.square().sum(-1)
            log_n = -0.5 * (sq / var + self.dim * (var.log() + _LOG_2PI))
        else:
            var = a[:, None, None] * self.stds.square() + (1 - a)[:, None, None]  # [B, M, D]
            diff = x[:, None, :] - sa[:, :, None] * self.means
            log_n = -0.5 * (diff.square() / var + var.log() + _LOG_2PI).sum(-1)
        log_joint = log_w + log_n  # [B, M]
        log_p = torch.logsumexp(log_joint, dim=-1)
        if not want_eps:
            return log_p, None
        resp = (log_joint - log_p[:, None]).exp()  # [B, M] posterior over components
        if diff is None:  # matmul layout
            q = s1a * resp / var
            return log_p, x * q.sum(1, keepdim=True) - (sa * q) @ self.means
        if var.dim() == 2:  # isotropic, small D
            return log_p, ((s1a * resp / var)[..., None] * diff).sum(1)
        return log_p, ((s1a * resp)[..., None] * diff / var).sum(1)

    def _class_rows(self, y: Tensor | str | int | None, batch: int) -> Tensor:
        """Class argument -> rows [batch] (-1 unconditional)."""
        if isinstance(y, Tensor):
            return y
        if y is None or y == "":
            return torch.full((batch,), UNCONDITIONAL, dtype=torch.long)
        if isinstance(y, str):
            return self.embed([y]).expand(batch)
        if not -1 <= int(y) < len(self.class_names):
            raise SSD3DError(
                f"class index {y} out of range (0..{len(self.class_names) - 1}, or -1)"
            )
        return torch.full((batch,), int(y), dtype=torch.long)

    def _rows(self, cond: Tensor, x: Tensor) -> Tensor:
        """Per-sample log mixture weights, [B, M]; row -1 is the unconditional mixture."""
        cond = torch.as_tensor(cond, dtype=torch.long).reshape(-1)
        if cond.shape[0] != x.shape[0]:
            raise ValueError(f"cond must be [B] = ({x.shape[0]},); got {tuple(cond.shape)}")
        if ((cond < UNCONDITIONAL) | (cond >= len(self.class_names))).any():
            raise ValueError(f"cond rows must be in [-1, {len(self.class_names)})")
        index = torch.where(cond < 0, len(self.class_names), cond)
        return self.log_weights[index]
