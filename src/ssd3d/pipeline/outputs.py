"""What a trained run leaves behind: turntable video, contact sheet, mesh and the files of
its representation, rendered from the scene through the ``Scene`` protocol."""

from __future__ import annotations

from pathlib import Path

import torch

from ssd3d.errors import SSD3DError
from ssd3d.export import contact_sheet, save_mesh, save_png, write_video
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.run_dir import RunDir
from ssd3d.scene import Scene, build_scene, fixed_shading, normal_image, orbit_cameras

# Views per render call when exporting: bounds memory at large video resolutions.
RENDER_CHUNK = 8


def load_scene(run_dir: RunDir, cfg: GenerateConfig | None = None) -> Scene:
    """The scene of a run folder at its last checkpoint, in eval mode, on the CPU."""
    cfg = cfg or run_dir.read_config()
    scene = build_scene(cfg)
    scene.load_state_dict(run_dir.load_checkpoint().scene)
    return scene.eval()


@torch.no_grad()
def render_orbit(scene: Scene, n: int, resolution: int, mode: str = "lambertian"):
    """Evenly spaced views around the object, headlight-shaded. (rgb, normal) [n, 3, R, R]"""
    device = next(iter(scene.state_dict().values())).device
    cameras = orbit_cameras(n, width=resolution, height=resolution, device=device)
    rgbs, normals = [], []
    for start in range(0, n, RENDER_CHUNK):
        cams = cameras[start : start + RENDER_CHUNK]
        out = scene.render(cams, fixed_shading(mode, cams))
        rgbs.append(out.rgb.cpu())
        normals.append(normal_image(out).cpu())
    return torch.cat(rgbs), torch.cat(normals)


def orbit_sheet(scene: Scene, views: int, resolution: int):
    """``views`` orbit renders in a row, normal maps below: uint8 [H, W, 3]."""
    rgb, normal = render_orbit(scene, views, resolution)
    return contact_sheet(rgb, normal, normals_signed=False)


def export_outputs(
    run_dir: RunDir, cfg: GenerateConfig | None = None, notes: list[str] | None = None
) -> dict[str, Path]:
    """(Re)write the run's exports from its checkpoint: for a 3D scene its turntable (mp4,
    gif), contact sheet and mesh; for any scene the files of its representation.

    A scene with nothing at its surface level has no mesh: that is said in ``notes`` (and
    the run's report), not raised, so the views of what the run did are still written."""
    cfg = cfg or run_dir.read_config()
    scene = load_scene(run_dir, cfg)
    ex = cfg.export
    written: dict[str, Path] = {}
    if scene.is_3d:
        rgb, _ = render_orbit(scene, ex.turntable_frames, ex.video_resolution)
        for suffix in ("mp4", "gif"):
            written[suffix] = write_video(rgb, run_dir.file(f"turntable.{suffix}"), fps=ex.fps)
        sheet = orbit_sheet(scene, ex.contact_views, ex.contact_resolution)
        written["contact_sheet"] = save_png(sheet, run_dir.file("contact_sheet.png"))
        try:
            mesh = scene.export_mesh(ex.mesh_resolution)
        except SSD3DError as e:
            if notes is None:
                raise
            notes.append(f"no mesh: {e}")
        else:
            for path in save_mesh(mesh, run_dir.path, stem="mesh", formats=ex.mesh_formats):
                written[path.suffix.lstrip(".")] = path
    written |= scene.export_files(run_dir.path)
    return written
