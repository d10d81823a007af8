"""Scenario files: the built-ins load, and a bad field is an error that names it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from ssd3d.errors import SSD3DError
from ssd3d.sim.scenario import BUILTIN_SCENARIOS, builtin_path, load_scenario

GOOD = {
    "name": "tiny",
    "classes": [
        {"name": "a", "means": [[0.0, 0.0], [2.0, 0.0]], "stds": 0.5},
        {"name": "b", "means": [[0.0, 3.0]], "stds": [0.7]},
    ],
    "prompt": "a",
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtins_load_with_their_dimensions() -> None:
    dims = {name: load_scenario(name).prior().dim for name in BUILTIN_SCENARIOS}
    assert dims == {"separated": 2, "overlapping": 2, "highdim": 64}
    high = load_scenario("highdim")
    means = high.class_means(0)
    assert means.shape == (3, 64) and means[0, 0] == -3.0 and means[0, 2:].abs().sum() == 0


def test_a_copied_file_runs_like_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(builtin_path("overlapping").read_text())
    assert load_scenario(path) == load_scenario("overlapping")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["classes"][0].update(meens=d["classes"][0].pop("means")),
            r"unknown config key 'classes.meens' \(did you mean",
        ),
        (lambda d: d["classes"][0].update(stds=-0.5), "class 'a': stds must be > 0"),
        (lambda d: d["classes"][1].update(weights=[0.0]), "class 'b': weights must be > 0"),
        (lambda d: d["classes"][0].update(stds=[0.5, 0.5, 0.5]), "class 'a': stds has 3 entries"),
        (
            lambda d: d["classes"][0]["means"].append([1.0, 2.0, 3.0]),
            r"means\[2\]: needs 2 numbers",
        ),
        (lambda d: d.update(prompt="c"), "prompt 'c' is not a class"),
        (lambda d: d.update(negative="z"), "negative 'z' is not a class"),
        (lambda d: d.update(optim={"optimizer": "rmsprop"}), "optim.optimizer must be one of"),
        (lambda d: d.update(optim={"lr": "fast"}), "'optim.lr' must be a number"),
        (lambda d: d.update(init={"mean": [0.0]}), "init.mean needs 2 numbers"),
        (lambda d: d.pop("prompt"), "prompt"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, change, message: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    change(data)
    with pytest.raises(SSD3DError, match=message) as info:
        load_scenario(_write(tmp_path, data))
    assert "\n" not in str(info.value) and str(info.value).startswith("scenario scenario.yaml")


def test_sparse_means_need_dim_and_a_valid_coordinate(tmp_path: Path) -> None:
    data = {"name": "s", "classes": [{"name": "a", "means": [{0: 1.0}]}], "prompt": "a"}
    with pytest.raises(SSD3DError, match="must give dim"):
        load_scenario(_write(tmp_path, data))
    data["dim"] = 3
    assert load_scenario(_write(tmp_path, data)).class_means(0).tolist() == [[1.0, 0.0, 0.0]]
    data["classes"][0]["means"] = [{5: 1.0}]
    with pytest.raises(SSD3DError, match=r"means\[0\]: coordinate 5"):
        load_scenario(_write(tmp_path, data))


def test_missing_and_unknown_scenarios() -> None:
    with pytest.raises(SSD3DError, match="scenario file not found: nowhere/x.yaml"):
        load_scenario("nowhere/x.yaml")
    with pytest.raises(SSD3DError, match="unknown scenario 'seperated'.*separated"):
        load_scenario("seperated")


def test_transformed_copy_is_the_same_mixture_moved() -> None:
    import itertools

    import torch

    from ssd3d.sim.scenario import transformed_scenario

    base = load_scenario("separated")
    copy = transformed_scenario(base, seed=3)
    again = transformed_scenario(base, seed=3)
    assert copy == again and copy != transformed_scenario(base, seed=4)
    means_a = torch.cat([base.class_means(i) for i in range(2)])
    means_b = torch.cat([copy.class_means(i) for i in range(2)])
    pairs = list(itertools.combinations(range(len(means_a)), 2))
    da = torch.stack([(means_a[i] - means_a[j]).norm() for i, j in pairs])
    db = torch.stack([(means_b[i] - means_b[j]).norm() for i, j in pairs])
    scale = float(db[0] / da[0])
    assert 0.5 <= scale <= 2.0
    torch.testing.assert_close(db, scale * da)  # a similarity: every distance scales alike
    assert copy.classes[0].stds == pytest.approx([scale * 0.5] * 3)
    assert copy.optim.lr == pytest.approx(scale * base.optim.lr)
    # log-density of the mapped points = original log-density - D log s
    x = base.prior().sample("left", 5, torch.Generator().manual_seed(0))
    q = torch.linalg.lstsq(means_a - means_a.mean(0), means_b - means_b.mean(0)).solution
    y = (x - means_a.mean(0)) @ q + means_b.mean(0)
    torch.testing.assert_close(
        copy.prior().log_prob(y, "left"), base.prior().log_prob(x, "left") - 2 * math.log(scale)
    )
    transformed_scenario(load_scenario("highdim"), seed=1).prior()  # 64D copies build too


def test_anisotropic_components_cannot_be_rotated(tmp_path: Path) -> None:
    from ssd3d.sim.scenario import parse_scenario, transformed_scenario

    data = {
        "name": "aniso",
        "classes": [{"name": "a", "means": [[0.0, 0.0]], "stds": [[0.5, 1.0]]}],
        "prompt": "a",
    }
    with pytest.raises(SSD3DError, match="only isotropic stds"):
        transformed_scenario(parse_scenario(data), seed=1)
