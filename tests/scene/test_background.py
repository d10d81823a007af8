"""Backgrounds: solid colour, and the learned spherical-harmonics background."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import SolidBackground, SphericalHarmonicsBackground, sh_basis


def _fibonacci_sphere(n):
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z**2).sqrt()
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def test_sh_basis_is_orthonormal_on_the_sphere():
    d = _fibonacci_sphere(5000)
    y = sh_basis(d, 2)  # [N, 9]
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]  # integral of Y_i Y_j over the sphere
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=1e-3, rtol=0)


def test_solid_background_and_sh_initial_colour():
    d = torch.nn.functional.normalize(torch.randn(4, 5, 3), dim=-1)
    torch.testing.assert_close(
        SolidBackground((0.1, 0.2, 0.3))(d)[2, 3], torch.tensor([0.1, 0.2, 0.3])
    )
    assert len(list(SolidBackground().parameters())) == 0
    bg = SphericalHarmonicsBackground(degree=2, init_colour=(0.9, 0.5, 0.2))
    out = bg(d)
    assert out.shape == (4, 5, 3)
    torch.testing.assert_close(out, torch.tensor([0.9, 0.5, 0.2]).expand(4, 5, 3))


def test_sh_background_learns_a_view_dependent_colour():
    # Target: white looking up (+z), black looking down; a few Adam steps get the sign right.
    bg = SphericalHarmonicsBackground(degree=1)
    opt = torch.optim.Adam(bg.parameters(), lr=0.3)
    d = _fibonacci_sphere(200).float()
    target = (d[:, 2:] > 0).float().expand(-1, 3)
    for _ in range(40):
        opt.zero_grad()
        ((bg(d) - target) ** 2).mean().backward()
        opt.step()
    up, down = bg(torch.tensor([[0.0, 0, 1], [0, 0, -1]]))
    assert (up > 0.85).all() and (down < 0.15).all()


def test_bad_background_arguments():
    with pytest.raises(SSD3DError, match="degree"):
        SphericalHarmonicsBackground(degree=3)
    with pytest.raises(SSD3DError, match="colour"):
        SolidBackground((1.0, 2.0, 0.0))
