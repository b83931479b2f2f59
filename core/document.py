"""The open project, Qt-free: the recipe, where it is saved, whether it has unsaved
changes, and the runs made with it (each stage's image, the image it refined, and its
timings). The window is a view of one Document and the command line can hold one too;
both feed it engine events through `record()`, and it tells whoever listens what changed.

Saved as a .handoff file (core.project_file). A session writes a lock file at start and
removes it on a clean exit; a lock left behind means the last session crashed, and its
autosave is offered back.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, replace as copy_of
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core import checked, paths
from core import events as ev
from core.atomic import write_text
from core.errors import ReadError
from core.project import Project
from core.project_file import HistoryImage, HistoryRun, ProjectDocument, load, save
from core.ran import StageRan

TIMING_FIELDS = ("load_seconds", "denoise_seconds", "decode_seconds", "total_seconds")
_ROW_KEYS = ("index", "label", "handoff", "steps_run", *TIMING_FIELDS, "peak_memory", "memory_kind", "path")

# What changed, as told to listeners.
CHANGED_PROJECT, CHANGED_MODIFIED, CHANGED_RUNS, RUN_STARTED, STAGE_ADDED, STAGE_UPDATED, RUN_ENDED = (
    "project", "modified", "runs", "run-started", "stage-added", "stage-updated", "run-ended")


@dataclass
class StageResult:
    index: int
    label: str
    handoff: str
    steps_run: int
    load_seconds: float
    denoise_seconds: float
    decode_seconds: float
    total_seconds: float
    peak_memory: int
    memory_kind: str
    path: str
    image: Any  # PIL image
    input_image: Any = None  # PIL image this stage refined, None for a generate stage
    preview: bool = False  # the image previews latents handed to the next stage
    reused: bool = False  # the stage did not run: its stored output was reused
    drift: Any = None  # core.drift.Drift of a refine stage
    ran: StageRan | None = None  # what ran: asked and run handoff, strength, why (kept in the history)

    @classmethod
    def from_event(cls, e: ev.StageFinished) -> "StageResult":
        return cls(e.index, e.label, e.handoff, e.steps_run, e.load_seconds, e.denoise_seconds, e.decode_seconds,
                   e.total_seconds, e.peak_memory, e.memory_kind, str(e.path), e.image, e.input_image, e.preview,
                   e.reused, e.drift, e.ran)


@dataclass
class Run:
    number: int  # 1-based, in this project
    started: str  # ISO time
    seconds: float = 0.0
    recipe: dict[str, Any] = field(default_factory=dict)  # Project.to_dict() at the time of the run
    stages: list[StageResult] = field(default_factory=list)
    outcome: str = "running"  # running, finished, cancelled, failed

    @property
    def label(self) -> str:
        return f"run {self.number}"

    def sources(self) -> list[tuple[str, Any]]:
        """Every image of the run, named for a picker: each stage's input and output."""
        out: list[tuple[str, Any]] = []
        for s in self.stages:
            if s.input_image is not None:
                out.append((f"{s.label} input", s.input_image))
            out.append((f"{s.label} output", s.image))
        return out


# ---------------------------------------------------------------- runs <-> the file's history


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _image(png: bytes):
    from core.images import read_image

    return read_image(png, "an image of the run history")


def run_to_history(run: Run) -> HistoryRun:
    images = [HistoryImage(s.index, s.label, _png(s.image), s.total_seconds) for s in run.stages]
    timings: list[dict] = []
    for s in run.stages:
        t: dict[str, Any] = {k: getattr(s, k) for k in _ROW_KEYS}
        t["preview"] = s.preview
        t["reused"] = s.reused  # its zero times and peak are not measurements: the table says so
        if s.ran is not None:
            t["ran"] = s.ran.to_dict()
        t["input"] = None
        if s.input_image is not None:
            # Inputs ride after the outputs; the timing row says where its input is.
            t["input"] = len(images)
            images.append(HistoryImage(s.index, f"{s.label} input", _png(s.input_image)))
        timings.append(t)
    return HistoryRun(run_id=f"run{run.number}", when=run.started, recipe=dict(run.recipe), images=images,
                      timings=timings + [{"run": {"number": run.number, "seconds": run.seconds, "outcome": run.outcome}}])


