"""The ToyWorld benchmark: a tiny quick run end to end, resuming, aggregation, bad input,
and the scorer on the ground truth itself (a known answer: a perfect score)."""

from __future__ import annotations

import hashlib
import json
import math

import imageio.v3 as iio
import pytest

from ssd3d.bench import (
    QUICK_ESTIMATORS,
    EvalConfig,
    Scorer,
    bench_config,
    derive_label,
    merge_results,
    parse_estimators,
    prior_weights,
    run_bench,
)
from ssd3d.bench.oracle import ORACLE_LABEL
from ssd3d.bench.tables import Summary, aggregate, markdown_table
from ssd3d.errors import SSD3DError
from ssd3d.models.unet import shipped_prior_path
from ssd3d.pipeline.config import resolve_config
from ssd3d.priors.exact import UNCONDITIONAL, ExactPrior
from ssd3d.scene import RadianceScene, RenderConfig, SolidBackground
from ssd3d.toyworld.render_dataset import DatasetConfig, render_dataset
from ssd3d.toyworld.truth import GroundTruthField, render_truth

RES = 16  # pixels of the tiny dataset and of every render in these tests
PROMPTS = ["a green cube", "a yellow wedge"]
# Small scoring: coarse grids, few surface samples, 4 orbit views (front, side, back, side).
TINY_EVAL = EvalConfig(iou_resolution=24, n_yaw=8, mesh_resolution=24, n_surface=256, views=4)
TINY = ("grid.resolution=8", f"camera.width={RES}", f"camera.height={RES}", "render.num_samples=16")


@pytest.fixture(scope="module")
def tiny_prior():
    """The exact prior over 2 prompts x 24 ground-truth views at 16 px (~2 s to render)."""
    data = render_dataset(DatasetConfig(views_per_prompt=24, resolution=RES), PROMPTS, False)
    views = [data.view_names[int(v)] for v in data.view_labels]
    return ExactPrior(data.images.float() / 255, data.labels, data.prompts, views=views)


# The --quick scene (Gaussians, then their mesh), shrunk: 64 Gaussians, a 12^3 marching-cubes
# mesh refined for the last 2 of 4 steps.
TINY_QUICK = (
    *TINY[1:],
    "gaussians.initial_count=64",
    "mesh.resolution=12",
    "mesh.steps=2",
)


def quick(seeds=1, prompts=None):
    """The --quick benchmark, shrunk further to 4 steps on a tiny scene."""
    return bench_config(
        quick=True,
        prompts=prompts,
        seeds=seeds,
        steps=4,
        overrides=TINY_QUICK,
        eval_config=TINY_EVAL,
    )


