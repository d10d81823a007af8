"""Scenes: the 2D image representation and the radiance scene behind the same two methods."""

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    ImageScene,
    RadianceScene,
    RenderConfig,
    Scene,
    ShadingConfig,
    SolidBackground,
    SphericalHarmonicsBackground,
    VoxelGridConfig,
    VoxelGridField,
    orbit_cameras,
    sample_shading,
)


def test_image_scene_converges_to_a_target_under_plain_l2_gradient_descent():
    g = torch.Generator().manual_seed(0)
    target = 0.2 + 0.6 * torch.rand(1, 3, 8, 8, generator=g)
    scene = ImageScene(8, 8)
    cams = orbit_cameras(2, width=8, height=8)
    losses = []
    for _ in range(200):
        out = scene.render(cams)
        assert out.rgb.shape == (2, 3, 8, 8) and (out.opacity == 1).all()
        loss = 0.5 * ((out.rgb - target) ** 2).sum()
        losses.append(loss.item())
        (grad,) = torch.autograd.grad(loss, scene.logits)
        with torch.no_grad():
            scene.logits -= 2.0 * grad
    assert losses[-1] < 1e-4 * losses[0]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:], strict=False))
    torch.testing.assert_close(scene.image(), target, atol=2e-3, rtol=0)


def test_image_scene_init_and_validation():
    init = torch.rand(3, 4, 5)
    scene = ImageScene(4, 5, init=init, lr=0.3)
    torch.testing.assert_close(scene.image()[0], init.clamp(1e-3, 1 - 1e-3))
    with pytest.raises(SSD3DError, match="init image"):
        ImageScene(4, 4, init=torch.rand(3, 5, 5))
    groups = scene.param_groups()
    assert [(gr["name"], gr["lr"]) for gr in groups] == [("pixels", 0.3)]


def test_radiance_scene_param_groups_drive_adam():
    scene = RadianceScene(
        VoxelGridField(VoxelGridConfig(resolution=8)),
        SphericalHarmonicsBackground(),
        RenderConfig(num_samples=16),
        lr={"density": 0.1, "albedo": 0.2, "background": 0.3},
    )
    groups = scene.param_groups()
    names = [(gr["name"], gr["lr"]) for gr in groups]
    assert names == [("density", 0.1), ("albedo", 0.2), ("background", 0.3)]
    assert groups[0]["params"][0] is scene.field.density_raw
    # A solid background has nothing to learn: its group is left out.
    solid = RadianceScene(VoxelGridField(VoxelGridConfig(resolution=8)), SolidBackground())
    assert [gr["name"] for gr in solid.param_groups()] == ["density", "albedo"]
    assert isinstance(scene, Scene) and isinstance(ImageScene(), Scene)

    # One Adam step toward a black image lowers the loss, and touches every group.
    opt = torch.optim.Adam(groups)
    cams = orbit_cameras(2, width=8, height=8)
    g = torch.Generator().manual_seed(0)
    shading = sample_shading(ShadingConfig(), cams, g)
    before = [p.detach().clone() for gr in groups for p in gr["params"]]
    loss0 = scene.render(cams, shading, g).rgb.square().mean()
    loss0.backward()
    opt.step()
    after = [p.detach() for gr in groups for p in gr["params"]]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    loss1 = scene.render(cams, shading, torch.Generator().manual_seed(0)).rgb.square().mean()
    assert loss1 < loss0
