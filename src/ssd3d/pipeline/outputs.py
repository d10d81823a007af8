"""What a finished run leaves behind: turntable video, contact sheet, mesh, report.html."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ssd3d.config import from_dict, to_dict
from ssd3d.errors import SSD3DError
from ssd3d.export import contact_sheet, extract_mesh, save_mesh, save_png, write_video
from ssd3d.pipeline.checkpoint import load_checkpoint
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.loop import CHECKPOINT_DIR, build_scene
from ssd3d.scene import RadianceScene, fixed_shading, normal_image, orbit_cameras

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
# Views per render call when exporting: bounds memory at large video resolutions.
RENDER_CHUNK = 8


def write_config(run_dir: Path, cfg: GenerateConfig) -> None:
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_config(run_dir: Path) -> GenerateConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise SSD3DError(f"{run_dir} is not an ssd3d run folder (no {CONFIG_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise SSD3DError(f"{path} is not valid YAML") from None
    return from_dict(GenerateConfig, data)


def load_scene(run_dir: Path, cfg: GenerateConfig | None = None):
    """The scene of a run folder at its last checkpoint, in eval mode, on the CPU."""
    cfg = cfg or read_config(run_dir)
    scene = build_scene(cfg)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT_DIR)
    scene.load_state_dict(state.scene)
    return scene.eval()


@torch.no_grad()
def render_orbit(scene: RadianceScene, n: int, resolution: int, mode: str = "lambertian"):
    """Evenly spaced views around the object, headlight-shaded. (rgb, normal) [n, 3, R, R]"""
    device = next(scene.parameters()).device
    cameras = orbit_cameras(n, width=resolution, height=resolution, device=device)
    rgbs, normals = [], []
    for start in range(0, n, RENDER_CHUNK):
        cams = cameras[start : start + RENDER_CHUNK]
        out = scene.render(cams, fixed_shading(mode, cams))
        rgbs.append(out.rgb.cpu())
        normals.append(normal_image(out).cpu())
    return torch.cat(rgbs), torch.cat(normals)


def orbit_sheet(scene: RadianceScene, views: int, resolution: int):
    """``views`` orbit renders in a row, normal maps below: uint8 [H, W, 3]."""
    rgb, normal = render_orbit(scene, views, resolution)
    return contact_sheet(rgb, normal, normals_signed=False)


def export_run(run_dir: Path, *, report: bool = True) -> dict[str, Path]:
    """(Re)write the run's turntable (mp4, gif), contact sheet and mesh from its checkpoint,
    then its report.html (``report=False``: the caller writes it, after the summary)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    scene = load_scene(run_dir, cfg)
    ex = cfg.export
    written: dict[str, Path] = {}
    if cfg.representation == "image":
        image = (scene.image()[0].permute(1, 2, 0) * 255).round().byte().numpy()
        written["image"] = save_png(image, run_dir / "image.png")
        return _with_report(run_dir, written, report)
    rgb, _ = render_orbit(scene, ex.turntable_frames, ex.video_resolution)
    for suffix in ("mp4", "gif"):
        written[suffix] = write_video(rgb, run_dir / f"turntable.{suffix}", fps=ex.fps)
    sheet = orbit_sheet(scene, ex.contact_views, ex.contact_resolution)
    written["contact_sheet"] = save_png(sheet, run_dir / "contact_sheet.png")
    field = scene.field
    mesh = extract_mesh(
        field.density,
        lambda p: field(p)[1],
        resolution=ex.mesh_resolution,
        threshold=ex.density_threshold,
    )
    for path in save_mesh(mesh, run_dir, stem="mesh", formats=ex.mesh_formats):
        written[path.suffix.lstrip(".")] = path
    return _with_report(run_dir, written, report)


def _with_report(run_dir: Path, written: dict[str, Path], report: bool) -> dict[str, Path]:
    if report:
        from ssd3d.report.run_page import write_run_report  # the report reads this module's files

        written["report"] = write_run_report(run_dir)
    return written
