"""A triangle mesh as a scene: the refinement stage after a volume (Magic3D's second stage).

A volume's surface is as soft as its density near the level set; a mesh's is a sharp step by
construction, so silhouettes and occupancy it renders are exactly its own. The mesh starts
from another scene's export (marching cubes of its density) and keeps that connectivity;
vertex positions and vertex colours are optimised through the soft rasteriser
(``ssd3d.scene.raster``). Steps smoothed over the surface (large steps) keep it from
crumpling where only a few pixels constrain it; a Laplacian term and a penalty on the angles
between neighbouring faces are the optional surface priors. No remeshing: topology is the
volume's.

Occupancy (``density``) is exact: a point is inside when a ray from it along +z crosses the
surface an odd number of times, so the benchmark's 3D metrics read the surface the renders
draw, at ``surface_level`` 0.5.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import trimesh
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.scene._indexing import ragged_arange
from ssd3d.scene.background import Background, SolidBackground, build_background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.gaussians import GaussianConfig, GaussianScene
from ssd3d.scene.raster import DEFAULT_SIGMA_PX, face_neighbours, face_normals, rasterize
from ssd3d.scene.rays import SCENE_BOUND
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.scene import named_groups
from ssd3d.scene.shading import Shading

# Occupancy is 1 inside and 0 outside, so any level between draws the same surface.
MESH_SURFACE_LEVEL = 0.5
# Cells per axis of the xy binning that pairs query points with the faces above them.
PARITY_CELLS = 64
# Query points are moved this far (scene units, along irrational directions) before the
# parity test, so a ray through a shared edge or vertex of two faces (grid points and marching
# cubes vertices line up) is not counted twice or missed.
PARITY_JITTER = 1e-5
# Softening of the dihedral angle at 0 (radians): below it the penalty is quadratic.
DIHEDRAL_EPS = 1e-4
# Colours are kept as logits; clamped so an exported white or black stays finite.
COLOUR_EPS = 1e-3


@dataclass(frozen=True)
class MeshConfig:
    """The mesh stage: when it starts, its mesh, its Adam rates and its surface prior."""

    # The run's last ``steps`` steps refine the mesh; the steps before fit 3D Gaussians.
    steps: int = 100
    # Marching-cubes grid the Gaussians' surface is extracted on: 48^3 is a vertex every
    # 0.04 units, about two thirds of a 32x32 pixel at the object.
    resolution: int = 48

    # Step of the (large-steps) coordinates: a pixel at 32x32 spans ~0.06 scene units at the
    # object, and 3e-3 moves the smoothed vertices by a few hundredths of a pixel a step; of
    # 1e-3, 2e-3 and 3e-3 at smoothing 5 and 10, it fitted the oracle best (docs/mesh.md).
    # Without smoothing Adam moves every vertex with any gradient by about the rate, and
    # 1e-3 is the most that keeps flat-shaded faces from speckling.
    lr_vertices: float = 3e-3
    # Colour logits: the voxel grid's albedo rate.
    lr_colour: float = 5e-2
    lr_background: float = 1e-2
    # Weight of the summed squared uniform Laplacian (scene units squared), against the
    # photometric loss summed over pixels: per vertex both are gradients of order one. Off by
    # default: it resists every corner, and the smoothing below regularises the steps
    # instead (10 without smoothing is the alternative docs/mesh.md measures).
    laplacian: float = 0.0
    # The rasteriser's soft edge width, pixels.
    sigma_px: float = DEFAULT_SIGMA_PX
    # Nicolet et al.'s "large steps" (2021): Adam moves u = (I + smoothing L) x, L the
    # combinatorial Laplacian, and the vertices are x = (I + smoothing L)^-1 u, so every step
    # is a smooth field over the surface (no energy resists a corner, as the Laplacian term
    # does). The inverse is dense, built once per mesh in O(V^3): a second or so at the 48^3
    # stage's few thousand vertices, 12 s at 9,000. 0: Adam moves the vertices themselves.
    # Of 1, 2, 5 and 10, 2 fitted the oracle best: it brings back the wedge's and the
    # arrow's edges that the Gaussians round (the wedge's 3D IoU 0.92 against 5's 0.87 over
    # three seeds) and costs no other shape more than 0.02 (docs/mesh.md).
    smoothing: float = 2.0
    # Weight of the total variation of the normal: the dihedral angle (radians) of every
    # edge times its length (scene units), summed; threestudio's normal consistency with the
    # angle itself in place of 1 - cos. A cube's edge costs its length times 90 degrees
    # whether sharp or rounded over several rows of faces, so the term flattens dents and
    # ripples without rounding corners (the squared Laplacian above prefers rounded ones).
    # Off: at 0.3 it fitted the oracle's cube and sphere better and the other five ToyWorld
    # shapes worse (docs/mesh.md).
    dihedral: float = 0.0
    # Shade with the vertex normals interpolated across each face (Phong's), not the face's
    # own. Off: the true objects are smooth, yet fitted to their renders with these normals the
    # oracle walks further off the true surface on every shape (docs/mesh.md, "What the mesh
    # stage's own fit costs").
    smooth_normals: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise SSD3DError(f"mesh.steps must be >= 0; got {self.steps}")
        if self.resolution < 8:
            raise SSD3DError(f"mesh.resolution must be >= 8; got {self.resolution}")
        if not (
            self.sigma_px > 0
            and min(self.lr_vertices, self.laplacian, self.smoothing, self.dihedral) >= 0
        ):
            raise SSD3DError(
                "mesh.sigma_px must be > 0; lr_vertices, laplacian, smoothing and dihedral >= 0"
            )


def _logit(x: Tensor) -> Tensor:
    x = x.clamp(COLOUR_EPS, 1 - COLOUR_EPS)
    return torch.log(x / (1 - x))


def vertex_neighbours(faces: Tensor, n_vertices: int) -> tuple[Tensor, Tensor]:
    """Every directed edge (i, j) of the faces once: ([E], [E]) long, both directions."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])
    key = torch.unique(edges[:, 0] * n_vertices + edges[:, 1])
    return torch.div(key, n_vertices, rounding_mode="floor"), key % n_vertices


