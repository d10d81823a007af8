"""ssd3d batch without Ray: job files, the batch folder, interruption and resume, bad jobs,
and the one-line error when Ray is asked for but not installed."""

import json
import signal
import sys

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.batch.jobs import (
    GenerateJob,
    append_line,
    read_job_file,
    read_results,
    run_batch,
)
from ssd3d.batch.runner import WorkerContext
from ssd3d.cli import fill_optional_values
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import DEFAULT_PRIOR, resolve_config

from .conftest import SMALL, cli, failures, results, write_jobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

JOBS = [
    "a red disk",
    {"prompt": "a blue disk", "seed": 1},
    {"prompt": "a red disk", "estimator": "sds", "seed": 2},
    {"prompt": "a blue disk", "seed": 3, "overrides": {"optim.lr_density": 0.02}},
]


def test_job_file_lines_resolve_like_generate(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "# a catalogue\n"
        "a red cube\n"
        "\n"
        '{"prompt": "a blue torus", "estimator": "ssd tau=600", "seed": 3, "steps": 40}\n'
        '{"prompt": "a red cube", "steps": 50, "overrides": ["grid.resolution=20"]}\n'
        '{"prompt": "a red cube", "steps": 50, "overrides": {"grid.resolution": 20}}\n'
        "a red cube\n"
    )
    jobs = read_job_file(path, overrides=["steps=30", "grid.resolution=16"])
    assert [n for n, _ in jobs] == [2, 4, 5, 6, 7]
    plain, torus, listed, mapped, again = (cfg for _, cfg in jobs)
    # The same path as ssd3d generate: preset, fields, then the command line's key=values.
    assert plain == resolve_config(
        DEFAULT_PRIOR, {"prompt": "a red cube"}, ["steps=30", "grid.resolution=16"]
    )
    assert (torus.estimator, torus.seed, torus.steps) == ("ssd tau=600", 3, 30)
    # A job's own overrides come last; a list and a mapping say the same.
    assert listed.grid.resolution == 20 and listed == mapped
    ids = [GenerateJob(cfg, tmp_path).id for _, cfg in jobs]
    assert ids[0] == ids[4] and len(set(ids)) == 3  # same content, same id
    assert GenerateJob(plain, tmp_path).name == f"a-red-cube-{ids[0]}"


@pytest.mark.parametrize(
    "lines,needle",
    [
        (["a red cube", "a blue cube", '{"prompt": "a red cube",}'], "line 3: not valid JSON"),
        (['{"prompt": "a red cube", "sed": 1}'], "line 1: unknown field 'sed'"),
        (['{"seed": 1}'], "line 1: a job needs a non-empty prompt"),
        (['{"prompt": "a red cube", "seed": "one"}'], "line 1: config value for 'seed'"),
        (['{"prompt": "a red cube", "estimator": "ssdd"}'], "line 1: unknown estimator 'ssdd'"),
        (['{"prompt": "a red cube", "overrides": "grid.resolution=8"}'], "line 1: overrides"),
        (['{"prompt": "a red cube", "prior": "dalle"}'], "line 1: unknown prior 'dalle'"),
        (["# nothing", ""], "lists no jobs"),
    ],
)
def test_bad_job_file_is_one_line_error_and_writes_nothing(tmp_path, lines, needle):
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli("batch", path, "--out", tmp_path / "out")
    assert code == 2
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert f"{path} line" in err or "lists no jobs" in err
    assert not (tmp_path / "out").exists()


