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

from core import checked
from core.errors import ProjectError, ReadError
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


PROBE_SECONDS = 5.0  # a reachable head answers a TCP connect in milliseconds
RAY_CLIENT_PORT = 10001  # `ray start --head`'s defaults, for an address given without a port
RAY_GCS_PORT = 6379
CONNECT_RETRIES = {"RAY_NUM_REDIS_GET_RETRIES": "5", "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "3",
                   "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "4"}


def ray_endpoint(address: str) -> tuple[str, int]:
    """(host, port) that a --ray address (host:port, ray://host[:port], auto) is reached at,
    or ClusterError. `auto` is what Ray itself would use: RAY_ADDRESS, else the cluster
    `ray start` last started on this machine."""
    text = address.strip()
    if text == "auto":
        import os
        import tempfile

        found = os.environ.get("RAY_ADDRESS", "").strip()
        if not found:
            current = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"
            try:
                found = current.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                raise ClusterError("--ray auto: no Ray cluster runs on this machine (RAY_ADDRESS is not set and "
                                   "`ray start --head` has not run); give its address, or --ray local") from None
        if found == "auto":
            raise ClusterError("--ray auto: RAY_ADDRESS is 'auto' too; give the cluster's address")
        return ray_endpoint(found)
    client = text.startswith("ray://")
    rest = text[len("ray://"):] if client else text
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port = rest.rstrip("/"), str(RAY_CLIENT_PORT if client else RAY_GCS_PORT)
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ClusterError(f"--ray '{address}' is not an address (host:port, ray://host:port, auto or local)")
    return host, int(port)


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """ClusterError, in seconds, when nothing listens at the address: ray.init would retry
    for minutes, printing its own warnings, before it gives up."""
    import socket

    host, port = ray_endpoint(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({host}:{port}: {why}); "
                           "is `ray start --head` running there?") from None


_connected_here: list[str] = []  # the address connect() called ray.init for, if it did


def connect(address: str) -> None:
    """'local' starts a Ray cluster on this machine; anything else is a cluster's address,
    probed first (probe) so an unreachable one is refused in seconds."""
    import os

    if address != "local":
        probe(address)
        # Something answered: if it is not Ray, Ray's own retries would take 20 s (GCS) or
        # 35 s (client) to say so. Fewer, unless the user set them.
        for name, value in CONNECT_RETRIES.items():
            os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return
    import signal

    from core.paths import REPO_ROOT

    # ray.init makes SIGTERM a sys.exit(15); the command line's handlers come back after it.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address == "local":
            # Workers on this machine import core from this checkout.
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
        else:
            import warnings

            # Other machines get this checkout's core package shipped to them.
            with warnings.catch_warnings():  # the client's "connection timed out": the error below says it
                warnings.simplefilter("ignore", UserWarning)
                ray.init(address=address, log_to_driver=False, configure_logging=False,
                         runtime_env={"py_modules": [str(REPO_ROOT / "core")]})
    except Exception as exc:  # ConnectionError and Ray's own
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    else:
        _connected_here.append(address)
    finally:
        for sig, handler in handlers.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                try:
                    signal.signal(sig, handler)
                except ValueError:  # not the main thread: Ray could not set its own either
                    pass


def disconnect() -> None:
    """Shut down what connect() started (a `local` cluster's processes, a driver's link):
    the command line leaves with os._exit, which runs none of Ray's exit hooks."""
    if _connected_here:
        import ray

        _connected_here.clear()
        ray.shutdown()


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


# A line is one project: it may be as large as a project file's manifest, no larger.
MAX_LINE_BYTES = checked.MAX_JSON_BYTES
BATCH_FIELDS = ("prompt", "negative_prompt", "seed", "width", "height")


@dataclass
class Batch:
    jobs: list[Project]
    lines: list[int]  # each job's line in the file
    problems: list[str]  # one line per bad line: "FILE, line N: why"


def check_batch(path: Path, base: Project | None = None, max_jobs: int | None = None) -> Batch:
    """Every line of a batch file read and checked before any job runs (JSON Lines, each a
    project: a dict with "stages", or {"project": {...}}, or fields laid over `base`
    ({"prompt": "...", "seed": 3, "negative_prompt": "..."})). The file must be a regular
    file, each line UTF-8 JSON of at most MAX_LINE_BYTES nested at most checked.MAX_NESTING
    deep; a bad line is a problem naming its line, the good lines are still jobs. Raises
    ReadError for a file that cannot be read at all or holds more than `max_jobs` lines."""
    from core.sweep import MAX_CELLS

    max_jobs = MAX_CELLS if max_jobs is None else max_jobs
    batch = Batch([], [], [])
    with checked.open_regular(path, f"batch file {path}") as f:
        n = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise ReadError(f"batch file {path} cannot be read ({exc.strerror or exc})") from None
            if not raw:
                break
            n += 1
            where = f"{path}, line {n}"
            if not raw.endswith(b"\n") and len(raw) > MAX_LINE_BYTES:
                _skip_line(f)
                batch.problems.append(f"{where} is longer than {MAX_LINE_BYTES // checked.MiB} MiB: "
                                      "a line is one project")
                continue
            if n == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
            if not raw.strip():
                continue
            if len(batch.jobs) + len(batch.problems) >= max_jobs:
                raise ReadError(f"batch file {path} holds more than {max_jobs} jobs: split it")
            try:
                batch.jobs.append(_batch_line(raw, base, where))
                batch.lines.append(n)
            except ProjectError as exc:
                batch.problems.append(str(exc))
    if not batch.jobs and not batch.problems:
        raise ReadError(f"batch file {path} holds no job")
    return batch


def _skip_line(f) -> None:
    """Read past the rest of an over-long line without keeping it."""
    while (block := f.readline(checked.MiB)) and not block.endswith(b"\n"):
        pass


def _batch_line(raw: bytes, base: Project | None, where: str) -> Project:
    from core.project import validate

    entry = checked.nesting(checked.parse_json(raw, where), where)
    if not isinstance(entry, dict):
        raise ProjectError([f"{where}: each line is a JSON object"])
    entry = entry.get("project", entry)
    if isinstance(entry, dict) and "stages" not in entry:
        if base is None:
            raise ProjectError([f"{where}: a line without stages needs --project for its chain"])
        unknown = set(entry) - set(BATCH_FIELDS)
        if unknown:
            raise ProjectError([f"{where}: unknown field(s) {checked.names(unknown)}"])
        entry = {**base.to_dict(), **entry}  # laid over the base, then typed like any project
    try:
        p = Project.from_dict(entry)
        validate(p)
    except ProjectError as exc:
        raise ProjectError([f"{where}: {exc}"]) from None
    return p


def read_batch(path: Path, base: Project | None = None) -> list[Project]:
    """The jobs of a batch file whose every line is good (check_batch), else ProjectError
    with one line per bad line."""
    batch = check_batch(path, base)
    if batch.problems:
        raise ProjectError(batch.problems)
    return batch.jobs


def run_batch_locally(projects: list[Project], out_dir: Path, progress=None, cancel=None) -> list[CellOutcome]:
    """The same batch on this machine, one engine, models kept loaded. A cancel stops the
    job running within a step, and no job starts after it."""
    from core import events as ev
    from core.engine import CancelToken, OutputPlan, execute
    from core.interrupts import reached
    from core.models import ModelCache

    models = ModelCache()
    cancel = cancel or CancelToken()
    outcomes = []
    for n, p in enumerate(projects):
        if n:
            reached("between-jobs", lambda: cancel.cancelled)
        if cancel.cancelled:
            break
        events: list = []
        execute(p, events.append, out=OutputPlan(Path(out_dir), f"job-{n + 1}"), models=models, cancel=cancel)
        done = [e for e in events if isinstance(e, ev.JobFinished)]
        failed = [e for e in events if isinstance(e, ev.JobFailed)]
        stages = done[0].stages if done else []
        outcomes.append(CellOutcome([Path(s.path) for s in stages],
                                    [{"label": s.label, "reused": s.reused, "seconds": s.total_seconds,
                                      "drift": s.drift.to_dict() if s.drift else None} for s in stages],
                                    failed[0].message if failed else
                                    "cancelled" if any(isinstance(e, ev.JobCancelled) for e in events) else ""))
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