def _number(value, kind, default):
    return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def history_to_run(h: HistoryRun, fallback_number: int) -> Run:
    meta = next((t["run"] for t in h.timings if isinstance(t, dict) and isinstance(t.get("run"), dict)), {})
    rows = [t for t in h.timings if isinstance(t, dict) and "run" not in t]
    run = Run(_number(meta.get("number"), int, fallback_number), h.when, _number(meta.get("seconds"), float, 0.0),
              h.recipe, outcome=str(meta.get("outcome", "finished")))
    for n, t in enumerate(rows[:len(h.images)]):
        img, inp = h.images[n], t.get("input")
        run.stages.append(StageResult(
            index=_number(t.get("index"), int, img.stage), label=str(t.get("label") or img.label),
            handoff=str(t.get("handoff") or ""), steps_run=_number(t.get("steps_run"), int, 0),
            **{k: _number(t.get(k), float, 0.0) for k in TIMING_FIELDS},
            peak_memory=_number(t.get("peak_memory"), int, 0), memory_kind=str(t.get("memory_kind") or ""),
            path=str(t.get("path") or ""), image=_image(img.png),
            input_image=_image(h.images[inp].png) if isinstance(inp, int) and 0 <= inp < len(h.images) else None,
            preview=bool(t.get("preview", False)), reused=bool(t.get("reused", False)), ran=StageRan.from_dict(t.get("ran")),
        ))
    if not rows:  # a history written by another front end: images only
        for img in h.images:
            run.stages.append(StageResult(img.stage, img.label, "", 0, 0.0, 0.0, 0.0, img.seconds, 0, "", "",
                                          _image(img.png)))
    return run


# ---------------------------------------------------------------- the document

Listener = Callable[[str, Any], None]


