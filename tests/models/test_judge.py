"""The ToyWorld judge: heads, augmentation, training on a synthetic world, scores, files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssd3d.errors import SSD3DError
from ssd3d.models import judge as judge_module
from ssd3d.models.judge import (
    Judge,
    JudgeConfig,
    JudgeNet,
    augment,
    balanced_accuracy,
    gaussian_blur,
    train_judge,
    view_trained,
)
from ssd3d.toyworld.dataset_format import ToyDataset, synthetic_dataset

RES = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Judge, Path]:
    folder = tmp_path_factory.mktemp("judge")
    path = synthetic_dataset(n_per_prompt=64, resolution=RES, seed=0).save(folder / "d.safetensors")
    cfg = JudgeConfig(steps=80, batch_size=64, width=8, lr=3e-3, shift_px=1, threads=1)
    result = train_judge(path, folder, cfg, progress=False)
    return Judge.load(result.path), result.path


@pytest.fixture(scope="module")
def unseen() -> ToyDataset:
    """Fresh draws of the same synthetic world (another seed): new positions and views."""
    return synthetic_dataset(n_per_prompt=32, resolution=RES, seed=1)


def test_heads_have_the_right_shapes() -> None:
    net = JudgeNet(num_prompts=5, num_views=4, resolution=32, width=8)
    prompt_logits, view_logits = net(torch.rand(3, 3, 32, 32))
    assert prompt_logits.shape == (3, 5) and view_logits.shape == (3, 4)
    with pytest.raises(SSD3DError, match="divisible by 8"):
        JudgeNet(5, 4, 20, 8)


def test_augment_only_shifts_when_told_to() -> None:
    images = torch.rand(6, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    still = JudgeConfig(shift_px=0, noise_std=0.0, gain_jitter=0.0, blur_sigma_max=0.0)
    assert torch.equal(augment(images, still, g), images)
    # With shifts alone, every image is one of its 9 whole-pixel shifts, edges repeated.
    shifts_only = JudgeConfig(shift_px=1, noise_std=0.0, gain_jitter=0.0, blur_sigma_max=0.0)
    shifted = augment(images, shifts_only, g)
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    for i in range(6):
        candidates = [
            padded[i, :, 1 + dy : 9 + dy, 1 + dx : 9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        ]
        assert any(torch.equal(shifted[i], c) for c in candidates)


def test_judge_learns_the_synthetic_world(trained: tuple[Judge, Path], unseen: ToyDataset) -> None:
    judge, _ = trained
    prompt_probs, view_probs = judge.predict(unseen.images_float())
    n = len(unseen)
    assert prompt_probs.shape == (n, 4) and view_probs.shape == (n, 4)
    torch.testing.assert_close(prompt_probs.sum(-1), torch.ones(n))
    assert (prompt_probs.argmax(-1) == unseen.labels).float().mean() > 0.9
    assert (view_probs.argmax(-1) == unseen.view_labels).float().mean() > 0.9


def test_scores(trained: tuple[Judge, Path], unseen: ToyDataset) -> None:
    judge, _ = trained
    k = 2  # "a blue square"
    views = unseen.subset(torch.nonzero(unseen.labels == k).flatten())
    images = views.images_float()
    assert judge.r_precision(images, k) > 0.9
    assert judge.r_precision(images, "a blue square, side view") == judge.r_precision(images, k)
    assert judge.r_precision(images, 0) < 0.1  # the wrong prompt
    assert judge.multi_face_score(images, views.view_labels) > 0.9
    # A Janus object: every view looks like its opposite (front <-> back).
    swapped = torch.tensor([2, 1, 0, 3])[views.view_labels]
    moved = (swapped != views.view_labels).float().mean().item()
    assert judge.multi_face_score(images, swapped) < 1 - 0.8 * moved


def test_blur_known_answers() -> None:
    images = torch.zeros(2, 1, 5, 5)
    images[:, :, 2, 2] = 1.0
    out = gaussian_blur(images, torch.tensor([0.0, 1.0]))
    assert torch.equal(out[0], images[0])  # sigma 0: unchanged
    tap = torch.exp(torch.tensor(-0.5))  # neighbour weight at sigma 1, before normalising
    centre = 1 / (1 + 2 * tap) ** 2
    assert out[1, 0, 2, 2].item() == pytest.approx(centre.item())
    assert out[1, 0, 1, 1].item() == pytest.approx((centre * tap * tap).item())
    assert out[1].sum().item() == pytest.approx(1.0)  # mass kept


def test_judge_reads_resized_renders(trained: tuple[Judge, Path]) -> None:
    judge, _ = trained
    big = synthetic_dataset(n_per_prompt=16, resolution=2 * RES, seed=2)
    prompt_probs, _ = judge.predict(big.images_float())
    assert (prompt_probs.argmax(-1) == big.labels).float().mean() > 0.9


def test_predict_resizes_other_render_sizes(trained: tuple[Judge, Path]) -> None:
    judge, _ = trained
    big = torch.rand(4, 3, 2 * RES, 2 * RES)
    small = F.interpolate(big, size=(RES, RES), mode="bilinear", antialias=True)
    for a, b in zip(judge.predict(big), judge.predict(small), strict=True):
        assert a.shape == (4, 4)
        torch.testing.assert_close(a, b)


def test_file_round_trip(trained: tuple[Judge, Path], unseen: ToyDataset, tmp_path: Path) -> None:
    judge, path = trained
    assert float(judge.metadata["val_prompt_accuracy"]) > 0.8
    again = Judge.load(judge.save(tmp_path / "copy.safetensors"))
    for a, b in zip(
        judge.predict(unseen.images_float()), again.predict(unseen.images_float()), strict=True
    ):
        assert torch.equal(a, b)
    assert again.prompts == unseen.prompts and again.view_names == unseen.view_names


def test_errors(
    trained: tuple[Judge, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge, _ = trained
    with pytest.raises(SSD3DError, match="does not know 'a red cube'"):
        judge.r_precision(torch.rand(1, 3, RES, RES), "a red cube")
    monkeypatch.setattr(judge_module, "shipped_judge_path", lambda: tmp_path / "judge.safetensors")
    with pytest.raises(SSD3DError, match="ssd3d toyworld train-classifier"):
        Judge.load()
    with pytest.raises(SSD3DError, match="'steps' must be >= 1"):
        JudgeConfig(steps=0)


def test_train_classifier_command(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ssd3d.commands.toyworld_train import register

    path = synthetic_dataset(n_per_prompt=8, resolution=RES).save(tmp_path / "d.safetensors")
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    args = ["toyworld", "train-classifier", str(path), "--out", str(tmp_path), "--steps", "2"]
    result = CliRunner().invoke(app, args + ["width=4", "threads=1", "batch_size=8"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output
    assert Judge.load(tmp_path / "judge.safetensors").metadata["steps"] == "2"


class _ConstantViews(torch.nn.Module):
    """A judge network that answers the same view label for every image."""

    def __init__(self, view: int) -> None:
        super().__init__()
        self.view = view
        self.trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1))

    def forward(self, images):
        views = torch.full((images.shape[0], 4), -10.0)
        views[:, self.view] = 10.0
        return torch.zeros(images.shape[0], 1), views


def test_multi_face_score_is_balanced_over_the_labels_present() -> None:
    # The benchmark's orbit: 12 views every 30 degrees from the front, 15 degrees up.
    from ssd3d.scene import VIEW_LABELS, orbit_cameras, view_labels

    labels = torch.tensor([VIEW_LABELS.index(v) for v in view_labels(orbit_cameras(12))])
    assert torch.bincount(labels, minlength=4).tolist() == [3, 6, 3, 0]
    images = torch.rand(12, 3, RES, RES)
    side = Judge(_ConstantViews(1), ["a"], list(VIEW_LABELS), RES)
    # "side" for every view reads half the orbit right; balanced, it is one label of three.
    assert side.view_confusion(images, labels).tolist() == [
        [0, 3, 0, 0],
        [0, 6, 0, 0],
        [0, 3, 0, 0],
        [0, 0, 0, 0],
    ]
    assert side.multi_face_score(images, labels) == pytest.approx(1 / 3)
    # Known confusions: front and back swapped (a backwards object) scores 1/3; a Janus
    # object (back read as front) 2/3; all right 1.
    swapped = torch.tensor([[0, 0, 3, 0], [0, 6, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]])
    janus = torch.tensor([[3, 0, 0, 0], [0, 6, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]])
    assert balanced_accuracy(swapped) == pytest.approx(1 / 3)
    assert balanced_accuracy(janus) == pytest.approx(2 / 3)
    assert balanced_accuracy(torch.diag(torch.tensor([3, 6, 3, 0]))) == 1.0
    with pytest.raises(ValueError, match="no views"):
        balanced_accuracy(torch.zeros(4, 4, dtype=torch.long))


def test_view_head_trains_on_the_shapes_whose_views_differ() -> None:
    prompts = ["a red sphere", "a red cube", "a red wedge", "a blue arrow", "a green mug"]
    assert view_trained(prompts).tolist() == [False, False, True, True, True]
    assert view_trained(prompts, "all").all()
    assert view_trained(["a blue square"]).tolist() == [True]  # not ToyWorld's: kept
    with pytest.raises(SSD3DError, match="'view_shapes' must be one of distinct, all"):
        JudgeConfig(view_shapes="some")


def test_fine_tuning_starts_from_the_given_judge(trained: tuple[Judge, Path], tmp_path: Path):
    judge, path = trained
    data = synthetic_dataset(n_per_prompt=8, resolution=RES).save(tmp_path / "d.safetensors")
    # lr that rounds to nothing: the weights are the initial judge's after one step.
    cfg = JudgeConfig(steps=1, batch_size=8, width=8, lr=1e-12, weight_decay=0.0, threads=1)
    result = train_judge(data, tmp_path, cfg, progress=False, init=path)
    tuned = Judge.load(result.path)
    assert tuned.metadata["init"] == path.name
    for name, value in judge.net.state_dict().items():
        if "running" not in name and "num_batches" not in name:  # BN statistics move
            torch.testing.assert_close(tuned.net.state_dict()[name], value)
    with pytest.raises(SSD3DError, match="does not match"):
        train_judge(data, tmp_path, JudgeConfig(steps=1, width=4), progress=False, init=path)
    # A frozen trunk keeps its weights and batch-norm statistics whatever the step size;
    # the hidden layer and the heads move.
    cfg = JudgeConfig(steps=3, batch_size=8, width=8, lr=0.1, freeze_trunk=True, threads=1)
    frozen = Judge.load(train_judge(data, tmp_path, cfg, progress=False, init=path).path)
    before, after = judge.net.state_dict(), frozen.net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("trunk."))
    assert not torch.equal(after["hidden.1.weight"], before["hidden.1.weight"])
    with pytest.raises(SSD3DError, match="needs a judge to start from"):
        train_judge(data, tmp_path, JudgeConfig(freeze_trunk=True), progress=False)
