"""The soft mesh rasteriser against a per-pixel reference and known answers; the mesh scene."""

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import ConvexHull

from ssd3d.scene import SolidBackground, fixed_shading, spherical_cameras
from ssd3d.scene.mesh import (
    MeshConfig,
    MeshScene,
    dihedral_angles,
    parity_inside,
    uniform_laplacian,
    vertex_neighbours,
)
from ssd3d.scene.raster import NEAR_PLANE, face_neighbours, rasterize, vertex_normals
from ssd3d.scene.rays import generate_rays, project_points
from ssd3d.scene.scene import VolumeScene

SIGMA = 0.3


def cameras(width=12, height=10, elevations=(20.0, -35.0), azimuths=(30.0, -120.0)):
    e = torch.tensor(elevations)
    a = torch.tensor(azimuths)
    return spherical_cameras(e, a, torch.full_like(e, 2.5), torch.full_like(e, 40.0), width, height)


def box(size=0.8):
    mesh = trimesh.creation.box((size, size, size))
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)


def render(vertices, faces, cams, albedo=None, **kw):
    if albedo is None:
        albedo = torch.full_like(vertices, 0.5)
    return rasterize(
        vertices, faces, albedo, cams, SolidBackground(), fixed_shading("albedo", cams), **kw
    )


def reference_opacity(vertices, faces, cams, sigma):
    """Per pixel, face by face: the most any front face covers the pixel centre, hard inside
    across edges shared with another front face and soft (sigmoid of the distance to the
    nearest outline segment) across the others."""
    _, screen, _ = project_points(vertices, cams, NEAR_PLANE)
    b, h, w = cams.batch_size, cams.height, cams.width
    jj, ii = torch.meshgrid(torch.arange(w) + 0.5, torch.arange(h) + 0.5, indexing="xy")
    p = torch.stack([jj, ii], -1).reshape(-1, 2)  # [HW, 2]
    edges = {}
    for f, face in enumerate(faces.tolist()):
        for k in range(3):
            edges.setdefault(frozenset((face[k], face[(k + 1) % 3])), []).append(f)
    out = []
    for view in range(b):
        tri = screen[view][faces]
        signed = [
            float(
                (t[1, 0] - t[0, 0]) * (t[2, 1] - t[0, 1])
                - (t[2, 0] - t[0, 0]) * (t[1, 1] - t[0, 1])
            )
            for t in tri.detach()
        ]
        front = [s < 0 for s in signed]  # clockwise on screen: v points down
        best = torch.zeros(h * w)
        for f, face in enumerate(faces.tolist()):
            if not front[f]:
                continue
            t = tri[f]
            ins, seg, outline = [], [], []
            for k in range(3):
                a, c = t[k], t[(k + 1) % 3]
                e = c - a
                rel = p - a
                ins.append(e[0] * rel[:, 1] - e[1] * rel[:, 0])
                s = ((rel @ e) / (e @ e)).clamp(0, 1)
                seg.append((rel - s[:, None] * e).norm(dim=-1))
                shared = edges[frozenset((face[k], face[(k + 1) % 3]))]
                outline.append(not any(g != f and front[g] for g in shared))
            inside = torch.stack(ins).le(0).all(0)  # clockwise: every edge function <= 0
            seg = torch.stack(seg)
            inf = torch.full_like(seg[0], float("inf"))
            to_outline = torch.stack([seg[k] if outline[k] else inf for k in range(3)]).amin(0)
            to_internal = torch.stack([inf if outline[k] else seg[k] for k in range(3)]).amin(0)
            cover = torch.where(
                inside,
                torch.sigmoid(to_outline.clamp(max=1e4) / sigma),
                torch.where(
                    to_outline <= to_internal,
                    torch.sigmoid(-to_outline.clamp(max=1e4) / sigma),
                    0.0,
                ),
            )
            best = torch.maximum(best, cover)
        out.append(best.reshape(h, w))
    return torch.stack(out)[:, None]


def test_opacity_and_gradients_match_the_per_pixel_reference():
    g = torch.Generator().manual_seed(0)
    vertices, faces = box(0.7)
    vertices = vertices + 0.05 * torch.randn(vertices.shape, generator=g)
    cams = cameras()
    v1 = vertices.clone().requires_grad_(True)
    v2 = vertices.clone().requires_grad_(True)
    got = render(v1, faces, cams, sigma_px=SIGMA).opacity
    want = reference_opacity(v2, faces, cams, SIGMA)
    torch.testing.assert_close(got, want, atol=1 / 255, rtol=0)  # coverage under 1/255 is skipped
    weights = torch.randn(want.shape, generator=g)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert torch.isfinite(v1.grad).all() and v1.grad.abs().sum() > 0
    torch.testing.assert_close(v1.grad, v2.grad, atol=0.05 * float(v2.grad.abs().max()), rtol=0)