class Document:
    """The open project. Listeners get (what changed, detail): CHANGED_PROJECT (a project
    was opened or replaced), CHANGED_MODIFIED (bool), CHANGED_RUNS (the list was replaced),
    RUN_STARTED / STAGE_ADDED / STAGE_UPDATED (a stage's preview replaced by its decode) /
    RUN_ENDED (the Run)."""

    def __init__(self, project: Project | None = None, path: Path | None = None, runs: list[Run] | None = None) -> None:
        from core.defaults import default_project

        self.project = project if project is not None else default_project()
        self.path = Path(path) if path else None
        self.runs: list[Run] = list(runs or [])
        self.modified = False
        self.current_run: Run | None = None
        self.generation = 0  # counts changes: a save knows whether the document changed while it wrote
        self.replacements = 0  # counts projects opened into it: a save knows whether its project is still here
        self._listeners: list[Listener] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.JobStarted: self._job_started,
            ev.StageFinished: self._stage_finished,
            ev.StageImageUpdated: self._stage_updated,
            ev.JobFinished: lambda e: self._end_run("finished", e.seconds),
            ev.JobFailed: lambda e: self._end_run("failed", None),
            ev.JobCancelled: lambda e: self._end_run("cancelled", None),
        }

    # ------------------------------------------------------------ listening

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, what: str, detail: Any = None) -> None:
        self.generation += 1
        for listener in list(self._listeners):
            listener(what, detail)

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "untitled"

    def set_modified(self, modified: bool = True) -> None:
        if modified:
            self.generation += 1  # every edit says so, also when already modified
        changed = modified != self.modified
        self.modified = modified
        if changed:
            self._tell(CHANGED_MODIFIED, modified)

    def replace(self, project: Project, path: Path | None, runs: list[Run]) -> None:
        """Another project in this document: opened, recovered or new."""
        self.project, self.path, self.runs, self.current_run = project, Path(path) if path else None, list(runs), None
        self.replacements += 1
        self.modified = False
        self._tell(CHANGED_PROJECT)
        self._tell(CHANGED_MODIFIED, False)

    def replace_recipe(self, project: Project) -> None:
        """The same project's settings as they were (undo, redo): the history and the path
        stay. A recipe from elsewhere is another document: `replace(project, None, [])`, so
        that saving it never overwrites the file this one came from."""
        self.project = project
        self._tell(CHANGED_PROJECT)
        self.set_modified(True)

    def remove_run(self, run: Run) -> None:
        if run in self.runs:
            self.runs.remove(run)
            self._tell(CHANGED_RUNS)

    # ------------------------------------------------------------ runs

    def begin_run(self, project: Project | None = None) -> Run:
        """The run a job about to start will fill (the recipe as it is now, or the queued
        job's)."""
        self.current_run = Run(len(self.runs) + 1, datetime.now().isoformat(timespec="seconds"),
                               recipe=(project or self.project).to_dict())
        return self.current_run

    def record(self, event) -> None:
        """An engine event of the current run."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _job_started(self, e: ev.JobStarted) -> None:
        run = self.current_run
        if run is not None and run not in self.runs:
            self.runs.append(run)
            self._tell(RUN_STARTED, run)

    def _stage_finished(self, e: ev.StageFinished) -> None:
        run = self.current_run
        if run is not None:
            run.stages.append(StageResult.from_event(e))
            run.seconds = sum(s.total_seconds for s in run.stages)
            self._tell(STAGE_ADDED, run)

    def _stage_updated(self, e: ev.StageImageUpdated) -> None:
        run = self.current_run
        stage = next((s for s in run.stages if s.index == e.index), None) if run is not None else None
        if stage is None:
            return
        stage.image, stage.preview, stage.path = e.image, e.preview, str(e.path)
        if e.input_image is not None:
            stage.input_image = e.input_image
        if e.drift is not None:
            stage.drift = e.drift
        stage.decode_seconds += e.decode_seconds
        stage.total_seconds += e.decode_seconds
        self._tell(STAGE_UPDATED, run)

    def _end_run(self, outcome: str, seconds: float | None) -> None:
        run, self.current_run = self.current_run, None
        if run is None:
            return
        run.outcome = outcome
        if seconds is not None:
            run.seconds = seconds
        if run in self.runs and not run.stages:
            self.remove_run(run)  # nothing came out of it: keep the history for runs with images
            return
        if run in self.runs:
            self._tell(RUN_ENDED, run)
            self.set_modified(True)  # the history is part of the document

    # ------------------------------------------------------------ files

    def save(self, path: Path | None = None) -> Path:
        target = Path(path or self.path or "")
        if not str(target) or target == Path(""):
            raise ValueError("no path to save to")
        snapshot = self.snapshot()
        write_snapshot(target, snapshot)
        self.saved(target, snapshot)
        return target

    def snapshot(self) -> "Snapshot":
        """The document as a save writes it, taken where the document lives: the recipe
        copied, each run and its rows copied (their images are only ever replaced, never
        changed in place), so `write_snapshot` may run on another thread while editing
        and runs go on."""
        runs = [copy_of(r, recipe=dict(r.recipe), stages=[copy_of(s) for s in r.stages]) for r in self.runs]
        return Snapshot(self.project.copy(), runs, self.path, self.generation, self.replacements)

    def saved(self, path: Path, snapshot: "Snapshot") -> bool:
        """`snapshot` is in the file at `path`: the document is saved there, and unmodified
        unless it changed since the snapshot was taken. False (and nothing changes) when
        another project was opened into the document meanwhile."""
        if snapshot.replacements != self.replacements:
            return False
        self.path = Path(path)
        if self.generation == snapshot.generation:
            self.set_modified(False)
        return True

    @classmethod
    def open(cls, path: Path) -> "Document":
        """Raises core.errors.ProjectError when the file cannot be read as a project."""
        project, runs = read_project(Path(path))
        return cls(project, Path(path) if Path(path).suffix.lower() in (".handoff", ".json") else None, runs)

    def write_autosave(self) -> Path:
        return write_autosave(self.snapshot())


@dataclass(frozen=True)
class Snapshot:
    project: Project
    runs: list[Run]
    path: Path | None  # where the document was saved when the snapshot was taken
    generation: int
    replacements: int


def write_snapshot(path: Path, snapshot: Snapshot) -> Path:
    """Write a snapshot as a .handoff file, atomically (core.atomic): the slow part of a
    save (each image PNG-encoded, the archive written), safe on any thread."""
    return save(Path(path), ProjectDocument(snapshot.project, [run_to_history(r) for r in snapshot.runs]))


def write_autosave(snapshot: Snapshot) -> Path:
    """The autosave file, and beside it where the project was saved; any thread."""
    target = write_snapshot(autosave_file(), snapshot)
    write_text(_autosave_meta(), json.dumps({"source": str(snapshot.path) if snapshot.path else None}))
    return target


def read_project(path: Path) -> tuple[Project, list[Run]]:
    doc = load(Path(path))
    return doc.project, [history_to_run(h, n + 1) for n, h in enumerate(doc.history)]


# ---------------------------------------------------------------- autosave and recovery


def autosave_file() -> Path:
    return paths.home() / "autosave.handoff"


def _autosave_meta() -> Path:
    return paths.home() / "autosave.json"


def _lock_file() -> Path:
    return paths.home() / "session.lock"


MAX_AUTOSAVE_META_BYTES = checked.MiB  # {"source": a path}


def autosave_source() -> Path | None:
    """Where the autosaved project was saved, if anywhere. Raises ReadError when
    autosave.json is damaged, after keeping it aside."""
    meta = _autosave_meta()
    if not meta.exists():
        return None
    try:
        data = checked.table(checked.read_json_file(meta, meta.name, MAX_AUTOSAVE_META_BYTES), meta.name)
        source = data.get("source")
        source = None if source is None else checked.text(source, f"{meta.name}: source")
    except ReadError as exc:
        raise ReadError(f"{exc} ({checked.keep_damaged(meta)[1]})") from None
    return Path(source) if source and "\0" not in source else None


@dataclass
class Recovered:
    project: Project
    runs: list[Run]
    source: Path | None  # the file it was saved as, if any
    problem: str | None = None  # why the source is not known (autosave.json damaged)


def read_autosave() -> Recovered:
    """The autosaved project with its runs. Raises ReadError (one line) when the autosave
    is damaged, after keeping it aside as autosave.handoff.damaged, so the next autosave
    does not overwrite what it held."""
    try:
        project, runs = read_project(autosave_file())
    except ReadError as exc:
        raise ReadError(f"{exc} ({checked.keep_damaged(autosave_file())[1]})") from None
    try:
        return Recovered(project, runs, autosave_source())
    except ReadError as exc:  # the project is what matters: recovered, without knowing its file
        return Recovered(project, runs, None, str(exc))


def begin_session() -> bool:
    """Mark this session as running; True when the previous one crashed and left an
    autosave worth offering (read_autosave says when it is damaged). A folder where the
    lock should be is kept aside, or no lock could ever be written; so is one where the
    autosave should be when nothing is to be recovered from it."""
    if _lock_file().exists() and not _lock_file().is_file():
        checked.keep_damaged(_lock_file())
    crashed = _lock_file().exists() and autosave_file().exists()
    if not crashed and autosave_file().exists() and not autosave_file().is_file():
        checked.keep_damaged(autosave_file())
    write_text(_lock_file(), str(os.getpid()))
    return crashed


def end_session() -> None:
    """A clean exit: nothing to recover next time."""
    try:
        _lock_file().unlink()
    except FileNotFoundError:
        pass