def dihedral_angles(vertices: Tensor, faces: Tensor, neighbours: Tensor) -> tuple[Tensor, Tensor]:
    """For each edge two faces share (``raster.face_neighbours``), once: the angle in radians
    between the two faces' normals and the edge's length, ([E], [E]). The angle is atan2 of
    the normals' cross and dot products, the cross product's length softened by DIHEDRAL_EPS
    so that the gradient stays finite where the faces are coplanar."""
    index = torch.arange(faces.shape[0], device=faces.device)[:, None].expand_as(neighbours)
    once = neighbours > index
    first, second = index[once], neighbours[once]
    corner = torch.arange(3, device=faces.device).expand_as(neighbours)[once]
    start, end = faces[first, corner], faces[first, (corner + 1) % 3]
    normals = face_normals(vertices, faces)
    cross = torch.linalg.cross(normals[first], normals[second]).pow(2).sum(-1)
    dot = (normals[first] * normals[second]).sum(-1)
    angles = torch.atan2((cross + DIHEDRAL_EPS**2).sqrt(), dot)
    return angles, (vertices[end] - vertices[start]).norm(dim=-1)


def uniform_laplacian(vertices: Tensor, source: Tensor, target: Tensor) -> Tensor:
    """Each vertex minus the mean of its neighbours [V, 3] (edges from ``vertex_neighbours``)."""
    n = vertices.shape[0]
    total = vertices.new_zeros(n, 3).index_add(0, source, vertices[target])
    count = vertices.new_zeros(n).index_add(
        0, source, torch.ones_like(source, dtype=vertices.dtype)
    )
    return vertices - total / count.clamp(min=1)[:, None]