def test_gaussians_are_scored_at_the_level_each_scene_measures(tmp_path, tiny_prior):
    from ssd3d.bench.tables import notes

    cfg = bench_config(
        estimators="sds",
        prompts=PROMPTS[:1],
        steps=2,
        checkpoints=1,
        overrides=(*TINY[1:], "representation=gaussians", "gaussians.initial_count=64"),
        eval_config=TINY_EVAL,
    )
    run_bench(cfg, tmp_path, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["threshold"] == "measured"
    assert all(run["status"] == "ok" for run in data["runs"])
    assert any("the level each scene measures from its renders" in n for n in notes(data))
    fixed = bench_config(
        estimators="sds",
        prompts=PROMPTS[:1],
        steps=2,
        checkpoints=1,
        overrides=(*TINY[1:], "representation=gaussians", "gaussians.initial_count=64",
                   "gaussians.mesh_threshold=0.5"),
        eval_config=TINY_EVAL,
    )  # fmt: skip
    run_bench(
        fixed, tmp_path / "f", prior=tiny_prior, judge=None, progress=False, echo=lambda s: None
    )
    assert json.loads((tmp_path / "f" / "results.json").read_text())["threshold"] == 0.5


def test_quick_bench_writes_results_table_and_plot_then_resumes(tmp_path, tiny_prior):
    out = tmp_path / "b"
    cfg = quick(prompts=PROMPTS[1:])
    first = run_bench(cfg, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    n = len(QUICK_ESTIMATORS) + 1  # and the oracle row, first
    assert len(first.ran) == n and first.skipped == []
    assert first.ran[0] == (ORACLE_LABEL, PROMPTS[1], 0)

    data = json.loads((out / "results.json").read_text())
    # Scored at the level each scene measures from its renders (the Gaussians', then the
    # mesh's own inside).
    assert data["config"]["eval"]["threshold"] is None and data["threshold"] == "measured"
    assert data["config"]["checkpoints"] == [0, 2, 4]
    assert data["config"]["overrides"][0] == "representation=mesh"  # the quick preset's, first
    assert len(data["runs"]) == n
    for run in data["runs"]:
        assert run["status"] == "ok" and run["steps_done"] == 4
        assert [c["step"] for c in run["checkpoints"]] == [0, 2, 4]
        end = run["checkpoints"][-1]
        assert 0 <= end["iou"] <= 1 and end["chamfer"] > 0 and 0 <= end["colour_error"] <= 3**0.5
        assert math.isnan(end["r_precision"]) and math.isnan(end["multi_face"])  # no judge
        assert run["train_seconds"] > 0
    # The initial scene is the same blob for every run of a prompt.
    assert len({json.dumps(r["checkpoints"][0]) for r in data["runs"]}) == 1

    table = (out / "table.md").read_text()
    for label in [ORACLE_LABEL, *(derive_label(s) for s in QUICK_ESTIMATORS)]:
        assert f"| {label} |" in table
    assert "| *initial blob* |" in table and "from the initial blob (0) to the oracle (1)" in table
    assert "no judge" in table and "the level each scene measures from its renders" in table
    image = iio.imread(out / "metrics_vs_steps.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 800

    # Same folder again: nothing to do. With a second seed: only the new runs.
    again = run_bench(cfg, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    assert again.ran == [] and len(again.skipped) == n
    assert json.loads((out / "results.json").read_text())["runs"] == data["runs"]
    more = quick(seeds=2, prompts=PROMPTS[1:])
    grown = run_bench(more, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    labels = [ORACLE_LABEL, *(derive_label(s) for s in QUICK_ESTIMATORS)]
    assert sorted(grown.ran) == sorted((label, PROMPTS[1], 1) for label in labels)
    assert len(json.loads((out / "results.json").read_text())["runs"]) == n + len(grown.ran)


class _NaNWithoutPrompt:
    """The tiny prior, except that a batch holding the unconditional row gives NaN noise:
    estimators that need eps_uncond fail, the cond-only mode-seeking term does not."""

    def __init__(self, prior: ExactPrior) -> None:
        self.prior, self.alphas_cumprod = prior, prior.alphas_cumprod

    def embed(self, prompts):
        return self.prior.embed(prompts)

    def encode(self, images):
        return self.prior.encode(images)

    def predict_noise(self, x_t, t, cond):
        eps = self.prior.predict_noise(x_t, t, cond)
        return eps * math.nan if bool((cond == UNCONDITIONAL).any()) else eps


def test_a_run_with_a_nan_gradient_is_recorded_and_the_others_go_on(tmp_path, tiny_prior):
    cfg = bench_config(
        # csd first: the timing run before the runs fails too, and must not stop the bench.
        estimators="csd;mode-seeking;x:mode-seeking variance_reduction=none",
        prompts=PROMPTS[1:],
        steps=4,
        checkpoints=1,
        overrides=TINY,
        eval_config=TINY_EVAL,
    )
    prior = _NaNWithoutPrompt(tiny_prior)
    out = run_bench(cfg, tmp_path / "b", prior=prior, judge=None, progress=False, echo=print)
    runs = {r["label"]: r for r in out.results["runs"]}
    # The oracle (first, no prior) is unaffected; csd fails, the mode-seeking runs go on.
    assert [r["status"] for r in runs.values()] == ["ok", "failed", "ok", "ok"]
    assert runs["csd"]["steps_done"] == 0 and "non-finite" in runs["csd"]["error"]
    assert [c["step"] for c in runs["csd"]["checkpoints"]] == [0]  # the blob, nothing after
    assert [c["step"] for c in runs["x"]["checkpoints"]] == [0, 4]
    table = (tmp_path / "b" / "table.md").read_text()
    assert "| 0/1 |" in table and "Failed: csd | a yellow wedge | seed 0: non-finite" in table
    assert (tmp_path / "b" / "metrics_vs_steps.png").is_file()


def test_bench_refuses_to_continue_with_other_settings(tmp_path, tiny_prior):
    out = tmp_path / "b"
    (out).mkdir()
    (out / "notes.txt").write_text("someone else's folder")
    with pytest.raises(SSD3DError, match="not empty"):
        run_bench(quick(), out, prior=tiny_prior, judge=None, progress=False, echo=print)


def test_bench_refuses_to_add_runs_made_with_other_default_settings(tmp_path, tiny_prior):
    # A default changed in the code since the folder's runs (its overrides are the same).
    cfg = bench_config(
        estimators="sds", prompts=PROMPTS[1:], steps=2, checkpoints=1, overrides=TINY,
        eval_config=TINY_EVAL,
    )  # fmt: skip
    out = tmp_path / "b"
    quiet = {"prior": tiny_prior, "judge": None, "progress": False, "echo": lambda s: None}
    run_bench(cfg, out, **quiet)
    path = out / "results.json"
    data = json.loads(path.read_text())
    data["generate_config"]["optim"]["lr_density"] *= 2
    data["generate_config"]["added_since"] = 1  # a setting the code no longer has: not compared
    path.write_text(json.dumps(data))
    # Nothing to add: the table is rewritten and the file keeps its runs' settings.
    assert run_bench(cfg, out, **quiet).ran == []
    assert json.loads(path.read_text())["generate_config"] == data["generate_config"]
    more = bench_config(
        estimators="sds", prompts=PROMPTS[1:], seeds=2, steps=2, checkpoints=1, overrides=TINY,
        eval_config=TINY_EVAL,
    )  # fmt: skip
    with pytest.raises(SSD3DError, match=r"other run settings \(optim.lr_density .* -> "):
        run_bench(more, out, **quiet)
    assert len(json.loads(path.read_text())["runs"]) == 2  # the oracle's and sds's, seed 0


def test_bench_refuses_to_continue_with_other_prior_weights(tmp_path, tiny_prior):
    # The prior's file replaced in place (a new shipped prior): same name, other numbers.
    weights = tmp_path / "data.safetensors"
    weights.write_bytes(b"first")
    cfg = bench_config(
        quick=True,
        estimators="sds",
        prompts=PROMPTS[1:],
        steps=2,
        model=str(weights),
        overrides=TINY_QUICK,
        eval_config=TINY_EVAL,
    )
    out = tmp_path / "b"
    run_bench(cfg, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    made = json.loads((out / "results.json").read_text())["prior_info"]["weights"]
    assert made == hashlib.sha256(b"first").hexdigest()[:12]
    weights.write_bytes(b"second")
    with pytest.raises(SSD3DError, match="other exact weights"):
        run_bench(cfg, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    part = json.loads((out / "results.json").read_text())
    other = {**part, "prior_info": {**part["prior_info"], "weights": "0" * 12}}
    with pytest.raises(SSD3DError, match="other prior weights"):
        merge_results([part, other])


def test_prior_weights_name_the_toy_file_and_nothing_without_one(tmp_path):
    shipped = hashlib.sha256(shipped_prior_path().read_bytes()).hexdigest()[:12]
    assert prior_weights("toy", None) == shipped
    assert prior_weights("exact", None) is None  # named by its settings, in the overrides
    assert prior_weights("stable-diffusion", "some/model") is None


def _hand_made_results() -> dict:
    """Three runs of 'a' (IoU 0.5, 0.7, 0.9), two of 'b' (one failed), known answers."""

    def run(label, spec, prompt, seed, iou, status="ok"):
        end = {
            "step": 10,
            "iou": iou,
            "chamfer": 1 - iou,
            "colour_error": 0.1,
            "psnr": 20.0,
            "psnr_yaw0": 20.0,
            "r_precision": math.nan,
            "multi_face": math.nan,
        }
        points = [{**end, "step": 0, "iou": 0.3}] + ([end] if status == "ok" else [])
        return {
            "label": label,
            "spec": spec,
            "canonical": canonical[spec],
            "prompt": prompt,
            "seed": seed,
            "steps": 10,
            "status": status,
            "error": None if status == "ok" else "non-finite",
            "checkpoints": points,
            "train_seconds": 2.0,
        }

    from ssd3d.estimators import build_estimator, describe

    canonical = {s: describe(build_estimator(s)) for s in ("sds", "ssd tau=600")}
    runs = [
        run("a", "sds", "a red cube", 0, 0.5),
        run("a", "sds", "a red cube", 1, 0.7),
        run("a", "sds", "a blue torus", 0, 0.9),
        run("b", "ssd tau=600", "a red cube", 0, 0.8),
        run("b", "ssd tau=600", "a red cube", 1, 0.0, status="failed"),
    ]
    config = {
        "estimators": [{"label": "a", "spec": "sds"}, {"label": "b", "spec": "ssd tau=600"}],
        "prompts": ["a red cube", "a blue torus"],
        "seeds": [0, 1],
        "steps": 10,
        "checkpoints": [0, 10],
        "prior": "exact",
        "model": None,
        "overrides": [],
        "eval": {**EvalConfig().__dict__},
    }
    return {
        "format": "ssd3d-bench",
        "config": config,
        "runs": runs,
        "threshold": 2.0,
        "judge": {"available": False, "note": "missing"},
    }


def test_aggregation_gives_known_mean_and_sample_std():
    data = _hand_made_results()
    summary = aggregate(data)
    a, b = summary["a"]["iou"], summary["b"]["iou"]
    assert a.n == 3 and a.mean == pytest.approx(0.7) and a.std == pytest.approx(0.2)
    assert b.n == 1 and b.mean == pytest.approx(0.8) and math.isnan(b.std)  # failed run left out
    assert summary["a"]["r_precision"].n == 0  # NaN (no judge) is not a value
    table = markdown_table(data)
    row_a = next(line for line in table.splitlines() if line.startswith("| a |"))
    row_b = next(line for line in table.splitlines() if line.startswith("| b |"))
    # IoU: b's 0.800 beats a's 0.700 ± 0.200; Chamfer (lower is better) likewise.
    assert "| 0.700 ± 0.200 |" in row_a and "| **0.800** |" in row_b
    assert "| 0.300 ± 0.200 |" in row_a and "| **0.200** |" in row_b
    assert row_a.endswith("| 3/3 |") and row_b.endswith("| 1/2 |")
    assert "no judge" in row_a and "Failed: b | a red cube | seed 1: non-finite" in table


def test_summary_of_inf_and_empty():
    assert Summary.of([1.0, math.inf]).mean == math.inf
    assert Summary.of([math.nan]).text(2) == "–"
    assert Summary.of([0.25]).text(2) == "0.25"


def test_bad_input_fails_before_any_run(tmp_path, tiny_prior):
    with pytest.raises(SSD3DError, match="tua"):
        bench_config(estimators="sds;ssd tua=600")
    with pytest.raises(SSD3DError, match="unknown estimator"):
        bench_config(estimators="sdss")
    with pytest.raises(SSD3DError, match="unknown prompt"):
        bench_config(prompts="a green cube;a plaid cube")
    with pytest.raises(SSD3DError, match="grid.resolutoin"):
        bench_config(overrides=["grid.resolutoin=8"])
    # In the vocabulary but not in the prior's dataset: refused before the first run.
    cfg = bench_config(
        quick=True, prompts="a red torus", overrides=TINY_QUICK, eval_config=TINY_EVAL
    )
    out = tmp_path / "b"
    with pytest.raises(SSD3DError, match="a red torus"):
        run_bench(cfg, out, prior=tiny_prior, judge=None, progress=False, echo=lambda s: None)
    assert not (out / "results.json").exists()


def test_estimator_items_take_labels_and_derive_them():
    entries = parse_estimators("sds guidance_scale=100; SSD-600: ssd tau=600 ;ssd match_norm=false")
    assert [(e.label, e.spec) for e in entries] == [
        ("sds s=100", "sds guidance_scale=100"),
        ("SSD-600", "ssd tau=600"),
        ("ssd norm=false", "ssd match_norm=false"),
    ]
    with pytest.raises(SSD3DError, match="distinct"):
        bench_config(estimators="ssd;x:ssd tau=1;ssd")
    with pytest.raises(SSD3DError, match="'ssd' and 'x' are the same estimator"):
        bench_config(estimators="ssd;x:ssd tau=800")  # tau=800 is the default


def test_preset_item_runs_the_estimator_generate_would_run():
    """``preset`` follows the prior's preset and its representation section, so a benchmark
    of the default run needs no copy of the preset's spec."""
    for prior, overrides in (("toy", ()), ("toy", ("representation=gaussians",)), ("exact", ())):
        generated = resolve_config(prior, {"prompt": "a red cube"}, list(overrides)).estimator
        for item, label in (("preset", "preset"), ("default run: preset", "default run")):
            (entry,) = bench_config(
                estimators=item,
                prior=prior,
                prompts="a red cube",
                overrides=overrides,
                oracle=False,
            ).estimators
            assert (entry.label, entry.spec) == (label, generated)
    # The toy preset's voxel and Gaussian sections differ, and the item follows each.
    voxels = bench_config(estimators="preset", prior="toy", oracle=False).estimators[0].spec
    splats = (
        bench_config(
            estimators="preset", prior="toy", oracle=False, overrides=["representation=gaussians"]
        )
        .estimators[0]
        .spec
    )
    assert voxels != splats
    # An override of the estimator is what the preset item then means.
    override = bench_config(
        estimators="preset", prior="toy", oracle=False, overrides=["estimator=csd"]
    ).estimators[0]
    assert override.spec == "csd"


class _FakeJudge:
    """Answers known scores: every view right for the prompt, half the view labels right;
    checks the view labels it is handed: those of the object turned by 90 degrees."""

    view_names = ["front", "side", "back", "overhead"]

    def r_precision(self, images, prompt):
        assert prompt == "a yellow wedge" and images.shape == (4, 3, RES, RES)
        return 1.0

    def multi_face_score(self, images, labels):
        # Orbit of 4 views at azimuths 0, 90, 180, -90 of a wedge whose front faces azimuth
        # 90: its side, front, side and back.
        assert labels.tolist() == [1, 0, 1, 2]
        return 0.5


class TrueObject(RadianceScene):
    """The true object as a scene whose renders are the true renders: a perfect scene."""

    def __init__(self, truth: GroundTruthField) -> None:
        super().__init__(truth, SolidBackground(), RenderConfig())

    def render(self, cameras, shading=None, generator=None):
        return render_truth(self.field, cameras, self.background, shading)


def test_scorer_gives_the_truth_a_perfect_score_at_its_yaw():
    """The true wedge turned by 90 degrees, as a scene: IoU 1 at yaw 90, identical renders
    there (PSNR inf), a finite PSNR against the unturned truth, and the judge asked for the
    view labels of the turned object."""
    truth = GroundTruthField("wedge", "yellow", yaw_deg=90)
    scene = TrueObject(truth)
    # Threshold at the true surface's density: occupancy is then exactly sdf < 0.
    cfg = EvalConfig(
        threshold=truth.surface_density,
        iou_resolution=32,
        n_yaw=4,
        mesh_resolution=48,
        n_surface=512,
        views=4,
    )
    metrics = Scorer(cfg, _FakeJudge()).score(scene, "a yellow wedge", RES, RES)
    assert metrics["yaw_deg"] == 90.0 and metrics["iou"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["colour_error"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["chamfer"] < 0.03  # marching cubes at 48^3: spacing 0.04
    assert metrics["psnr"] == math.inf and metrics["psnr_yaw0"] < 30
    assert metrics["r_precision"] == 1.0 and metrics["multi_face"] == 0.5
    # The threshold-free ones: the same silhouettes and depths, normals that agree.
    assert metrics["silhouette_iou"] == 1.0 and metrics["depth_error"] == 0.0
    assert metrics["normal_consistency"] > 0.9  # 48^3 marching cubes round the wedge's edges


def test_cli_bench_rejects_bad_estimator_before_running(tmp_path):
    import typer
    from typer.testing import CliRunner

    from ssd3d.commands.bench import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the name "bench"
    result = CliRunner().invoke(
        app, ["bench", "--estimators", "ssd tau=-5", "--out", str(tmp_path / "b")]
    )
    assert isinstance(result.exception, SSD3DError) and "tau" in str(result.exception)
    assert not (tmp_path / "b").exists()


def test_tables_script_prints_one_table_or_two_side_by_side(tmp_path, capsys):
    import runpy
    from pathlib import Path

    data = _hand_made_results()
    for name in ("exact", "toy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(data))
    script = Path(__file__).parents[2] / "scripts" / "bench_tables.py"
    main = runpy.run_path(str(script))["main"]
    assert main([str(tmp_path / "exact")]) == 0
    assert capsys.readouterr().out == markdown_table(data)
    assert main([str(tmp_path / "exact"), str(tmp_path / "toy"), "--names", "exact,toy"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert "IoU ↑ (exact) | IoU ↑ (toy)" in head
    row_a = next(line for line in out.splitlines() if line.startswith("| a |"))
    assert row_a.count("0.700 ± 0.200") == 2 and row_a.count("no judge") == 4
    assert main([str(tmp_path / "nowhere")]) == 2


def test_runs_scored_by_another_judge_are_not_mixed_into_a_file(tmp_path):
    from ssd3d.bench.results import JUDGE_RULE, check_same_judge, judge_identity

    now = judge_identity(None)  # the shipped judge
    assert now["rule"] == JUDGE_RULE and len(now["weights"]) == 12
    path = tmp_path / "results.json"
    check_same_judge({"runs": [], "judge": {"available": True}}, now, path)  # nothing to mix
    check_same_judge({"runs": [{}], "judge": {"available": True, **now}}, now, path)
    check_same_judge({"runs": [{}], "judge": {"available": False}}, now, path)  # unjudged
    first = {"runs": [{}], "judge": {"available": True, "note": ""}}  # before the rule
    with pytest.raises(SSD3DError, match="another judge or rule.*first judge"):
        check_same_judge(first, now, path)
    other = {"runs": [{}], "judge": {"available": True, "weights": "0" * 12, "rule": JUDGE_RULE}}
    with pytest.raises(SSD3DError, match="another judge"):
        check_same_judge(other, now, path)


def test_vsd_tables_say_what_the_prior_call_column_leaves_out():
    from pathlib import Path

    from ssd3d.bench import read_results
    from ssd3d.bench.tables import notes

    root = Path(__file__).resolve().parents[2] / "results" / "bench"
    for prior, words in (("toy", "LoRA copy"), ("exact", "closed form")):
        data = read_results(root / f"{prior}-peers" / "results.json")
        vsd = [n for n in notes(data) if n.startswith("VSD:")]
        assert len(vsd) == 1 and words in vsd[0], vsd
    sds_only = read_results(root / "exact-ssd-oracle" / "results.json")
    assert not any(n.startswith("VSD:") for n in notes(sds_only))
