"""Batches on a cluster: which worker takes which cell, batch files, and (with Ray
installed: the `cluster` extra) a local Ray cluster on the tiny models giving the same
images bit for bit as the local run, a killed worker losing nothing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from core.cluster import CellJob, assign, read_batch
from core.errors import ProjectError
from core.project import Project, Stage


def chain(model="a", seed=1, strength=0.5) -> Project:
    return Project(prompt="a cat", width=32, height=32, seed=seed,
                   stages=[Stage(model, steps=4), Stage(model, steps=4, handoff="pixel", strength=strength)])


def test_cells_sharing_a_chain_head_stay_on_one_worker_and_models_stay_warm():
    jobs = [CellJob(chain(seed=s, strength=t), "x") for s in (1, 2) for t in (0.3, 0.5, 0.7)]
    where = assign(jobs, 2)
    assert where[:3] == [where[0]] * 3 and where[3:] == [where[3]] * 3 and where[0] != where[3]
    # Of equally loaded workers, a new group goes to the one that holds its models.
    where = assign([CellJob(chain("a", 1), "x"), CellJob(chain("b", 1), "x"), CellJob(chain("b", 2), "x"),
                    CellJob(chain("a", 2), "x")], 2)
    assert where == [0, 1, 1, 0]


def test_batch_file_lines_are_projects_or_prompts_over_a_base(tmp_path):
    f = tmp_path / "jobs.jsonl"
    f.write_text(json.dumps(chain("m", 5).to_dict()) + "\n\n" + json.dumps({"prompt": "a dog", "seed": 9}) + "\n")
    a, b = read_batch(f, chain("base"))
    assert (a.seed, a.stages[0].model) == (5, "m") and (b.prompt, b.seed, b.stages[0].model) == ("a dog", 9, "base")
    with pytest.raises(ProjectError, match="needs --project"):
        read_batch(f)
    f.write_text('{"prompt": "x", "colour": 1}\n')
    with pytest.raises(ProjectError, match="line 1: unknown field"):
        read_batch(f, chain())


@pytest.fixture(scope="module")
def local_ray():
    # .ci/run's second step installs the `cluster` extra and sets HANDOFF_REQUIRE_RAY: there a
    # missing Ray fails the test instead of skipping it, so the step cannot pass without Ray.
    if os.environ.get("HANDOFF_REQUIRE_RAY"):
        import ray
    else:
        ray = pytest.importorskip("ray")
    from core.paths import REPO_ROOT

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_a_sweep_on_local_ray_matches_the_local_run_and_survives_a_killed_worker(local_ray, tiny_models, tmp_path):
    from core.cluster import run_sweep_on_ray
    from core.models import ModelCache
    from core.stage_store import StageStore
    from core.sweep import parse_axis, run_sweep
    from tests.engine_helpers import pixels

    p = chain(str(tiny_models["sd"]), 3)
    x, y = parse_axis("2.strength=0.25,0.5,0.75", p), parse_axis("seed=3,4", p)
    here = run_sweep(p, x, y, tmp_path / "here", models=ModelCache(), store=StageStore(tmp_path / "stages"))
    actors, killed = [], []

    def kill_one_after_the_first_cell(done, total):
        if done == 1 and not killed:
            victim = actors[1]
            killed.append(local_ray.get(victim.pid.remote()))
            local_ray.kill(victim, no_restart=False)  # as a crashed worker: restarted, its cells retried

    there = run_sweep_on_ray(p, x, y, tmp_path / "there", workers=2, progress=kill_one_after_the_first_cell,
                             on_workers=actors.extend)
    assert killed
    assert [c.error for c in there.cells] == [""] * 6
    for a, b in zip(here.cells, there.cells):
        assert a.labels == b.labels
        assert np.array_equal(pixels(a.image), pixels(b.image)), a.labels
        assert b.path.parent == tmp_path / "there" / "cells" and b.path.is_file()
        assert b.drift is not None and abs(a.drift.ssim - b.drift.ssim) < 1e-4
    assert (tmp_path / "there" / "grid.png").is_file()


def test_cli_batch_runs_locally_and_a_bad_file_exits_2(tiny_models, tmp_path, capsys):
    from core import project_file
    from core.cli import EXIT_USAGE, main

    base = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(chain(str(tiny_models["sd"]))))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a dog", "seed": 2}\n{"prompt": "a bird", "seed": 3}\n')
    assert main(["batch", str(jobs), "--project", str(base), "--out", str(tmp_path / "out")]) == 0
    assert sorted(f.name for f in (tmp_path / "out").glob("*.png")) == [
        "job-1-1-stage-1.png", "job-1-2-stage-2.png", "job-2-1-stage-1.png", "job-2-2-stage-2.png"]
    capsys.readouterr()
    jobs.write_text("not json\n")
    assert main(["batch", str(jobs), "--project", str(base), "--out", str(tmp_path / "o2")]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1