@torch.no_grad()
def parity_inside(vertices: Tensor, faces: Tensor, points: Tensor) -> Tensor:
    """True where ``points`` [N, 3] lie inside the closed mesh: a ray along +z from each point
    crosses an odd number of faces. Faces and points meet per xy cell, so the cost is the
    points below each face, not points x faces."""
    jitter = points.new_tensor([2**0.5, 3**0.5, 0.0]) * PARITY_JITTER
    points = points + jitter
    tri = vertices[faces]  # [F, 3, 3]
    cells, bound = PARITY_CELLS, SCENE_BOUND

    def cell_of(xy: Tensor) -> Tensor:
        return ((xy + bound) / (2 * bound) * cells).floor().long().clamp(0, cells - 1)

    lo, hi = cell_of(tri[..., :2].amin(dim=1)), cell_of(tri[..., :2].amax(dim=1))
    # Points sorted by cell: each cell's points are one contiguous run.
    point_cell = cell_of(points[:, :2])
    point_key = point_cell[:, 0] * cells + point_cell[:, 1]
    order = torch.argsort(point_key)
    per_cell = torch.bincount(point_key, minlength=cells * cells)
    cell_start = torch.cumsum(per_cell, 0) - per_cell
    # (face, cell) pairs over each face's box of cells.
    span = hi - lo + 1  # [F, 2]
    n_cells = span[:, 0] * span[:, 1]
    face, local = ragged_arange(n_cells)
    row = torch.div(local, span[face, 1], rounding_mode="floor")
    cx, cy = lo[face, 0] + row, lo[face, 1] + local - row * span[face, 1]
    cell = cx * cells + cy
    # (face, point) pairs: every point of each pair's cell.
    pair, offset = ragged_arange(per_cell[cell])
    pair_face = face[pair]
    pair_point = order[cell_start[cell][pair] + offset]

    inside = torch.zeros(len(points), dtype=torch.long, device=points.device)
    chunk = 1 << 22
    for start in range(0, len(pair_face), chunk):
        f, p = pair_face[start : start + chunk], pair_point[start : start + chunk]
        a, b, c = tri[f].unbind(1)
        q = points[p]
        # Barycentrics of q's xy in the face's xy projection (either orientation).
        d = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        w1 = (
            (q[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (q[:, 1] - a[:, 1])
        ) / d
        w2 = (
            (b[:, 0] - a[:, 0]) * (q[:, 1] - a[:, 1]) - (q[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        ) / d
        w0 = 1 - w1 - w2
        hit = (d != 0) & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z = w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2]
        hit = hit & (z > q[:, 2])
        inside.index_add_(0, p[hit], torch.ones_like(p[hit]))
    return inside % 2 == 1


class MeshScene(nn.Module):
    """A closed triangle mesh with vertex colours and a background (the ``Scene`` protocol,
    name "mesh"). Parameters: ``coordinates`` [V, 3] (the vertices, or with ``smoothing``
    their large-steps coordinates; ``positions()`` is the vertices either way) and
    ``colour_logits`` [V, 3]; the faces
    [F, 3] are a buffer (checkpointed, never optimised)."""

    name: ClassVar[str] = "mesh"
    is_3d: ClassVar[bool] = True
    # The render regularisers act on volume samples or on soft opacity a mesh does not have.
    supported_regularisers: ClassVar[frozenset[str]] = frozenset()
    surface_level: float = MESH_SURFACE_LEVEL
    measures_surface_level: bool = False
    surface_level_candidates: tuple[float, ...] = (MESH_SURFACE_LEVEL,)

    def __init__(
        self,
        vertices: Tensor,
        faces: Tensor,
        colours: Tensor,
        config: MeshConfig = MeshConfig(),
        background: Background | None = None,
    ) -> None:
        super().__init__()
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise SSD3DError(f"a mesh scene needs faces [F, 3]; got {tuple(faces.shape)}")
        self.config = config
        self.background = SolidBackground() if background is None else background
        self.register_buffer("faces", faces.long().clone())
        self.vertex_count = vertices.shape[0]
        self._topology: tuple[Tensor, Tensor, Tensor] | None = None
        self._smoother: Tensor | None = None
        vertices = vertices.detach().float()
        if config.smoothing > 0:
            vertices = self._system() @ vertices
        self.coordinates = nn.Parameter(vertices.clone())
        self.colour_logits = nn.Parameter(_logit(colours.detach().float()))

    @classmethod
    def from_trimesh(
        cls, mesh: trimesh.Trimesh, config: MeshConfig = MeshConfig(), background=None
    ) -> MeshScene:
        """From a coloured mesh (``Scene.export_mesh`` of any scene); grey where uncoloured."""
        if len(mesh.faces) == 0:
            raise SSD3DError("cannot build a mesh scene from an empty mesh")
        colours = getattr(mesh.visual, "vertex_colors", None)
        if colours is None or len(colours) != len(mesh.vertices):
            colours = torch.full((len(mesh.vertices), 3), 0.5)
        else:
            colours = torch.as_tensor(colours[:, :3], dtype=torch.float32) / 255
        return cls(
            torch.as_tensor(mesh.vertices, dtype=torch.float32),
            torch.as_tensor(mesh.faces, dtype=torch.long),
            colours,
            config,
            background,
        )

    def _edges(self) -> tuple[Tensor, Tensor, Tensor]:
        """(face neighbours, Laplacian sources, Laplacian targets), cached: faces are fixed."""
        if self._topology is None or self._topology[0].device != self.faces.device:
            source, target = vertex_neighbours(self.faces, self.vertex_count)
            self._topology = (face_neighbours(self.faces), source, target)
        return self._topology

    def _system(self) -> Tensor:
        """I + smoothing L [V, V] (dense: the meshes here have a few thousand vertices)."""
        _, source, target = self._edges()
        n = self.vertex_count
        system = torch.zeros(n, n, device=self.faces.device)
        system[source, target] = -self.config.smoothing
        system[torch.arange(n), torch.arange(n)] = 1 + self.config.smoothing * torch.bincount(
            source, minlength=n
        ).to(system)
        return system

    def positions(self) -> Tensor:
        """The vertices [V, 3]."""
        if self.config.smoothing <= 0:
            return self.coordinates
        if self._smoother is None or self._smoother.device != self.coordinates.device:
            # Inverted once (the faces are fixed) and recomputed, not stored: a resumed run
            # computes the same matrix.
            self._smoother = torch.linalg.inv(self._system().to(self.coordinates))
        return self._smoother @ self.coordinates

    def colours(self) -> Tensor:
        return torch.sigmoid(self.colour_logits)

    # -- the Scene protocol ------------------------------------------------------------------
    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Rasterise into every camera; the generator is unused (no sampling)."""
        return rasterize(
            self.positions(),
            self.faces,
            self.colours(),
            cameras,
            self.background,
            shading,
            sigma_px=self.config.sigma_px,
            neighbours=self._edges()[0],
            smooth_normals=self.config.smooth_normals,
        )

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        return named_groups(
            {
                "vertices": [self.coordinates],
                "colour": [self.colour_logits],
                "background": list(self.background.parameters()),
            },
            {"vertices": c.lr_vertices, "colour": c.lr_colour, "background": c.lr_background},
        )

    def restructure(self, step: int) -> bool:
        return False

    def observe_gradients(self, step: int) -> None:
        return None

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        return {}

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        """The surface priors that are on: ``mesh_laplacian`` (the summed squared uniform
        Laplacian of the vertices) and ``mesh_dihedral`` (the normal's total variation)."""
        c, losses = self.config, {}
        if c.laplacian <= 0 and c.dihedral <= 0:
            return losses
        neighbours, source, target = self._edges()
        vertices = self.positions()
        if c.laplacian > 0:
            value = uniform_laplacian(vertices, source, target).pow(2).sum()
            losses["mesh_laplacian"] = (c.laplacian, value)
        if c.dihedral > 0:
            angles, lengths = dihedral_angles(vertices, self.faces, neighbours)
            value = (angles * lengths).sum()
            losses["mesh_dihedral"] = (c.dihedral, value)
        return losses

    @torch.no_grad()
    def density(self, points: Tensor) -> Tensor:
        """1 inside the mesh, 0 outside (parity of +z crossings)."""
        inside = parity_inside(self.positions().to(points), self.faces.to(points.device), points)
        return inside.to(points.dtype)

    @torch.no_grad()
    def albedo(self, points: Tensor, chunk: int = 8192) -> Tensor:
        """The colour of the nearest vertex."""
        vertices, colours = self.positions().to(points), self.colours().to(points)
        out = []
        for part in points.split(chunk):
            out.append(colours[torch.cdist(part, vertices).argmin(dim=1)])
        return torch.cat(out) if out else points.new_zeros(0, 3)

    @torch.no_grad()
    def export_mesh(self, resolution: int = 128) -> trimesh.Trimesh:
        """The mesh itself (``resolution`` is unused: the mesh has its own)."""
        colours = (self.colours().cpu().numpy() * 255).round().astype("uint8")
        return trimesh.Trimesh(
            vertices=self.positions().cpu().numpy(),
            faces=self.faces.cpu().numpy(),
            vertex_colors=colours,
            process=False,
        )

    def export_files(self, folder: Path) -> dict[str, Path]:
        return {}


class GaussiansThenMesh(nn.Module):
    """3D Gaussians, then their mesh (the ``Scene`` protocol, name "mesh"): Magic3D's two
    stages in one run. Until ``switch_step`` the Gaussians are the scene; at that step
    ``restructure`` exports their surface (marching cubes at their surface level) and the
    mesh is the scene from then on, refined through the rasteriser. Every call goes to the
    stage in use. The mesh is in the ``state_dict`` once built (``mesh.*``), so a checkpoint
    of either stage resumes it; a volume with no surface to export stays the scene."""

    name: ClassVar[str] = "mesh"
    is_3d: ClassVar[bool] = True
    # Those of the Gaussian stage; on the mesh they act on its opacity, which only its
    # outline can change.
    supported_regularisers: ClassVar[frozenset[str]] = GaussianScene.supported_regularisers

    @classmethod
    def from_config(cls, cfg: Any) -> GaussiansThenMesh:
        """From a run's config: its ``gaussians``, ``mesh`` and ``background`` sections."""
        return cls(
            cfg.gaussians,
            cfg.mesh,
            max(cfg.steps - cfg.mesh.steps, 0),
            build_background(cfg.background.kind, cfg.background.colour),
        )

    @staticmethod
    def describe(cfg: Any) -> str:
        volume = GaussianScene.describe(cfg)
        m = cfg.mesh
        return f"{volume}; its mesh ({m.resolution}³ marching cubes) refined for the last {m.steps} steps"

    def __init__(
        self,
        gaussians: GaussianConfig = GaussianConfig(),
        mesh: MeshConfig = MeshConfig(),
        switch_step: int = 100,
        background: Background | None = None,
    ) -> None:
        super().__init__()
        self.volume = GaussianScene(gaussians, background)
        self.mesh_config = mesh
        self.switch_step = switch_step
        self.mesh: MeshScene | None = None
        # Set when the volume had no surface at the switch: it stays the scene (resume-safe).
        self.register_buffer("no_surface", torch.tensor(False))

    @property
    def stage(self) -> GaussianScene | MeshScene:
        return self.volume if self.mesh is None else self.mesh

    @property
    def background(self) -> Background:
        return self.stage.background

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        return self.stage.render(cameras, shading, generator)

    def param_groups(self) -> list[dict[str, Any]]:
        return self.stage.param_groups()

    def restructure(self, step: int) -> bool:
        if self.mesh is None and step >= self.switch_step and not bool(self.no_surface):
            try:
                surface = self.volume.export_mesh(self.mesh_config.resolution)
            except SSD3DError:
                self.no_surface.fill_(True)
                return self.volume.restructure(step)
            # Its own copy of the background, which goes on from the volume's: a checkpoint
            # cannot hold one tensor under two names.
            background = copy.deepcopy(self.volume.background)
            self.mesh = MeshScene.from_trimesh(surface, self.mesh_config, background)
            self.mesh.to(self.volume.means.device)
            return True
        return self.stage.restructure(step)

    def observe_gradients(self, step: int) -> None:
        self.stage.observe_gradients(step)

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        return self.stage.scene_losses()

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        return self.stage.learning_rates(step, steps)

    @property
    def surface_level(self) -> float:
        return self.stage.surface_level

    @property
    def measures_surface_level(self) -> bool:
        return self.stage.measures_surface_level

    @property
    def surface_level_candidates(self) -> tuple[float, ...]:
        return self.stage.surface_level_candidates

    def density(self, points: Tensor) -> Tensor:
        return self.stage.density(points)

    def albedo(self, points: Tensor) -> Tensor:
        return self.stage.albedo(points)

    def export_mesh(self, resolution: int = 128) -> trimesh.Trimesh:
        return self.stage.export_mesh(resolution)

    def export_files(self, folder: Path) -> dict[str, Path]:
        """The Gaussians' splat .ply (either stage: the volume is kept)."""
        return self.volume.export_files(folder)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint of the mesh stage: build a mesh of its size to load into.
        coordinates, faces = (
            state_dict.get(prefix + "mesh.coordinates"),
            state_dict.get(prefix + "mesh.faces"),
        )
        if coordinates is not None and faces is not None and self.mesh is None:
            background = copy.deepcopy(self.volume.background)
            vertices = torch.zeros_like(coordinates)  # overwritten by the load
            colours = torch.full_like(vertices, 0.5)
            self.mesh = MeshScene(vertices, faces, colours, self.mesh_config, background)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
