"""Rays: pixel centres, the centre ray, and clipping to the scene cube."""

import math

import torch

from ssd3d.scene import generate_rays, intersect_cube, orbit_cameras, spherical_cameras


def _cams(n=6, size=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    elev = torch.rand(n, generator=g) * 160 - 80
    azim = torch.rand(n, generator=g) * 360 - 180
    dist = 2.0 + torch.rand(n, generator=g)
    fov = 40 + 30 * torch.rand(n, generator=g)
    return spherical_cameras(elev, azim, dist, fov, size, size)


def test_centre_pixel_ray_passes_through_the_origin():
    cams = _cams(size=9)  # odd size: pixel (4, 4) is the image centre
    rays = generate_rays(cams)
    o, d = rays.origins[:, 4, 4], rays.directions[:, 4, 4]
    closest = o - (o * d).sum(-1, keepdim=True) * d  # foot of the perpendicular from the origin
    torch.testing.assert_close(closest, torch.zeros_like(closest), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(6))


def test_pixel_centres_span_the_field_of_view():
    cams = orbit_cameras(1, elevation_deg=0, fov_deg=60, width=4, height=4)
    d = generate_rays(cams).directions[0]
    forward = -cams.c2w[0, :3, 2]
    # Top-row centre pixel sits 1.5 pixels above the image centre, focal = 2 / tan(30 deg).
    top_mid = (d[0, 1] + d[0, 2]) / 2
    top_mid = top_mid / top_mid.norm()
    angle = torch.rad2deg(torch.acos((top_mid * forward).sum()))
    expected = math.degrees(math.atan(1.5 * math.tan(math.radians(30)) / 2))
    assert abs(angle.item() - expected) < 1e-3
    assert top_mid[2] > 0  # row 0 is the top of the image (world up is +z)
    # Symmetry: left and right columns mirror through the forward axis.
    torch.testing.assert_close(
        (d[:, 0] * forward).sum(-1), (d[:, 3] * forward).sum(-1), atol=1e-6, rtol=0
    )


def test_cube_clipping_known_cases():
    origins = torch.tensor([[3.0, 0, 0], [3.0, 0.5, 0.5], [3.0, 2.0, 0], [0.0, 0, 0], [3.0, 0, 0]])
    directions = torch.tensor([[-1.0, 0, 0], [-1.0, 0, 0], [-1.0, 0, 0], [0.0, 0, 1], [1.0, 0, 0]])
    near, far, hit = intersect_cube(origins, directions)
    torch.testing.assert_close(near, torch.tensor([2.0, 2.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(far, torch.tensor([4.0, 4.0, 0.0, 1.0, 0.0]))
    assert hit.tolist() == [True, True, False, True, False]
    # A diagonal ray through the origin crosses the cube along its space diagonal.
    d = torch.ones(1, 3) / math.sqrt(3)
    near, far, _ = intersect_cube(-3 * d, d)
    torch.testing.assert_close(far - near, torch.tensor([2 * math.sqrt(3)]))


def test_all_frame_rays_enter_the_cube_from_outside():
    rays = generate_rays(_cams(size=16))
    assert (rays.near[rays.hit] > 0).all()  # cameras at distance >= 2 lie outside the cube
    points_in = rays.origins + rays.near[..., None] * rays.directions
    points_out = rays.origins + rays.far[..., None] * rays.directions
    for p in (points_in, points_out):
        assert (p[rays.hit].abs().amax(-1) - 1).abs().max() < 1e-5  # on the cube's surface
