"""The pending jobs: order, removal, and a JSON file that survives a restart."""
from __future__ import annotations

from core import paths
from core.job_queue import JobQueue, queue_file
from core.project import Project, Stage


def project(seed: int) -> Project:
    return Project(prompt="a cat", width=32, height=32, seed=seed, stages=[Stage("m"), Stage("m", handoff="pixel")])


def test_queue_order_reorder_remove_and_restart():
    q = JobQueue.load()
    a, b = q.add(project(1)), q.add(project(2), from_stage=1)
    c = q.add(project(3))
    q.move(c.id, -5)
    assert [j.project.seed for j in q.jobs] == [3, 1, 2]
    assert q.remove(a.id) and not q.remove("nope")
    assert queue_file() == paths.home() / "queue.json" and queue_file().is_file()
    again = JobQueue.load()  # as after a restart
    assert [(j.project.seed, j.from_stage, j.id) for j in again.jobs] == [(3, None, c.id), (2, 1, b.id)]
    assert "from stage 2" in again.jobs[1].describe()
    assert again.pop().project.seed == 3 and len(JobQueue.load()) == 1


def test_the_queued_project_is_a_snapshot():
    q = JobQueue.load()
    p = project(1)
    q.add(p)
    p.seed = 99
    assert q.jobs[0].project.seed == 1


def test_a_damaged_queue_file_starts_empty_and_bad_entries_are_skipped():
    queue_file().parent.mkdir(parents=True, exist_ok=True)
    queue_file().write_text("{not json")
    assert len(JobQueue.load()) == 0
    queue_file().write_text('{"version": 1, "jobs": [{"project": {"stages": [{"bogus": 1}]}}, '
                            '{"project": {"prompt": "x", "stages": [{"model": "m"}]}}]}')
    q = JobQueue.load()
    assert len(q) == 1 and q.skipped == 1


def test_a_job_line_names_its_prompt_chain_and_seed():
    from core.job_queue import describe_job

    p = Project(prompt="a lighthouse on a cliff at dusk, volumetric light, film grain, 35mm, very detailed",
                width=32, height=32, seed=42,
                stages=[Stage("/models/sdxl-base.safetensors"), Stage("stabilityai/sdxl-refiner-1.0", handoff="latent")])
    line = describe_job(p, from_stage=1)
    assert line.startswith('"a lighthouse on a cliff') and "…" in line and "35mm" not in line, line
    assert "sdxl-base → sdxl-refiner-1.0" in line and "seed 42" in line and "from stage 2" in line
    q = JobQueue.load()
    assert q.add(p).describe() == describe_job(p)
    p.stages = [Stage("builtin:demo-base"), Stage("C:\\models\\refiner.ckpt", handoff="pixel")]
    assert "demo-base → refiner · seed 42" in describe_job(p)
