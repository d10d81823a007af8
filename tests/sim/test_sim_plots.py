"""The projection used to draw D-dimensional scenes, and what it hides."""

from __future__ import annotations

import math

import pytest
import torch

from ssd3d.sim.plots import off_plane_rms, projection
from ssd3d.sim.scenario import load_scenario


def test_2d_scenes_are_drawn_as_they_are() -> None:
    means = load_scenario("separated").prior().means
    assert torch.equal(projection(means), torch.eye(2, dtype=torch.float64))


def test_highdim_plane_is_the_plane_of_the_means() -> None:
    prior = load_scenario("highdim").prior()
    plane = projection(prior.means)
    assert plane.shape == (64, 2)
    torch.testing.assert_close(plane.T @ plane, torch.eye(2, dtype=torch.float64))
    # Every mean lies in the plane of coordinates 0 and 1, so projecting loses nothing of them.
    torch.testing.assert_close(prior.means @ plane @ plane.T, prior.means)
    # A sample's other 62 coordinates have std 0.5: RMS distance off the plane sqrt(62) / 2.
    assert off_plane_rms(prior, "left", plane) == pytest.approx(math.sqrt(62) * 0.5, rel=1e-12)


def test_projection_completes_a_rank_one_set_of_means() -> None:
    means = torch.zeros(3, 5, dtype=torch.float64)
    means[:, 3] = torch.tensor([-1.0, 0.0, 2.0])  # all on one axis
    plane = projection(means)
    torch.testing.assert_close(plane.T @ plane, torch.eye(2, dtype=torch.float64))
    assert abs(float(plane[3, 0])) == 1.0  # first direction: the means' axis
