"""The docs' generated sections and links: every section has its page, every link a target."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "results_section.py"))
# [text](target) links, leaving out web addresses and in-page anchors.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_section_is_marked_once_in_its_page():
    for name, page in SCRIPT["SECTIONS"].items():
        text = (ROOT / "docs" / "results" / page).read_text()
        assert text.count(f"<!-- BEGIN {name} -->") == 1, (name, page)
        assert text.count(f"<!-- END {name} -->") == 1, (name, page)


def test_replace_section_keeps_the_rest_and_refuses_a_missing_section():
    text = "intro\n<!-- BEGIN t -->\nold\n<!-- END t -->\nafter\n"
    new = SCRIPT["replace_section"](text, "t", "new table\n")
    assert new == "intro\n<!-- BEGIN t -->\nnew table\n<!-- END t -->\nafter\n"
    with pytest.raises(SystemExit):
        SCRIPT["replace_section"](text, "other", "x")


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(page):
    for target in LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: {target}"


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# README's test command, verbatim:") + 1]
    assert command in (ROOT / "README.md").read_text()


def test_the_readme_estimator_snippet_runs_and_reaches_x0():
    import re

    import torch

    from ssd3d.priors import make_alphas_cumprod

    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, generator=gen).requires_grad_()
    t = torch.tensor([100, 900])
    names = {
        "x0": x0,
        "noise": torch.randn(2, 4, 8, 8, generator=gen),
        "t": t,
        "alpha_bar": make_alphas_cumprod()[t].float(),
        "eps_cond": torch.randn(2, 4, 8, 8, generator=gen),
        "eps_uncond": torch.randn(2, 4, 8, 8, generator=gen),
    }
    exec(snippet, names)
    assert x0.grad is not None and torch.allclose(x0.grad, names["g"] / 2)
    assert int(names["state"].state_dict()["count"].sum()) == 2  # the update counted both


def test_the_readmes_result_numbers_are_those_of_the_committed_results():
    """A fact the README states about results is read off the file it comes from."""
    from safetensors import safe_open

    from ssd3d.bench import RESULTS_FILE, read_results

    text = (ROOT / "README.md").read_text()
    vocabulary = runpy.run_path(str(ROOT / "scripts" / "vocabulary_table.py"))
    data = read_results(ROOT / "results" / "bench" / "vocabulary-surface" / RESULTS_FILE)
    final = vocabulary["final_metrics"](data)
    stated = re.search(r"mean IoU (\d\.\d+) and R-precision (\d\.\d+)", text)
    assert stated, "the README's vocabulary row no longer states its means"
    assert float(stated.group(1)) == round(vocabulary["mean_over"](final, "iou", final), 3)
    assert float(stated.group(2)) == round(vocabulary["mean_over"](final, "r_precision", final), 3)
    oracle = vocabulary["final_metrics"](data, oracle=True)
    shape, _ = vocabulary["worst_shape"](oracle)
    stated = re.search(r"oracle itself reaches only (\d\.\d+) \(the (\w+), [^)]*?(\d\.\d+)\)", text)
    assert stated, "the README's vocabulary row no longer states the oracle's mean and worst shape"
    assert float(stated.group(1)) == round(vocabulary["mean_over"](oracle, "iou", oracle), 3)
    assert stated.group(2) == shape
    assert float(stated.group(3)) == round(vocabulary["shape_means"](oracle)[shape], 3)

    # The default-representation row: the preset's mean 3D IoU on each scene.
    means = []
    for scene in ("voxel", "mesh"):
        runs = read_results(ROOT / "results" / "bench" / f"toy-shapes-{scene}" / RESULTS_FILE)
        final = vocabulary["final_metrics"](runs)
        means.append(round(vocabulary["mean_over"](final, "iou", final), 3))
    stated = re.search(r"better 3D IoU \((\d\.\d+) against (\d\.\d+)\)", text)
    assert stated and [float(v) for v in stated.groups()] == means

    weights = ROOT / "src" / "ssd3d" / "models" / "assets" / "toy_prior.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        minutes = float(f.metadata()["wall_time_s"]) / 60
    trained = re.search(r"trained\s+on ToyWorld's renders[^;]*? in (\d+) minutes", text)
    assert trained and int(trained.group(1)) == round(minutes)


def test_the_readmes_mesh_scene_numbers_are_those_of_its_benchmark():
    """The ssd-3d row: the mesh scene's oracle and best estimator, from their results."""
    from ssd3d.bench import read_results
    from ssd3d.bench.results import RESULTS_FILE
    from ssd3d.bench.tables import BLOB_LABEL, aggregate

    data = read_results(ROOT / "results" / "bench" / "exact-mesh-seeds" / RESULTS_FILE)
    means = {label: m["iou"].mean for label, m in aggregate(data).items() if label != BLOB_LABEL}
    oracle = means.pop("oracle (true renders)")
    best = max(means, key=means.get)
    text = (ROOT / "README.md").read_text()
    stated = re.search(
        r"oracle reaches 3D IoU (\d\.\d+), (\w+) has the best mean \((\d\.\d+)\)", text
    )
    assert stated, "the README's ssd-3d row no longer states the mesh scene's oracle and best"
    assert float(stated.group(1)) == round(oracle, 3)
    assert stated.group(2).lower() == best and float(stated.group(3)) == round(means[best], 3)
