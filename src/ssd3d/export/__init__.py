"""Export: meshes (.glb/.obj/.ply) by marching cubes, turntable videos, contact sheets.

Everything here takes callables and tensors, never scene objects, so any field that can
answer ``density_fn(points [N, 3]) -> [N]`` and ``albedo_fn(points [N, 3]) -> [N, 3]``
can be exported.
"""

from ssd3d.export.contact_sheet import contact_sheet, save_png
from ssd3d.export.mesh import (
    DEFAULT_DENSITY_THRESHOLD,
    MESH_FORMATS,
    density_grid,
    extract_mesh,
    save_mesh,
)
from ssd3d.export.video import VIDEO_FORMATS, prepare_frames, write_video

__all__ = [
    "DEFAULT_DENSITY_THRESHOLD",
    "MESH_FORMATS",
    "VIDEO_FORMATS",
    "contact_sheet",
    "density_grid",
    "extract_mesh",
    "prepare_frames",
    "save_mesh",
    "save_png",
    "write_video",
]
