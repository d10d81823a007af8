"""``ssd3d generate`` / ``ssd3d export`` through the real command line parser."""

import pytest
from typer.testing import CliRunner

from ssd3d.cli import app
from ssd3d.toyworld.dataset_format import ToyDataset

from .conftest import RES, disk_images

runner = CliRunner()
SMALL = [
    "steps=4",
    "checkpoint_every=2",
    f"camera.width={RES}",
    f"camera.height={RES}",
    "render.num_samples=16",
    "grid.resolution=8",
    "export.mesh_resolution=24",
    "export.turntable_frames=4",
    "export.video_resolution=16",
    "export.contact_views=2",
    "export.contact_resolution=16",
]


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    import torch

    images = torch.cat([disk_images((1.0, 0.1, 0.1)), disk_images((0.1, 0.1, 1.0))])
    ds = ToyDataset(
        images=(images * 255).round().to(torch.uint8),
        labels=torch.tensor([0] * 6 + [1] * 6),
        view_labels=torch.zeros(12, dtype=torch.long),
        azimuth_deg=torch.zeros(12),
        elevation_deg=torch.zeros(12),
        prompts=["a red disk", "a blue disk"],
    )
    path = tmp_path_factory.mktemp("data") / "disks.safetensors"
    ds.save(path)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_then_export_then_resume(tmp_path, dataset_file):
    base = ["generate", "a red disk", "--prior", "exact", "--model", dataset_file]
    result = invoke(*base, "--out", tmp_path, "--quiet", "view_prompts.enabled=false", *SMALL)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "a-red-disk"
    assert (run_dir / "mesh.glb").is_file() and (run_dir / "turntable.mp4").is_file()
    (run_dir / "mesh.glb").unlink()
    result = invoke("export", run_dir)
    assert result.exit_code == 0 and (run_dir / "mesh.glb").is_file()
    # resume to more steps continues the same run folder
    result = invoke("generate", "--resume", run_dir, "--steps", 6, "--quiet")
    assert result.exit_code == 0, result.output
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 6


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--estimator", "bogus"], "unknown estimator 'bogus'"),
        (["--prior", "dalle"], "unknown prior 'dalle'"),
        (["--steps", "0"], "steps must be > 0"),
        (["grid.resolutoin=3"], "did you mean 'grid.resolution'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, dataset_file, args, needle, capsys):
    import sys

    from ssd3d.cli import main

    argv = ["generate", "a red disk", "--prior", "exact", "--model", str(dataset_file)]
    argv += ["--out", str(tmp_path), *args]
    old = sys.argv
    sys.argv = ["ssd3d", *argv]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = old
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert not any(tmp_path.iterdir())