def test_a_closed_box_renders_its_projected_hull_without_seams():
    vertices, faces = box(0.8)
    cams = cameras(width=64, height=64)
    out = render(vertices, faces, cams, sigma_px=0.15)
    _, screen, _ = project_points(vertices, cams, NEAR_PLANE)
    for view in range(cams.batch_size):
        hull = ConvexHull(screen[view].numpy())
        assert float(out.opacity[view].sum()) == pytest.approx(hull.volume, rel=0.01)
        # Pixel centres 1.5 px or more inside the hull are fully covered (no seam along the
        # faces' shared edges); a pixel or more outside, not at all.
        jj, ii = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
        centres = np.stack([jj.ravel(), ii.ravel()], 1)
        eq = hull.equations  # a x + b y + c <= 0 inside, (a, b) unit
        signed = (centres @ eq[:, :2].T + eq[:, 2]).max(axis=1).reshape(64, 64)
        opacity = out.opacity[view, 0].numpy()
        assert opacity[signed < -1.5].min() > 0.999
        assert opacity[signed > 1].max() < 1e-3


def test_faces_turned_away_are_culled_and_depth_is_the_nearest_face():
    vertices, faces = box(0.8)
    cams = cameras()
    inside_out = render(vertices, faces[:, [0, 2, 1]], cams)
    outside = render(vertices, faces, cams)
    # Seen from inside out, only the far faces are front-facing: same outline (up to which
    # face's own outline segment a pixel near a corner measures to), farther depth.
    assert float(inside_out.opacity.sum()) == pytest.approx(float(outside.opacity.sum()), rel=0.01)
    assert (inside_out.opacity - outside.opacity).abs().max() < 0.15
    covered = outside.opacity > 0.99
    assert (inside_out.depth[covered] > outside.depth[covered] + 0.1).all()
    # Depth on the box's near face against the ray's distance to the plane x = 0.4 etc.
    distance = outside.depth / outside.opacity.clamp(min=1e-6)
    assert distance[covered].min() > 2.5 - 0.4 * 3**0.5 - 1e-3


def test_face_neighbours_of_a_closed_box_are_mutual():
    _, faces = box()
    nb = face_neighbours(faces)
    assert (nb >= 0).all()
    for f in range(len(faces)):
        for k in range(3):
            g = int(nb[f, k])
            assert g != f and f in nb[g].tolist()
            edge = {int(faces[f, k]), int(faces[f, (k + 1) % 3])}
            assert edge <= set(faces[g].tolist())


def test_parity_occupancy_of_a_sphere_mesh_is_its_inside():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.tensor(sphere.faces)
    g = torch.Generator().manual_seed(1)
    points = (torch.rand(20000, 3, generator=g) - 0.5) * 1.4
    r = points.norm(dim=-1)
    inside = parity_inside(vertices, faces, points)
    # The icosphere's faces lie within 0.5 (1 - cos) < 0.01 of the sphere.
    clear = (r - 0.5).abs() > 0.01
    assert torch.equal(inside[clear], (r < 0.5)[clear])
    # Grid points line up with vertices and edges of a box: the jitter keeps parity exact.
    vertices, faces = box(0.5)
    axis = torch.linspace(-0.5, 0.5, 21)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = parity_inside(vertices, faces, grid)
    clear = (grid.abs().amax(-1) - 0.25).abs() > 1e-3
    assert torch.equal(inside[clear], (grid.abs().amax(-1) < 0.25)[clear])


def test_uniform_laplacian_is_a_vertex_minus_its_neighbours_mean():
    vertices, faces = box(0.8)
    source, target = vertex_neighbours(faces, len(vertices))
    lap = uniform_laplacian(vertices, source, target)
    for i in range(len(vertices)):
        neighbours = {int(t) for s, t in zip(source, target, strict=True) if int(s) == i}
        expected = vertices[i] - vertices[sorted(neighbours)].mean(0)
        torch.testing.assert_close(lap[i], expected)


def test_dihedral_angles_know_a_tetrahedron_and_a_cube_sharp_or_subdivided():
    # A regular tetrahedron's outward normals meet at arccos(-1/3) on each of its 6 edges.
    corners = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float)
    faces = torch.as_tensor(trimesh.convex.convex_hull(corners.numpy()).faces)
    angles, lengths = dihedral_angles(corners, faces, face_neighbours(faces))
    torch.testing.assert_close(angles, torch.full((6,), float(np.arccos(-1 / 3))))
    torch.testing.assert_close(lengths, torch.full((6,), 8**0.5))
    # A cube of 12 triangles: 12 edges at 90 degrees, 6 face diagonals at 0 (up to the
    # softening); subdivided, its normal's total variation (angle x length) is the same.
    vertices, faces = box(0.8)
    angles, lengths = dihedral_angles(vertices, faces, face_neighbours(faces))
    assert angles.shape == (18,)
    assert int((angles - np.pi / 2).abs().lt(1e-5).sum()) == 12
    assert float(angles.sort().values[:6].max()) < 1e-3
    fine = trimesh.creation.box(extents=(0.8, 0.8, 0.8)).subdivide().subdivide()
    vertices, faces = torch.as_tensor(fine.vertices).float(), torch.as_tensor(fine.faces)
    angles, lengths = dihedral_angles(vertices, faces, face_neighbours(faces))
    total = float((angles * lengths).sum())
    assert total == pytest.approx(12 * 0.8 * np.pi / 2, rel=1e-3)
    # A dent costs variation: pushing the top face's centre in raises the total.
    top_centre = (vertices - torch.tensor([0.0, 0.0, 0.4])).norm(dim=-1).argmin()
    assert float(vertices[top_centre, 2]) == pytest.approx(0.4)
    vertices[top_centre, 2] -= 0.1
    angles, lengths = dihedral_angles(vertices, faces, face_neighbours(faces))
    dented = float((angles * lengths).sum())
    assert dented > total + 0.05
    # The mesh scene's term is that sum, at its weight; off, it is not computed.
    scene = MeshScene(
        vertices, faces, torch.full_like(vertices, 0.5), MeshConfig(smoothing=0, dihedral=2)
    )
    weight, value = scene.scene_losses()["mesh_dihedral"]
    assert weight == 2 and float(value.detach()) == pytest.approx(dented)
    assert (
        "mesh_dihedral"
        not in MeshScene(vertices, faces, torch.full_like(vertices, 0.5)).scene_losses()
    )


