"""``ssd3d app``: the Gradio app on localhost, driven through gradio_client like a user would
through the page: a quick run returns its mesh, video and downloads; a prompt the prior does
not know is a message, not a stack trace."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import trimesh

from ssd3d.errors import SSD3DError

from .conftest import TINY

gradio = pytest.importorskip("gradio", reason='the app extra: pip install -e ".[app]"')
gradio_client = pytest.importorskip("gradio_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from ssd3d.webapp import build_app, launch

    out = tmp_path_factory.mktemp("app")
    demo = build_app(out)
    port = free_port()
    launch(demo, out, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", out
    demo.close()


def generate(url, prompt, dataset, steps=8):
    client = gradio_client.Client(url, verbose=False)
    return client.predict(
        prompt,  # prompt
        "exact",  # prior
        "sds",  # estimator
        "guidance_scale=7.5",  # its parameters
        steps,
        0,  # seed
        str(dataset),  # the prior's dataset: the tiny ToyWorld
        " ".join(TINY),  # config overrides
        api_name="/generate",
    )


def test_a_quick_run_returns_mesh_video_and_downloads(app_url, toy_dataset_file, one_torch_thread):
    url, out = app_url
    preview, status, mesh, video, files = generate(url, "a red cube", toy_dataset_file)
    assert status.startswith("done in") and "report.html" in status
    loaded = trimesh.load(mesh, force="mesh")
    assert len(loaded.faces) > 0
    video = video["video"] if isinstance(video, dict) else video  # gradio_client < 2: a dict
    assert iio.imread(video).shape[0] == 8  # export.turntable_frames
    assert sorted(Path(f).name for f in files) == ["mesh.glb", "mesh.obj", "turntable.mp4"]
    assert all(Path(f).stat().st_size > 0 for f in files)
    assert iio.imread(preview).shape[1] > 4 * 90  # the last orbit views, 4 side by side
    # the app's run is a pipeline run: config, log, report
    run_dir = out / "a-red-cube"
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 8


def test_an_unknown_prompt_is_a_message(app_url, toy_dataset_file):
    url, out = app_url
    with pytest.raises(gradio_client.exceptions.AppError, match="unknown prompt"):
        generate(url, "a purple dodecahedron", toy_dataset_file)
    assert not (out / "a-purple-dodecahedron").exists()  # nothing written


def test_app_without_gradio_says_how_to_install(monkeypatch):
    from ssd3d.webapp import require_gradio

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(SSD3DError, match=r'pip install "ssd3d\[app\]"'):
        require_gradio()
