"""report.html of a run and of a benchmark, without a browser: what each page holds, that it
needs nothing from the web, and that runs and benchmarks write it themselves."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import imageio.v3 as iio

from ssd3d.bench import QUICK_ESTIMATORS, derive_label
from ssd3d.bench.oracle import ORACLE_LABEL
from ssd3d.report.page import MODEL_VIEWER_JS, REPORT_FILE

from .conftest import PROMPTS


class _Refs(HTMLParser):
    """Every src and href of a page, and its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


def assert_offline(folder, html: str) -> None:
    """No web address anywhere; every relative link is a file of the folder."""
    assert not re.search(r"https?://", html.replace("http://www.w3.org", ""))
    for ref in refs(html).refs:
        if ref.startswith("data:"):
            continue
        assert (folder / ref).is_file(), ref


def test_run_report_shows_the_run(run_folder):
    html = (run_folder / REPORT_FILE).read_text()
    assert_offline(run_folder, html)
    page = refs(html)
    assert page.tags.count("model-viewer") == 1 and 'src="data:model/gltf-binary;base64,' in html
    assert (run_folder / MODEL_VIEWER_JS).stat().st_size > 500_000
    for name in ["turntable.mp4", "contact_sheet.png", "training.png", "mesh.glb", "log.jsonl"]:
        assert name in page.refs, name
    # prompt, prior, the estimator with every parameter resolved, the config, the timings
    assert "a red cube" in html and "exact" in html
    assert "ssd guidance_scale=7.5 tau=600 coefficient=running match_norm=false" in html
    assert "grid:" in html and "export:" in html  # config.yaml, inline
    train_s = json.loads((run_folder / "summary.json").read_text())["train_seconds"]
    assert f"{train_s:.1f} s" in html
    for stage in ["render", "prior", "estimator", "backward", "optimizer", "total"]:
        assert f"<td>{stage}</td>" in html or f"<em>{stage}</em>" in html
    plot = iio.imread(run_folder / "training.png")
    assert plot.shape[0] > 400 and plot.shape[1] > 800


def test_unfinished_run_gets_a_report_of_its_log(tmp_path, toy_prior):
    from ssd3d.generation import generate
    from ssd3d.pipeline.config import resolve_config
    from ssd3d.report.run_page import write_run_report

    from .conftest import TINY

    cfg = resolve_config("exact", {"prompt": PROMPTS[1], "steps": 6}, list(TINY))
    run_dir = generate(cfg, tmp_path, prior=toy_prior, stop_after=3, progress=False)
    assert not (run_dir / REPORT_FILE).exists()  # written when a run finishes
    html = write_run_report(run_dir).read_text()
    assert "3 of 6" in html and "No exports yet" in html and "training.png" in html
    assert "<model-viewer" not in html and not (run_dir / MODEL_VIEWER_JS).exists()


def test_bench_report_has_tables_plot_and_a_gallery(bench_folder):
    html = (bench_folder / REPORT_FILE).read_text()
    assert_offline(bench_folder, html)
    labels = [ORACLE_LABEL, *(derive_label(s) for s in QUICK_ESTIMATORS)]
    # gallery: a column per estimator (in order), a row per prompt, an image per run
    gallery = html[html.index('class="gallery"') :]
    head = re.findall(r"<th>(.*?)</th>", gallery[: gallery.index("</thead>")])
    assert head == ["prompt", *labels]
    images = re.findall(r'<img src="(gallery/[^"]+\.png)"', gallery)
    assert len(images) == len(set(images)) == len(labels) * len(PROMPTS)
    for prompt in PROMPTS:
        assert f"{prompt}, seed 0" in gallery
    sheet = iio.imread(bench_folder / images[0])
    assert sheet.shape[1] > 3 * sheet.shape[0] / 2  # 4 views wide, 2 rows high
    # the tables and the metric-against-steps figure
    assert "IoU ↑" in html and "no judge" in html and "initial blob" in html
    assert 'src="metrics_vs_steps.png"' in html
    runs = json.loads((bench_folder / "results.json").read_text())["runs"]
    assert sorted(r["image"] for r in runs) == sorted(images)


def test_export_writes_the_report(tmp_path, run_folder):
    import shutil

    from typer.testing import CliRunner

    from ssd3d.cli import app

    run_dir = tmp_path / "copy"
    shutil.copytree(run_folder, run_dir)
    (run_dir / REPORT_FILE).unlink()
    (run_dir / MODEL_VIEWER_JS).unlink()
    result = CliRunner().invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "report" in result.output and (run_dir / REPORT_FILE).is_file()
    assert (run_dir / MODEL_VIEWER_JS).is_file()