def test_mesh_scene_fits_a_target_outline_and_exports_itself():
    vertices, faces = box(0.6)
    cams = cameras(width=24, height=24)
    target = (
        MeshScene(vertices, faces, torch.full_like(vertices, 0.5)).render(cams).opacity.detach()
    )
    # The vertices themselves, no surface prior: on a box of 8 vertices the Laplacian pulls
    # every corner in, and the smoothing damps the shrink (no smooth field on so few).
    plain = MeshConfig(laplacian=0, smoothing=0, lr_vertices=1e-3)
    scene = MeshScene(vertices * 1.15, faces, torch.full_like(vertices, 0.5), plain)
    assert isinstance(scene, VolumeScene)
    opt = torch.optim.Adam(scene.param_groups())
    losses = []
    for _ in range(80):
        loss = (scene.render(cams).opacity - target).pow(2).sum()
        loss = loss + sum(w * v for w, v in scene.scene_losses().values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]
    mesh = scene.export_mesh()
    assert mesh.is_watertight and mesh.volume > 0
    np.testing.assert_allclose(mesh.vertices, scene.positions().detach().numpy(), atol=1e-6)
    centre_and_far = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0]])
    assert scene.density(centre_and_far).tolist() == [1.0, 0.0]
    restored = MeshScene(vertices, faces, torch.zeros_like(vertices), plain)
    restored.load_state_dict(scene.state_dict())
    torch.testing.assert_close(restored.render(cams).rgb, scene.render(cams).rgb)


def test_large_steps_move_a_smooth_field_of_vertices():
    """With ``smoothing`` the optimiser moves u = (I + lambda L) x: the scene starts at the
    given vertices, and a step that pulls one vertex moves its neighbours with it."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.tensor(sphere.faces)
    moved = {}
    for smoothing in (0.0, 10.0):
        scene = MeshScene(
            vertices, faces, torch.full_like(vertices, 0.5), MeshConfig(smoothing=smoothing)
        )
        torch.testing.assert_close(scene.positions(), vertices, atol=1e-5, rtol=0)
        opt = torch.optim.SGD([scene.coordinates], lr=0.1)
        scene.positions()[0, 0].backward()  # a pull on vertex 0's x alone
        opt.step()
        moved[smoothing] = (scene.positions() - vertices).detach().norm(dim=-1)
    source, target = vertex_neighbours(faces, len(vertices))
    ring = target[source == 0]
    assert moved[0.0][0] > 0 and moved[0.0][1:].max() == 0
    assert (moved[10.0][ring] > 0.1 * moved[10.0][0]).all()


def test_smooth_normals_are_the_spheres_own_where_flat_ones_are_the_facets():
    """An icosphere's vertex normals are radial; rendered with them, the normal map is the
    sphere's normal at each pixel's surface point (to the facets' sagitta), while the flat
    faces' normals differ from it by up to half a facet's angle."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.tensor(sphere.faces)
    radial = vertices / vertices.norm(dim=-1, keepdim=True)
    # Area-weighted: radial to the icosphere's unequal facets, within 2 degrees.
    assert (vertex_normals(vertices, faces) * radial).sum(-1).min() > np.cos(np.deg2rad(2))
    cams = cameras(width=32, height=32)
    errors = {}
    for smooth in (False, True):
        out = render(vertices, faces, cams, smooth_normals=smooth)
        hit = out.opacity[:, 0] > 0.999
        normal = out.normal.permute(0, 2, 3, 1)[hit]
        # The surface point under each pixel, from the rendered depth along its ray.
        rays = generate_rays(cams)
        point = rays.origins + rays.directions * out.depth.permute(0, 2, 3, 1)
        truth = torch.nn.functional.normalize(point[hit], dim=-1)
        errors[smooth] = torch.rad2deg(torch.acos((normal * truth).sum(-1).clamp(-1, 1)))
    assert errors[True].max() < 3.0
    assert errors[False].mean() > 2 * errors[True].mean()
