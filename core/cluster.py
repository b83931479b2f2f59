"""Sweeps and batches on a Ray cluster (the optional `cluster` extra).

Each worker is a Ray actor (one GPU each where the cluster has GPUs, one CPU otherwise)
holding its own ModelCache and stored stage outputs, so models stay resident across the
cells it runs. Cells that share a chain's models and the recipe of every stage but the
last go to one worker, in order (it reuses their shared stages), and a group goes to a
worker that already holds its models when one does. Each cell comes back as its PNG files
(with their recipes), written into the caller's output folder. A worker that dies is
restarted and its pending cells are retried (max_restarts, max_task_retries).

    python main.py sweep PROJECT --x "2.strength=0.1,0.2" --out DIR --ray local
    python main.py batch JOBS.jsonl [--project BASE] --out DIR [--ray ADDRESS]
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import ProjectError
from core.project import Project

RESTARTS = 3


class ClusterError(Exception):
    """Ray is missing, or the cluster cannot be reached: one line."""


@dataclass
class CellJob:
    project: Project
    stem: str  # the files' stem in the output folder
    from_stage: int | None = None


@dataclass
class CellOutcome:
    files: list[Path] = field(default_factory=list)  # every stage's PNG, in order
    stages: list[dict] = field(default_factory=list)  # label, reused, seconds, drift (a dict or None)
    error: str = ""
    worker: int = -1


def connect(address: str) -> None:
    """'local' starts a Ray cluster on this machine; anything else is a cluster's address."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return
    from core.paths import REPO_ROOT

    try:
        if address == "local":
            # Workers on this machine import core from this checkout.
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
        else:
            # Other machines get this checkout's core package shipped to them.
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env={"py_modules": [str(REPO_ROOT / "core")]})
    except Exception as exc:  # ConnectionError and Ray's own
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def _worker_class():
    import ray

    @ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS)
    class CellWorker:
        """One engine with its models kept loaded between cells."""

        def __init__(self) -> None:
            from core.models import ModelCache
            from core.stage_store import StageStore

            self.models = ModelCache()
            self.store = StageStore.default()

        def pid(self) -> int:
            import os

            return os.getpid()

        def run(self, project_dict: dict, stem: str, from_stage: int | None) -> dict:
            import tempfile

            from core import events as ev
            from core.engine import OutputPlan, execute

            events: list = []
            with tempfile.TemporaryDirectory(prefix="handoff-cell-") as tmp:
                execute(Project.from_dict(project_dict), events.append, out=OutputPlan(Path(tmp), stem),
                        models=self.models, from_stage=from_stage, store=self.store)
                done = [e for e in events if isinstance(e, ev.JobFinished)]
                failed = [e for e in events if isinstance(e, ev.JobFailed)]
                stages = done[0].stages if done else []
                return {
                    "error": failed[0].message if failed else ("" if done else "the job did not finish"),
                    "files": [(Path(s.path).name, Path(s.path).read_bytes()) for s in stages],
                    "stages": [{"label": s.label, "reused": s.reused, "seconds": s.total_seconds,
                                "drift": s.drift.to_dict() if s.drift is not None else None} for s in stages],
                }

    return CellWorker


def affinity_key(project: Project) -> tuple[tuple[str, ...], str]:
    """Cells with one key share models and every stage but the last: one worker runs them."""
    enabled = project.enabled_stages()
    head = project.copy()
    head.stages = [s for _, s in enabled[:-1]]
    return tuple(s.model for _, s in enabled), json.dumps(head.to_dict(), sort_keys=True)


def assign(jobs: list[CellJob], workers: int) -> list[int]:
    """A worker for each job: groups (affinity_key) stay on one worker; a group goes to the
    least loaded worker, preferring one that already holds its models."""
    holds: list[set[str]] = [set() for _ in range(workers)]
    load = [0] * workers
    group_of: dict[tuple, int] = {}
    out = []
    for job in jobs:
        key = affinity_key(job.project)
        if key not in group_of:
            models = set(key[0])
            # The least loaded worker; of those, one that already holds the models.
            group_of[key] = min(range(workers), key=lambda w: (load[w], not models <= holds[w]))
            holds[group_of[key]] |= models
        w = group_of[key]
        load[w] += 1
        out.append(w)
    return out


