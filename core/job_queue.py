"""The jobs waiting for the engine: Generate pressed while a job runs adds one here.

Plain data, no Qt: the window's queue panel shows and edits it, the runner takes the next
job when one ends. Kept as JSON in Handoff's home (paths.home()/queue.json) after every
change, so pending jobs survive a restart; a damaged file starts an empty queue.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core import paths
from core.atomic import write_text
from core.errors import ProjectError
from core.project import Project

VERSION = 1


@dataclass
class PendingJob:
    project: Project
    from_stage: int | None = None  # an index in project.stages: re-run from there
    title: str = ""
    added: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def describe(self) -> str:
        prompt = self.project.prompt.strip().splitlines()[0] if self.project.prompt.strip() else "(stage prompts)"
        where = f", from stage {self.from_stage + 1}" if self.from_stage is not None else ""
        return f"{self.title or prompt[:60]} — seed {self.project.seed}, {len(self.project.enabled_stages())} stage(s){where}"

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "added": self.added, "from_stage": self.from_stage,
                "project": self.project.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PendingJob":
        return cls(Project.from_dict(d["project"]), d.get("from_stage"), str(d.get("title", "")),
                   str(d.get("added", "")), str(d.get("id") or uuid.uuid4().hex[:8]))


def queue_file() -> Path:
    return paths.home() / "queue.json"


class JobQueue:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else queue_file()
        self.jobs: list[PendingJob] = []
        self.skipped = 0  # entries of the file that could not be read

    @classmethod
    def load(cls, path: Path | None = None) -> "JobQueue":
        q = cls(path)
        try:
            data = json.loads(q.path.read_text())
            entries = data.get("jobs", []) if isinstance(data, dict) else []
        except (OSError, ValueError):
            return q
        for entry in entries:
            try:
                q.jobs.append(PendingJob.from_dict(entry))
            except (ProjectError, KeyError, TypeError, ValueError):
                q.skipped += 1
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
