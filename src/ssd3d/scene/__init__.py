"""The 3D side of ssd3d: cameras, rays, radiance fields, backgrounds, shading, volume rendering.

Units: the object lives in the cube [-1, 1]^3, world up is +z, azimuth 0 is the front (+x).
Typical training step::

    scene = RadianceScene(VoxelGridField(), SphericalHarmonicsBackground())
    opt = torch.optim.Adam(scene.param_groups())   # each group at the scene's own rate
    cams = sample_cameras(CameraConfig(), batch=2, generator=g)
    out = scene.render(cams, sample_shading(ShadingConfig(), cams, g, step), generator=g)
    prompts = view_prompts("a red cube", cams, ViewPromptConfig())
    image = out.rgb                                   # [B, 3, H, W] in [0, 1]
    loss = distill(image) + 1e-2 * orientation_loss(out)

Dimension names: B views, H, W pixels, S samples per ray, R rays, N points.

Every representation is a ``Scene`` (``scene.py``) named in ``registry.py``.
"""

from ssd3d.scene.background import (
    Background,
    SolidBackground,
    SphericalHarmonicsBackground,
    build_background,
    sh_basis,
)
from ssd3d.scene.cameras import (
    VIEW_LABELS,
    CameraConfig,
    Cameras,
    ViewPromptConfig,
    look_at,
    orbit_cameras,
    sample_cameras,
    spherical_cameras,
    view_label,
    view_labels,
    view_prompt,
    view_prompts,
    wrap_azimuth,
)
from ssd3d.scene.fields import RadianceField, VoxelGridConfig, VoxelGridField, outward_normals
from ssd3d.scene.gaussians import GaussianConfig, GaussianScene
from ssd3d.scene.image import ImageScene
from ssd3d.scene.mesh import GaussiansThenMesh, MeshConfig, MeshScene
from ssd3d.scene.radiance import GrowthConfig, RadianceScene
from ssd3d.scene.rays import SCENE_BOUND, Rays, camera_directions, generate_rays, intersect_cube
from ssd3d.scene.registry import REPRESENTATIONS, build_scene, describe_scene
from ssd3d.scene.regularisers import (
    mean_opacity,
    opacity_entropy,
    opacity_sparsity,
    orientation_loss,
)
from ssd3d.scene.render import (
    RenderConfig,
    RenderOutput,
    composite,
    composite_reference,
    normal_image,
    render,
    sample_distances,
)
from ssd3d.scene.scene import REGULARISERS, Scene, VolumeScene
from ssd3d.scene.shading import (
    SHADING_MODES,
    Shading,
    ShadingConfig,
    fixed_shading,
    sample_shading,
    shade,
)

__all__ = [
    "REGULARISERS",
    "REPRESENTATIONS",
    "SCENE_BOUND",
    "SHADING_MODES",
    "VIEW_LABELS",
    "Background",
    "CameraConfig",
    "Cameras",
    "GaussianConfig",
    "GaussianScene",
    "GaussiansThenMesh",
    "MeshConfig",
    "MeshScene",
    "GrowthConfig",
    "ImageScene",
    "RadianceField",
    "RadianceScene",
    "Rays",
    "RenderConfig",
    "RenderOutput",
    "Scene",
    "Shading",
    "ShadingConfig",
    "SolidBackground",
    "SphericalHarmonicsBackground",
    "ViewPromptConfig",
    "VolumeScene",
    "VoxelGridConfig",
    "VoxelGridField",
    "build_background",
    "build_scene",
    "camera_directions",
    "describe_scene",
    "composite",
    "composite_reference",
    "fixed_shading",
    "generate_rays",
    "intersect_cube",
    "look_at",
    "mean_opacity",
    "normal_image",
    "opacity_entropy",
    "opacity_sparsity",
    "orbit_cameras",
    "orientation_loss",
    "outward_normals",
    "render",
    "sample_cameras",
    "sample_distances",
    "sample_shading",
    "sh_basis",
    "shade",
    "spherical_cameras",
    "view_label",
    "view_labels",
    "view_prompt",
    "view_prompts",
    "wrap_azimuth",
]
