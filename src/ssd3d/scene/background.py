"""Backgrounds: the colour seen along a ray that leaves the scene cube without stopping.

Every background maps unit ray directions [..., 3] to rgb [..., 3] in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ssd3d.errors import SSD3DError

WHITE = (1.0, 1.0, 1.0)


def _check_colour(colour: tuple[float, ...], name: str) -> None:
    if len(colour) != 3 or not all(0.0 <= c <= 1.0 for c in colour):
        raise SSD3DError(f"{name} must be three numbers in [0, 1]; got {colour}")


class Background(nn.Module):
    """Interface: directions [..., 3] -> rgb [..., 3] in [0, 1]."""

    def forward(self, directions: Tensor) -> Tensor:
        raise NotImplementedError


class SolidBackground(Background):
    """One fixed colour in every direction (ToyWorld's renders use white). No parameters."""

    def __init__(self, colour: tuple[float, float, float] = WHITE) -> None:
        super().__init__()
        _check_colour(colour, "background colour")
        self.register_buffer("colour", torch.tensor(colour, dtype=torch.float32))

    def forward(self, directions: Tensor) -> Tensor:
        return self.colour.to(directions).expand(*directions.shape[:-1], 3)


# Real spherical-harmonic constants, bands 0-2 (Sloan, "Stupid SH tricks").
_SH_C0 = 0.5 / math.sqrt(math.pi)
_SH_C1 = math.sqrt(3.0 / (4 * math.pi))
_SH_C2 = (
    0.5 * math.sqrt(15.0 / math.pi),  # xy, yz, xz
    0.25 * math.sqrt(5.0 / math.pi),  # 3z^2 - 1
    0.25 * math.sqrt(15.0 / math.pi),  # x^2 - y^2
)


def sh_basis(directions: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics up to ``degree`` (0-2) of unit directions. [..., 3] -> [..., K]

    K = (degree + 1)^2.
    """
    x, y, z = directions.unbind(-1)
    terms = [torch.full_like(x, _SH_C0)]
    if degree >= 1:
        terms += [_SH_C1 * y, _SH_C1 * z, _SH_C1 * x]
    if degree >= 2:
        c, c20, c22 = _SH_C2
        terms += [c * x * y, c * y * z, c20 * (3 * z * z - 1), c * x * z, c22 * (x * x - y * y)]
    return torch.stack(terms, dim=-1)


class SphericalHarmonicsBackground(Background):
    """A learned, view-dependent background: sigmoid of low-order SH of the ray direction.

    Low order on purpose: a background that can only vary smoothly with direction cannot
    paint the object into the sky, which an MLP background (DreamFusion, threestudio's
    neural environment map) is known to do.
    """

    MAX_DEGREE = 2

    def __init__(
        self, degree: int = 2, init_colour: tuple[float, float, float] = (0.5, 0.5, 0.5)
    ) -> None:
        super().__init__()
        if not 0 <= degree <= self.MAX_DEGREE:
            raise SSD3DError(f"background SH degree must be 0..{self.MAX_DEGREE}; got {degree}")
        _check_colour(init_colour, "background init_colour")
        self.degree = degree
        colour = torch.tensor(init_colour, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        coefficients = torch.zeros((degree + 1) ** 2, 3)
        coefficients[0] = torch.logit(colour) / _SH_C0  # constant term reproduces init_colour
        self.coefficients = nn.Parameter(coefficients)  # [K, 3]

    def forward(self, directions: Tensor) -> Tensor:
        basis = sh_basis(directions, self.degree).to(self.coefficients.dtype)
        return torch.sigmoid(basis @ self.coefficients)


def build_background(kind: str, colour: tuple[float, float, float]) -> Background:
    """``"solid"`` (a fixed colour) or ``"learned"`` (low-order SH of the view direction)."""
    if kind == "solid":
        return SolidBackground(colour)
    return SphericalHarmonicsBackground(init_colour=colour)
