"""The jobs waiting for the engine: Generate pressed while a job runs adds one here.

Plain data, no Qt: the window's queue panel shows and edits it, the runner takes the next
job when one ends. Kept as JSON in Handoff's home (paths.home()/queue.json) after every
change, so pending jobs survive a restart. The file is outside data when it is read back:
it is read with the same typed readers as a project file, a damaged one is kept as
queue.json.damaged (core.checked.keep_damaged), the queue starts with the jobs that could
be read, and `problem` says what was wrong, for the window to say once.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core import checked, paths
from core.atomic import write_text
from core.errors import ReadError
from core.project import Project

VERSION = 1
PROMPT_CHARS = 48  # a queue line holds the prompt's start, the chain and the seed
MODEL_CHARS = 24
MAX_QUEUE_BYTES = checked.MAX_JSON_BYTES  # each job carries its project: a few kB each


def elide(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def short_model(ref: str) -> str:
    """A model as a person names it: the file or folder name without its folder and
    extension, a hub id without its owner ("stabilityai/sdxl-turbo" → "sdxl-turbo"), a
    shipped model without its "builtin:"."""
    name = (ref or "").strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    for ext in (".safetensors", ".ckpt", ".gguf", ".pth", ".bin"):
        if name.lower().endswith(ext):
            name = name[:-len(ext)]
    return elide(name or "?", MODEL_CHARS)


def describe_job(project: Project, from_stage: int | None = None, title: str = "") -> str:
    """One line for a job, queued or running: its prompt (elided), its chain and its seed,
    e.g. '"a lighthouse at dusk" · sdxl-base → sdxl-refiner · seed 42'. Every entry read
    "a job" before, and queued jobs of one project differ only by their seed."""
    first = project.prompt.strip().splitlines()[0] if project.prompt.strip() else ""
    prompt = f'"{elide(first, PROMPT_CHARS)}"' if first else "(stage prompts)"
    chain = " → ".join(short_model(s.model) for _, s in project.enabled_stages()) or "no stage"
    where = f" · from stage {from_stage + 1}" if from_stage is not None else ""
    return f"{title + ' · ' if title else ''}{prompt} · {chain} · seed {project.seed}{where}"


@dataclass
class PendingJob:
    project: Project
    from_stage: int | None = None  # an index in project.stages: re-run from there
    title: str = ""
    added: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def describe(self) -> str:
        return describe_job(self.project, self.from_stage, self.title)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "added": self.added, "from_stage": self.from_stage,
                "project": self.project.to_dict()}

    @classmethod
    def from_dict(cls, d, where: str = "the job") -> "PendingJob":
        """A job from the queue file; ReadError naming the field when it is not one."""
        d = checked.table(d, where)
        try:
            project = Project.from_dict(d.get("project"))
        except ReadError as exc:
            raise ReadError(f"{where}: {exc}") from None
        from_stage = d.get("from_stage")
        if from_stage is not None:
            from_stage = checked.integer(from_stage, f"{where}: from_stage")
            if not 0 <= from_stage < len(project.stages):
                raise ReadError(f"{where}: from_stage {from_stage} is not a stage of its project "
                                f"(it has {len(project.stages)})")
        title = checked.text(d.get("title", ""), f"{where}: title")
        added = checked.text(d.get("added", ""), f"{where}: added")
        job_id = checked.text(d.get("id") or uuid.uuid4().hex[:8], f"{where}: id")
        return cls(project, from_stage, title, added, job_id)


def queue_file() -> Path:
    return paths.home() / "queue.json"


class JobQueue:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else queue_file()
        self.jobs: list[PendingJob] = []
        self.skipped = 0  # entries of the file that could not be read
        self.problem: str | None = None  # what was wrong with the file, to be said once

    @classmethod
    def load(cls, path: Path | None = None) -> "JobQueue":
        """The saved queue, never an error: a damaged file is kept aside and the jobs that
        could be read are queued (and saved at once, so the next start finds them)."""
        q = cls(path)
        if not q.path.exists():
            return q
        name = q.path.name
        problems: list[str] = []
        try:
            data = checked.table(checked.read_json_file(q.path, name, MAX_QUEUE_BYTES), name)
            entries = checked.listing(data.get("jobs", []), f"{name}: jobs")
        except ReadError as exc:
            problems, entries = [str(exc)], []
        for n, entry in enumerate(entries):
            try:
                q.jobs.append(PendingJob.from_dict(entry, f"{name}: job {n + 1}"))
            except ReadError as exc:
                q.skipped += 1
                problems.append(str(exc))
        if problems:
            moved, kept = checked.keep_damaged(q.path)
            queued = f"{len(q.jobs)} other job(s) queued" if q.jobs else "the queue starts empty"
            q.problem = f"{'; '.join(problems)} ({queued}; {kept})"
            if q.jobs and moved:
                try:
                    q.save()
                except OSError:
                    pass  # the jobs are in the window's queue and in the file kept aside
        return q

    def save(self) -> None:
        write_text(self.path, json.dumps({"version": VERSION, "jobs": [j.to_dict() for j in self.jobs]}, indent=1))

    def __len__(self) -> int:
        return len(self.jobs)

    def add(self, project: Project, from_stage: int | None = None, title: str = "") -> PendingJob:
        job = PendingJob(project.copy(), from_stage, title)
        self.jobs.append(job)
        self.save()
        return job

    def pop(self) -> PendingJob | None:
        if not self.jobs:
            return None
        job = self.jobs.pop(0)
        self.save()
        return job

    def remove(self, job_id: str) -> bool:
        before = len(self.jobs)
        self.jobs = [j for j in self.jobs if j.id != job_id]
        self.save()
        return len(self.jobs) != before

    def move(self, job_id: str, delta: int) -> None:
        """Move a job up (delta < 0) or down the queue."""
        i = next((n for n, j in enumerate(self.jobs) if j.id == job_id), None)
        if i is None:
            return
        k = max(0, min(len(self.jobs) - 1, i + delta))
        self.jobs.insert(k, self.jobs.pop(i))
        self.save()

    def clear(self) -> None:
        self.jobs = []
        self.save()
