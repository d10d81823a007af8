"""The mug's cavity is invisible to flat (albedo) renders: the finding behind the mug's
oracle ceiling (docs/results/vocabulary.md). If ToyWorld ever makes the cavity visible, this
fails and the ceiling should be measured again."""

import math
import runpy
from pathlib import Path

import torch

from ssd3d.scene.cameras import orbit_cameras
from ssd3d.toyworld.shapes import MUG_BOTTOM, MUG_HALF_HEIGHT, MUG_RADIUS, MUG_WALL
from ssd3d.toyworld.truth import GroundTruthField

SCRIPT = runpy.run_path(str(Path(__file__).parents[2] / "benchmarks" / "mug_cavity.py"))


def test_the_filled_mug_fills_exactly_the_cavity():
    filled = SCRIPT["FilledMug"]("mug", "red")
    true = GroundTruthField("mug", "red")
    points = torch.rand(200_000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inside_filled, inside_true = filled.sdf(points) < 0, true.sdf(points) < 0
    assert bool((inside_true <= inside_filled).all())  # the true mug lies inside the filled one
    cavity_volume = math.pi * (MUG_RADIUS - MUG_WALL) ** 2 * (2 * MUG_HALF_HEIGHT - MUG_BOTTOM)
    extra = float((inside_filled & ~inside_true).float().mean()) * 8  # the cube's volume is 8
    assert abs(extra - cavity_volume) < 0.05 * cavity_volume


def test_flat_renders_of_the_filled_mug_equal_the_true_ones_and_lit_ones_do_not():
    cameras = orbit_cameras(4, width=16, height=16)
    true, filled = GroundTruthField("mug", "red"), SCRIPT["FilledMug"]("mug", "red")
    flat = SCRIPT["compare"](true, filled, cameras, "albedo")
    lit = SCRIPT["compare"](true, filled, cameras, "lambertian")
    assert flat["views_with_visible_difference"] == 0 and flat["silhouette_iou"] == 1
    assert lit["pixels_with_visible_difference"] > 0  # the inner wall's shading differs
