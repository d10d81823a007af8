import pytest
import torch

from ssd3d.pipeline.config import ExportConfig, GenerateConfig
from ssd3d.priors.exact import ExactPrior
from ssd3d.scene import CameraConfig, RenderConfig, VoxelGridConfig

RES = 16


def disk_images(colour, n=6, res=RES):
    """A disk of ``colour`` on white, slightly shifted per image: a tiny 'dataset'."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    images = []
    for i in range(n):
        shift = 0.1 * (i - n / 2) / n
        inside = ((xx - shift) ** 2 + yy**2 < 0.35).float()
        c = torch.tensor(colour).reshape(3, 1, 1)
        images.append(inside * c + (1 - inside) * torch.ones(3, 1, 1))
    return torch.stack(images)


@pytest.fixture(scope="session")
def tiny_prior():
    """An exact prior over two 'prompts' of disks: no training, no network."""
    images = torch.cat([disk_images((1.0, 0.1, 0.1)), disk_images((0.1, 0.1, 1.0))])
    labels = torch.tensor([0] * 6 + [1] * 6)
    return ExactPrior(images, labels, ["a red disk", "a blue disk"])


@pytest.fixture
def tiny_config():
    return GenerateConfig(
        prompt="a red disk",
        prior="exact",
        estimator="ssd tau=600",
        steps=6,
        views_per_step=2,
        checkpoint_every=2,
        camera=CameraConfig(width=RES, height=RES),
        render=RenderConfig(num_samples=16),
        grid=VoxelGridConfig(resolution=8),
        export=ExportConfig(
            mesh_resolution=24,
            turntable_frames=4,
            fps=4,
            video_resolution=16,
            contact_views=4,
            contact_resolution=16,
        ),
    )
