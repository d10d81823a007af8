"""Regularisers: known values on hand-built render outputs."""

import math

import torch

from ssd3d.scene import (
    ImageScene,
    RenderOutput,
    mean_opacity,
    opacity_entropy,
    opacity_sparsity,
    orientation_loss,
)


def _output(opacity, weights=None, normals=None, directions=None):
    b, _, h, w = opacity.shape
    return RenderOutput(
        rgb=torch.zeros(b, 3, h, w),
        opacity=opacity,
        depth=torch.zeros_like(opacity),
        normal=None,
        weights=weights,
        sample_normals=normals,
        directions=directions,
    )


def test_opacity_terms_known_values():
    half = _output(torch.full((2, 1, 3, 3), 0.5))
    torch.testing.assert_close(opacity_entropy(half), torch.tensor(math.log(2)))
    torch.testing.assert_close(mean_opacity(half), torch.tensor(0.5))
    binary = _output(torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2))
    assert opacity_entropy(binary) < 1e-3
    torch.testing.assert_close(
        opacity_sparsity(binary), torch.tensor((math.sqrt(0.01) + math.sqrt(1.01)) / 2)
    )


def test_orientation_loss_penalises_normals_facing_away():
    d = torch.tensor([0.0, 0.0, -1.0])
    away = torch.tensor([0.0, 0.6, -0.8])  # n . d = 0.8 > 0: faces away from the camera
    towards = -d  # n . d < 0: no penalty
    weights = torch.tensor([0.3, 0.5]).reshape(1, 1, 1, 2).requires_grad_()
    normals = torch.stack([away, towards]).reshape(1, 1, 1, 2, 3)
    out = _output(torch.ones(1, 1, 1, 1), weights, normals, d.reshape(1, 1, 1, 3))
    loss = orientation_loss(out)
    torch.testing.assert_close(loss, torch.tensor(0.3 * 0.8**2))
    assert not loss.requires_grad  # the weights are detached by default (DreamFusion)
    loss_w = orientation_loss(out, detach_weights=False)
    (grad,) = torch.autograd.grad(loss_w, weights)
    torch.testing.assert_close(grad.flatten(), torch.tensor([0.8**2, 0.0]))


def test_image_scene_outputs_have_zero_3d_regularisers():
    out = ImageScene(4, 4).render(2)
    assert orientation_loss(out).item() == 0.0
    assert opacity_entropy(out) < 1e-3


def test_binary_entropy_is_elementwise_and_zero_at_the_ends():
    from ssd3d.scene.regularisers import binary_entropy

    p = torch.tensor([0.0, 0.25, 0.5, 1.0])
    h = binary_entropy(p)
    assert h.shape == (4,)
    torch.testing.assert_close(h[2], torch.tensor(math.log(2)))
    torch.testing.assert_close(h[1], torch.tensor(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))))
    assert float(h[0]) < 1e-3 and float(h[3]) < 1e-3
