"""The surface level measured from renders: known answers on analytic balls and Gaussians."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene.background import SolidBackground
from ssd3d.scene.cameras import surround_cameras
from ssd3d.scene.fields import RadianceField
from ssd3d.scene.gaussians import GaussianConfig, GaussianScene
from ssd3d.scene.radiance import SURFACE_LEVEL_CANDIDATES as VOXEL_CANDIDATES
from ssd3d.scene.radiance import RadianceScene
from ssd3d.scene.rays import generate_rays
from ssd3d.scene.render import RenderConfig
from ssd3d.scene.surface import peak_density, silhouette_level

CANDIDATES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def cone_grid(resolution=65):
    """Density 1 - r at distance r from the centre (0 beyond 1): the level L is the sphere
    of radius 1 - L."""
    lin = torch.linspace(-1, 1, resolution)
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")
    return (1 - torch.sqrt(x**2 + y**2 + z**2)).clamp(min=0)


def ball_silhouettes(cameras, radius):
    """Opacity [B, 1, H, W]: 1 where a pixel's ray passes within ``radius`` of the centre."""
    rays = generate_rays(cameras)
    miss = torch.linalg.cross(rays.origins, rays.directions, dim=-1).norm(dim=-1)
    return (miss < radius).float()[:, None]


@pytest.mark.parametrize("radius, level", [(0.4, 0.6), (0.6, 0.4), (0.79, 0.2)])
def test_the_level_whose_sphere_draws_the_rendered_ball_is_picked(radius, level):
    cameras = surround_cameras(48)
    opacity = ball_silhouettes(cameras, radius)
    assert silhouette_level(cone_grid(), opacity, cameras, CANDIDATES) == pytest.approx(level)


def test_peak_density_is_the_densest_point_on_each_ray():
    cameras = surround_cameras(16)
    rays = generate_rays(cameras)
    # The densest point of 1 - r on a ray is where it passes closest to the centre.
    miss = torch.linalg.cross(rays.origins, rays.directions, dim=-1).norm(dim=-1)
    expected = (1 - miss).clamp(min=0)
    torch.testing.assert_close(peak_density(cone_grid(129), cameras), expected, atol=0.02, rtol=0)


def test_a_scene_that_renders_nothing_gets_the_highest_level():
    cameras = surround_cameras(16)
    empty = torch.zeros(cameras.batch_size, 1, 16, 16)
    assert silhouette_level(cone_grid(), empty, cameras, CANDIDATES) == max(CANDIDATES)


def test_bad_candidates_and_renders_are_one_line_errors():
    cameras = surround_cameras(16)
    opacity = torch.zeros(cameras.batch_size, 1, 16, 16)
    with pytest.raises(SSD3DError, match="candidates"):
        silhouette_level(cone_grid(), opacity, cameras, (0.5, 0.0))
    with pytest.raises(SSD3DError, match="opacity"):
        silhouette_level(cone_grid(), opacity[:3], cameras, CANDIDATES)


def one_gaussian(opacity, sigma, **config):
    scene = GaussianScene(GaussianConfig(initial_count=1, backend="torch", **config))
    with torch.no_grad():
        scene.means.zero_()
        scene.log_scales.fill_(math.log(sigma))
        scene.opacity_logits.fill_(math.log(opacity / (1 - opacity)))
    return scene


@pytest.mark.parametrize("opacity, sigma", [(0.6, 0.3), (0.95, 0.2), (0.9, 0.05)])
def test_an_opaque_gaussian_measures_half_its_peak(opacity, sigma):
    # Its splat covers opacity o exp(-r^2 / 2 sigma^2) > 1/2 out to the radius where its
    # density o exp(-d^2 / 2 sigma^2) is 1/2, whatever o and sigma. At sigma 0.05 (1.4 px of
    # the 64 px views) the training renders' antialiasing dilation would widen the splat by a
    # quarter and the level measured would fall to 0.3: the measurement leaves it out.
    scene = one_gaussian(opacity, sigma)
    assert scene.measures_surface_level
    assert scene.surface_level == pytest.approx(0.5)


def thin_solid(mesh_threshold=None):
    """216 Gaussians of opacity 0.05 on a 0.1 lattice: a cube that renders opaque in the
    middle while its summed density stays under 0.4 everywhere."""
    lin = torch.linspace(-0.25, 0.25, 6)
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")
    points = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    config = GaussianConfig(
        initial_count=len(points), backend="torch", mesh_threshold=mesh_threshold
    )
    scene = GaussianScene(config)
    with torch.no_grad():
        scene.means.copy_(points)
        scene.log_scales.fill_(math.log(0.08))
        scene.opacity_logits.fill_(math.log(0.05 / 0.95))
    return scene


def test_a_thinned_solid_keeps_its_mesh_at_the_measured_level_and_loses_it_at_a_fixed_one():
    fixed = thin_solid(mesh_threshold=0.5)
    assert not fixed.measures_surface_level and fixed.surface_level == 0.5
    with pytest.raises(SSD3DError, match="empty"):
        fixed.export_mesh(48)
    measured = thin_solid()
    assert 0.2 < measured.surface_level < 0.4
    mesh = measured.export_mesh(48)
    assert mesh.is_watertight
    # The lattice spans +-0.25: the measured surface wraps it.
    half_width = mesh.bounds[1] - mesh.vertices.mean(axis=0)
    assert ((half_width > 0.2) & (half_width < 0.33)).all()


class SoftBall(RadianceField):
    """Density ``peak`` exp(-r^2 / 2 sigma^2), grey albedo."""

    def __init__(self, peak, sigma):
        super().__init__()
        self.peak, self.sigma = peak, sigma
        self.register_buffer("anchor", torch.zeros(1))  # a state_dict entry: the device

    def forward(self, points):
        r2 = (points * points).sum(-1)
        density = self.peak * torch.exp(-r2 / (2 * self.sigma**2))
        return density, torch.full_like(points, 0.5)


@pytest.mark.parametrize("sigma", [0.28, 0.14])
def test_a_soft_voxel_ball_measures_the_level_its_renders_draw(sigma):
    # A ray passing b from the centre has optical depth peak sqrt(2 pi) sigma exp(-b^2 / 2
    # sigma^2): it renders opacity 1/2 where that is ln 2, which is where its densest point
    # is ln 2 / (sqrt(2 pi) sigma), whatever the peak: 0.99 and 1.98 here. The fixed density
    # 2 draws the wide ball a third too small in volume.
    scene = RadianceScene(
        SoftBall(20.0, sigma), SolidBackground(), RenderConfig(num_samples=128), surface_level=None
    )
    assert scene.measures_surface_level
    expected = math.log(2) / (math.sqrt(2 * math.pi) * sigma)
    nearest = min(VOXEL_CANDIDATES, key=lambda c: abs(math.log(c / expected)))
    assert scene.surface_level == pytest.approx(nearest)
    assert RadianceScene(SoftBall(20.0, sigma), SolidBackground()).surface_level == 2.0


def test_a_run_measures_the_voxel_level_when_its_export_level_is_null():
    from ssd3d.pipeline.config import resolve_config
    from ssd3d.scene.registry import build_scene

    measured = build_scene(resolve_config("exact", {}, ["export.density_threshold=null"]))
    fixed = build_scene(resolve_config("exact", {}, []))
    assert measured.measures_surface_level and not fixed.measures_surface_level
    assert measured.surface_level in VOXEL_CANDIDATES and fixed.surface_level == 2.0
