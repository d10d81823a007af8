"""ssd3d batch and bench on a local Ray instance with 2 CPUs: the same bits as without Ray,
a killed worker's job retried and complete exactly once, bad jobs reported."""

import json
import logging
import os
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.batch.jobs import run_batch

from .conftest import SMALL, cli, failures, results, write_jobs

ray = pytest.importorskip("ray")

GOOD = [
    "a red disk",
    {"prompt": "a blue disk", "seed": 1},
    {"prompt": "a red disk", "estimator": "sds", "seed": 2},
    {"prompt": "a blue disk", "seed": 3, "overrides": {"optim.lr_density": 0.02}},
]
BAD = [
    {"prompt": "a green disk"},  # not in the prior's vocabulary
    {"prompt": "a red disk", "estimator": "sds guidance_scale=1e40"},  # inf gradient
]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module; the batches find it initialised and use it."""
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    yield
    ray.shutdown()


def scene(run_dir):
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def job_pids(run_dir) -> list[int]:
    """The pid of each attempt, from the job's own log."""
    lines = (run_dir / "job.log").read_text().splitlines()
    return [int(line.rsplit("pid ", 1)[1]) for line in lines if " start: " in line]


@pytest.fixture(scope="module")
def both_ways(local_ray, tmp_path_factory, dataset_file):
    """The same batch (4 good jobs, 2 bad) run here and, through the CLI, on Ray."""
    tmp = tmp_path_factory.mktemp("both")
    jobs = write_jobs(tmp / "jobs.jsonl", GOOD[:2] + BAD[:1] + GOOD[2:] + BAD[1:])
    here = run_batch(
        jobs,
        tmp / "here",
        prior="exact",
        model=str(dataset_file),
        overrides=SMALL,
        progress=False,
        echo=print,
    )
    code, out, err = cli(
        "batch",
        jobs,
        "--ray",
        "--prior",
        "exact",
        "--model",
        dataset_file,
        "--out",
        tmp / "ray",
        "--quiet",
        *SMALL,
    )
    return here, tmp / "ray", (code, out, err)


def test_ray_batch_gives_the_same_bits_as_without_ray(both_ways):
    here, ray_out, (code, out, _) = both_ways
    assert "on Ray (local)" in out
    seq = {r["id"]: r for r in results(here.out_dir)}
    on_ray = {r["id"]: r for r in results(ray_out)}
    assert len(seq) == 4 and on_ray.keys() == seq.keys()
    for job_id, record in seq.items():
        assert on_ray[job_id]["scene_sha256"] == record["scene_sha256"]
        a, b = scene(here.out_dir / record["run_dir"]), scene(ray_out / record["run_dir"])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # Really elsewhere: in Ray's worker processes, not in this one.
        assert job_pids(here.out_dir / record["run_dir"]) == [os.getpid()]
        assert os.getpid() not in job_pids(ray_out / record["run_dir"])
        assert (ray_out / record["run_dir"] / "mesh.glb").is_file()


def test_bad_jobs_on_ray_are_reported_while_the_others_finish(both_ways):
    here, ray_out, (code, out, err) = both_ways
    assert code == 1
    assert "4 jobs completed, 0 already complete, 2 failed" in out
    assert "failed: line 3: a green disk: unknown prompt 'a green disk'" in err
    assert "failed: line 6: a red disk: non-finite score-distillation gradient" in err
    for folder in (here.out_dir, ray_out):
        assert [f["line"] for f in failures(folder)] == [3, 6]


def test_a_killed_worker_is_retried_and_every_job_completes_once(local_ray, tmp_path, dataset_file):
    # One long job (200 steps, a checkpoint every 10) among three quick ones.
    long_job = {
        "prompt": "a blue disk",
        "seed": 7,
        "overrides": ["steps=200", "checkpoint_every=10"],
    }
    jobs = write_jobs(tmp_path / "jobs.jsonl", [long_job, *GOOD[:3]])
    out = tmp_path / "out"
    kw = {"prior": "exact", "model": str(dataset_file), "overrides": SMALL}
    kw |= {"progress": False, "echo": print}
    outcome = {}
    batch = threading.Thread(
        target=lambda: outcome.update(b=run_batch(jobs, out, ray="local", **kw))
    )
    batch.start()
    try:
        # Wait until the long job has a checkpoint, then kill its worker by its pid.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            partials = [p for p in out.glob(".a-blue-disk-*.partial")]
            state = partials[0] / "checkpoint" / "state.json" if partials else None
            if state is not None and state.is_file():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the long job never wrote a checkpoint")
        job_id = partials[0].name.split("-")[-1].removesuffix(".partial")
        marker = out / ".running" / f"{job_id}.json"
        pid = json.loads(marker.read_text().splitlines()[-1])["pid"]
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
    finally:
        batch.join(timeout=180)
    assert not batch.is_alive()
    done = outcome["b"]
    assert len(done.done) == 4 and done.failed == []
    lines = results(out)
    assert sorted(r["id"] for r in lines) == sorted(j.id for j in done.jobs)  # each once
    killed = next(r for r in lines if r["id"] == job_id)
    assert killed["attempts"] == 2 and killed["resumed_from_step"] >= 10
    assert job_pids(out / killed["run_dir"])[0] == pid  # the second attempt, a new worker
    assert len(job_pids(out / killed["run_dir"])) == 2
    assert (
        json.loads((out / killed["run_dir"] / "checkpoint" / "state.json").read_text())["step"]
        == 200
    )
    assert not list(out.glob(".*.partial")) and failures(out) == []


def test_bench_grid_on_ray_gives_the_same_results(local_ray, tmp_path):
    from ssd3d.bench import EvalConfig, bench_config, run_bench
    from ssd3d.toyworld.render_dataset import DatasetConfig, render_dataset

    data = render_dataset(DatasetConfig(views_per_prompt=8, resolution=16), ["a red cube"], False)
    data.save(tmp_path / "cube.safetensors")
    cfg = bench_config(
        estimators="sds guidance_scale=7.5;ssd",
        prompts="a red cube",
        steps=4,
        checkpoints=1,
        model=str(tmp_path / "cube.safetensors"),
        overrides=[
            "grid.resolution=8",
            "camera.width=16",
            "camera.height=16",
            "render.num_samples=16",
            "view_prompts.enabled=false",
        ],
        eval_config=EvalConfig(
            iou_resolution=16, n_yaw=4, mesh_resolution=16, n_surface=64, views=2
        ),
    )
    kw = {"judge": None, "progress": False, "echo": print, "threads": 1}
    here = run_bench(cfg, tmp_path / "here", **kw)
    there = run_bench(cfg, tmp_path / "ray", ray="local", **kw)
    assert len(here.ran) == len(there.ran) == 3 and there.failed == []  # the oracle too

    def scores(outcome):  # NaN-safe comparison through JSON
        return {r["label"]: json.dumps(r["checkpoints"]) for r in outcome.results["runs"]}

    assert scores(here) == scores(there)
    assert there.results["machine"]["ray"] == "local"
