"""Glue between the window's runs and core.project_file, plus autosave and crash
recovery. A session writes a lock file at start and removes it on a clean exit; a lock
left behind means the last session crashed, and its autosave is offered back."""
from __future__ import annotations

import json
import os
from pathlib import Path

from core import paths
from core.atomic import write_text
from core.project import Project
from core.project_file import HistoryImage, HistoryRun, ProjectDocument, load, save
from gui.history import RunRecord, StageRecord
from gui.images import png_to_qimage, qimage_to_png

SUFFIX = ".handoff"
TIMING_KEYS = ("index", "label", "handoff", "steps_run", "load_seconds", "denoise_seconds", "decode_seconds",
               "total_seconds", "peak_memory", "memory_kind", "path")


def autosave_file() -> Path:
    return paths.home() / "autosave.handoff"


def _autosave_meta() -> Path:
    return paths.home() / "autosave.json"


def _lock_file() -> Path:
    return paths.home() / "session.lock"


# ---------------------------------------------------------------- runs <-> history


def run_to_history(run: RunRecord) -> HistoryRun:
    images: list[HistoryImage] = [HistoryImage(s.index, s.label, qimage_to_png(s.image), s.total_seconds) for s in run.stages]
    timings: list[dict] = []
    for s in run.stages:
        t = {k: getattr(s, k) for k in TIMING_KEYS}
        t["input"] = None
        if s.input_image is not None:
            # Inputs ride after the outputs; the timing row says where its input is.
            t["input"] = len(images)
            images.append(HistoryImage(s.index, f"{s.label} input", qimage_to_png(s.input_image)))
        timings.append(t)
    recipe = dict(run.recipe)
    return HistoryRun(run_id=f"run{run.number}", when=run.started, recipe=recipe, images=images,
                      timings=timings + [{"run": {"number": run.number, "seconds": run.seconds, "outcome": run.outcome}}])


def history_to_run(h: HistoryRun, fallback_number: int) -> RunRecord:
    meta = next((t["run"] for t in h.timings if "run" in t), {})
    rows = [t for t in h.timings if "run" not in t]
    run = RunRecord(meta.get("number", fallback_number), h.when, meta.get("seconds", 0.0), h.recipe,
                    outcome=meta.get("outcome", "finished"))
    for n, t in enumerate(rows):
        if n >= len(h.images):
            break
        img = h.images[n]
        inp = t.get("input")
        kwargs = {k: t.get(k) for k in TIMING_KEYS}
        kwargs.update(index=kwargs["index"] if kwargs["index"] is not None else img.stage,
                      label=kwargs["label"] or img.label)
        for k in ("load_seconds", "denoise_seconds", "decode_seconds", "total_seconds"):
            kwargs[k] = float(kwargs[k] or 0.0)
        kwargs["steps_run"] = int(kwargs["steps_run"] or 0)
        kwargs["peak_memory"] = int(kwargs["peak_memory"] or 0)
        kwargs["memory_kind"] = kwargs["memory_kind"] or ""
        kwargs["handoff"] = kwargs["handoff"] or ""
        kwargs["path"] = kwargs["path"] or ""
        run.stages.append(StageRecord(
            **kwargs, image=png_to_qimage(img.png),
            input_image=png_to_qimage(h.images[inp].png) if isinstance(inp, int) and inp < len(h.images) else None,
        ))
    if not rows:  # a history written by another front end: images only
        for img in h.images:
            run.stages.append(StageRecord(img.stage, img.label, "", 0, 0.0, 0.0, 0.0, img.seconds, 0, "", "",
                                          png_to_qimage(img.png)))
    return run


def save_project(path: Path, project: Project, runs: list[RunRecord]) -> Path:
    return save(Path(path), ProjectDocument(project.copy(), [run_to_history(r) for r in runs]))


def load_project(path: Path) -> tuple[Project, list[RunRecord]]:
    doc = load(Path(path))
    return doc.project, [history_to_run(h, n + 1) for n, h in enumerate(doc.history)]


# ---------------------------------------------------------------- autosave and recovery


def write_autosave(project: Project, runs: list[RunRecord], source: Path | None) -> Path:
    target = save_project(autosave_file(), project, runs)
    write_text(_autosave_meta(), json.dumps({"source": str(source) if source else None}))
    return target


def autosave_source() -> Path | None:
    try:
        source = json.loads(_autosave_meta().read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(source) if source else None


def begin_session() -> bool:
    """Mark this session as running; True when the previous one crashed and left an
    autosave worth offering."""
    crashed = _lock_file().exists() and autosave_file().is_file()
    write_text(_lock_file(), str(os.getpid()))
    return crashed


def end_session() -> None:
    """A clean exit: nothing to recover next time."""
    for f in (_lock_file(),):
        try:
            f.unlink()
        except FileNotFoundError:
            pass