def run_cells(jobs: list[CellJob], out_dir: Path, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None, on_workers: Callable[[list], None] | None = None
              ) -> list[CellOutcome]:
    """Run the jobs on the connected cluster; write each one's PNGs into out_dir."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = workers or max(1, gpus or min(len(jobs), int(resources.get("CPU", 1))))
    options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    cls = _worker_class()
    actors = [cls.options(**options).remote() for _ in range(count)]
    if on_workers is not None:
        on_workers(actors)
    where = assign(jobs, count)
    pending = {}
    for n, (job, w) in enumerate(zip(jobs, where)):
        ref = actors[w].run.remote(job.project.to_dict(), job.stem, job.from_stage)
        pending[ref] = n
    outcomes: list[CellOutcome] = [CellOutcome(worker=w) for w in where]
    done = 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        n = pending.pop(ready[0])
        outcome = outcomes[n]
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # the worker died more often than it may restart
            outcome.error = f"worker lost: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        else:
            from core.atomic import write_bytes

            outcome.error, outcome.stages = result["error"], result["stages"]
            outcome.files = [write_bytes(out_dir / name, data) for name, data in result["files"]]
        done += 1
        if progress is not None:
            progress(done, len(jobs))
    for a in actors:
        ray.kill(a, no_restart=True)
    return outcomes


def progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(1, total)
    end = "\n" if done == total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} cells", end=end, file=sys.stderr, flush=True)


def run_sweep_on_ray(project: Project, x, y, out_dir: Path, workers: int | None = None, progress=None,
                     on_workers=None):
    """core.sweep.run_sweep, its cells on the cluster: the same files, grid and summary."""
    from PIL import Image

    from core.drift import Drift
    from core.sweep import cell_stem, cells, finish, reuse_from

    started = time.perf_counter()
    todo = cells(project, x, y)
    start_at = reuse_from(project)
    jobs = [CellJob(c.project, cell_stem(c, y is not None), start_at) for c in todo]
    outcomes = run_cells(jobs, Path(out_dir) / "cells", workers, progress, on_workers)
    for cell, o in zip(todo, outcomes):
        cell.error = o.error
        cell.seconds = sum(s["seconds"] for s in o.stages)
        cell.reused = sum(1 for s in o.stages if s["reused"])
        if o.files:
            cell.path = o.files[-1]
            with Image.open(cell.path) as im:
                cell.image = im.convert("RGB")
            if len(o.files) > 1:
                with Image.open(o.files[-2]) as im:
                    cell.input_image = im.convert("RGB")
        drifts = [s["drift"] for s in o.stages if s["drift"] is not None]
        cell.drift = Drift(**drifts[-1]) if drifts else None
    return finish(todo, x, y, out_dir, time.perf_counter() - started)


def read_batch(path: Path, base: Project | None = None) -> list[Project]:
    """A batch file: JSON Lines, each a project (a dict with "stages", or {"project": {...}}),
    or fields laid over `base` ({"prompt": "...", "seed": 3, "negative_prompt": "..."})."""
    from core.project import validate

    projects = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ProjectError([f"batch file {path}: {exc.strerror or exc}"]) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ProjectError([f"{where}: not JSON ({exc.msg})"]) from None
        if not isinstance(entry, dict):
            raise ProjectError([f"{where}: each line is a JSON object"])
        entry = entry.get("project", entry)
        if isinstance(entry, dict) and "stages" not in entry:
            if base is None:
                raise ProjectError([f"{where}: a line without stages needs --project for its chain"])
            unknown = set(entry) - {"prompt", "negative_prompt", "seed", "width", "height"}
            if unknown:
                raise ProjectError([f"{where}: unknown field(s) {', '.join(sorted(unknown))}"])
            entry = {**base.to_dict(), **entry}  # laid over the base, then typed like any project
        try:
            p = Project.from_dict(entry)
            validate(p)
        except ProjectError as exc:
            raise ProjectError([f"{where}: {exc}"]) from None
        projects.append(p)
    if not projects:
        raise ProjectError([f"batch file {path} holds no job"])
    return projects


def run_batch_locally(projects: list[Project], out_dir: Path, progress=None) -> list[CellOutcome]:
    """The same batch on this machine, one engine, models kept loaded."""
    from core import events as ev
    from core.engine import OutputPlan, execute
    from core.models import ModelCache

    models = ModelCache()
    outcomes = []
    for n, p in enumerate(projects):
        events: list = []
        execute(p, events.append, out=OutputPlan(Path(out_dir), f"job-{n + 1}"), models=models)
        done = [e for e in events if isinstance(e, ev.JobFinished)]
        failed = [e for e in events if isinstance(e, ev.JobFailed)]
        stages = done[0].stages if done else []
        outcomes.append(CellOutcome([Path(s.path) for s in stages],
                                    [{"label": s.label, "reused": s.reused, "seconds": s.total_seconds,
                                      "drift": s.drift.to_dict() if s.drift else None} for s in stages],
                                    failed[0].message if failed else ""))
        if progress is not None:
            progress(n + 1, len(projects))
    return outcomes


def batch_jobs(projects: list[Project]) -> list[CellJob]:
    return [CellJob(p, f"job-{n + 1}") for n, p in enumerate(projects)]


def describe(outcomes: list[CellOutcome]) -> str:
    lines = []
    for n, o in enumerate(outcomes, 1):
        lines.append(f"job {n}: " + (f"failed: {o.error}" if o.error else str(o.files[-1] if o.files else "")))
    return "\n".join(lines)