def test_command_line_override_errors_name_no_line(tmp_path):
    path = write_jobs(tmp_path / "jobs.txt", ["a red cube"])
    code, _, err = cli("batch", path, "--out", tmp_path / "out", "grid.resolutoin=8")
    assert code == 2 and err.startswith("error: unknown config key 'grid.resolutoin'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["batch", "bench"])
def test_ray_missing_is_a_one_line_error(tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    jobs = write_jobs(tmp_path / "jobs.txt", ["a red cube"])
    args = [jobs] if command == "batch" else ["--quick"]
    code, _, err = cli(command, *args, "--out", tmp_path / "out", "--ray")
    assert code == 2
    assert err == 'error: --ray needs Ray, an optional extra: pip install "ssd3d[ray]"\n'
    assert not (tmp_path / "out").exists()


def test_ray_takes_an_optional_address():
    assert fill_optional_values(["batch", "j.txt", "--ray"]) == ["batch", "j.txt", "--ray", "local"]
    assert fill_optional_values(["batch", "--ray", "j.txt"]) == ["batch", "--ray", "local", "j.txt"]
    assert fill_optional_values(["batch", "j", "--ray", "a=1"])[3:] == ["local", "a=1"]
    for address in ("auto", "10.0.0.5:6379", "ray://head:10001", "local"):
        assert fill_optional_values(["batch", "j", "--ray", address])[3:] == [address]


class CtrlCPrior:
    """A loaded prior; Ctrl-C arrives during its ``at``-th call (in the middle of a step)."""

    def __init__(self, inner, at):
        self.inner, self.at, self.calls = inner, at, 0
        self.alphas_cumprod = inner.alphas_cumprod

    def embed(self, prompts):
        return self.inner.embed(prompts)

    def encode(self, images):
        return self.inner.encode(images)

    def predict_noise(self, x_t, t, cond):
        self.calls += 1
        if self.calls == self.at:
            signal.raise_signal(signal.SIGINT)
        return self.inner.predict_noise(x_t, t, cond)


def scene(run_dir):
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def starts(run_dir) -> int:
    """How many attempts ran in this folder (its job.log's start lines)."""
    return (run_dir / "job.log").read_text().count(" start: ")


def test_interrupted_batch_resumes_without_redoing_complete_jobs(tmp_path, dataset_file):
    from ssd3d.pipeline.priors import ExactPriorSpec, load_prior

    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    kw = {"prior": "exact", "model": str(dataset_file), "overrides": SMALL}
    kw |= {"progress": False, "echo": print}
    straight = run_batch(jobs, tmp_path / "straight", **kw)
    assert len(straight.done) == 4 and not straight.failed
    reference = {r["id"]: r for r in results(tmp_path / "straight")}

    # Ctrl-C in the 4th step of the third job (one prior call a step, 6 steps a job).
    out = tmp_path / "b"
    prior = CtrlCPrior(load_prior(ExactPriorSpec(str(dataset_file), 16)), at=2 * 6 + 4)
    with pytest.raises(SSD3DError, match="interrupted: 2 of 4 jobs complete"):
        run_batch(jobs, out, context=WorkerContext(prior), **kw)
    assert [r["id"] for r in results(out)] == [j.id for j in straight.jobs[:2]]
    third = straight.jobs[2]
    partial = out / third.partial_dir.name
    assert not (out / third.name).exists()
    assert json.loads((partial / "checkpoint" / "state.json").read_text())["step"] == 4
    assert "interrupted" in (partial / "job.log").read_text()

    again = run_batch(jobs, out, **kw)
    assert [j.id for j in again.skipped] == [j.id for j in straight.jobs[:2]]
    assert [j.id for j in again.done] == [j.id for j in straight.jobs[2:]]
    lines = results(out)
    assert [r["id"] for r in lines] == [j.id for j in straight.jobs]  # each once
    by_id = {r["id"]: r for r in lines}
    assert by_id[third.id]["resumed_from_step"] == 4
    for job in straight.jobs:
        assert starts(out / job.name) == (2 if job.id == third.id else 1)
        # Bit for bit the uninterrupted batch, resumed job included.
        assert by_id[job.id]["scene_sha256"] == reference[job.id]["scene_sha256"]
        a, b = scene(tmp_path / "straight" / job.name), scene(out / job.name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(out.glob(".*.partial")) and not (out / ".running").exists()

    # The batch died between a job's rename and its results line (and tore the last
    # line): a rerun lists the complete folder again, runs nothing.
    text = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(text[:2]) + "\n" + text[2][:25])
    last = run_batch(jobs, out, **kw)
    assert len(last.skipped) == 4 and last.done == []
    assert sorted(read_results(out / "results.jsonl")) == sorted(reference)
    assert [starts(out / j.name) for j in straight.jobs] == [1, 1, 2, 1]


def test_a_bad_job_is_reported_while_the_others_finish(tmp_path, dataset_file):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"prompt": "a green disk"},  # not in the prior's vocabulary
            "a red disk",
            {"prompt": "a red disk", "estimator": "sds guidance_scale=1e40"},  # inf gradient
            "a red disk",  # the same job as line 2: run once
        ],
    )
    args = ["--prior", "exact", "--model", dataset_file, "--out", tmp_path / "out", "--quiet"]
    args += SMALL
    code, out, err = cli("batch", jobs, *args)
    assert code == 1
    assert "line 4 is the same job as line 2" in out
    assert "1 job completed, 0 already complete, 2 failed" in out
    assert "failed: line 1: a green disk: unknown prompt 'a green disk'" in err
    assert "failed: line 3: a red disk: non-finite score-distillation gradient" in err
    assert [r["prompt"] for r in results(tmp_path / "out")] == ["a red disk"]
    bad = failures(tmp_path / "out")
    assert [f["line"] for f in bad] == [1, 3] and all(f["error"] for f in bad)
    assert "traceback" not in bad[0]  # a job's own error needs no traceback
    # Run again: the complete job is skipped, the failed ones are tried again.
    code, out, _ = cli("batch", jobs, *args)
    assert code == 1 and "0 jobs completed, 1 already complete, 2 failed" in out
    assert len(failures(tmp_path / "out")) == 4


def test_results_lines_stand_alone_after_a_torn_write(tmp_path):
    path = tmp_path / "results.jsonl"
    append_line(path, {"id": "a"})
    with open(path, "a") as f:
        f.write('{"id": "b", "sta')  # the batch died mid-write
    append_line(path, {"id": "c"})
    assert sorted(read_results(path)) == ["a", "c"]


def test_batch_folder_must_be_a_batch_folder(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.txt", ["a red cube"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("someone else's")
    code, _, err = cli("batch", jobs, "--out", tmp_path / "out")
    assert code == 2 and "holds no results.jsonl" in err
