"""The one thread that owns torch: it imports torch and diffusers in the background at
start-up, then runs jobs by iterating core.engine.run and sending each event to the
window as a Qt signal carrying the (frozen, Qt-free) event object.

The window keeps strong references to the QThread and the worker (a collected worker
mid-run crashes Qt); on close it cancels the job, quits the thread and waits. So does a
window whose construction fails after it made its runner: a running QThread destroyed by
Qt aborts the process ("QThread: Destroyed while thread ... is still running").
"""
from __future__ import annotations

import gc
import importlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QThread, Signal, Slot

from core.events import JobCancelled, JobFailed, JobFinished

RunFn = Callable[..., Iterator[Any]]


class SimpleCancel:
    """Stand-in for core.engine.CancelToken when the engine cannot be imported."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def make_cancel_token():
    try:
        from core.engine import CancelToken
    except ImportError:
        return SimpleCancel()
    return CancelToken()


@dataclass(frozen=True)
class PickProblem:
    """A sweep's pick that could not be made, in one line: a scorer refused before the
    first cell ran, or one that failed while scoring the cells."""
    message: str

    @classmethod
    def of(cls, exc: BaseException, prefix: str = "") -> "PickProblem":
        from core.cli import one_line  # a Hub error or a file name may hold newlines

        return cls(prefix + one_line(str(exc)))


_MODELS = None
# Engine threads that outlived shutdown's wait (a torch import on a busy machine, a job that
# does not stop), with their workers: kept referenced until they end. Dropped with its
# runner, a running QThread is destroyed by whichever thread collects it (the engine
# thread's own gc.collect() in preload, say), and Qt aborts the process.
_STOPPING: list[tuple[QThread, QObject]] = []


def shared_models(factory):
    """One model cache per process, kept across jobs (and windows: the tests open many),
    so a model loads once. Only the engine thread of the window running a job touches it."""
    global _MODELS
    if _MODELS is None:
        _MODELS = factory()
    return _MODELS


class EngineWorker(QObject):
    """Lives on the engine thread; every slot here runs there."""

    event = Signal(object)
    torch_ready = Signal(str)  # what was loaded, e.g. "torch 2.13.0 on cpu (…)", then a line saying what it runs on
    torch_failed = Signal(str)
    job_done = Signal(object)  # the job's cancel token, which names the job
    # A sweep's (cell, engine event)s, then its core.sweep.SweepResult; with a pick, then its
    # core.sweep_pick.Pick (or a PickProblem, which may also come before any cell).
    sweep_event = Signal(object)

    def __init__(self, run_fn: RunFn | None = None) -> None:
        super().__init__()
        self._run_fn = run_fn
        self._models = None  # core.models.ModelCache, kept across jobs so models stay loaded

    @Slot()
    def preload(self) -> None:
        started = time.perf_counter()
        try:
            import torch  # noqa: F401  (the point is to pay the import here, not on the GUI thread)
            import diffusers  # noqa: F401

            diffusers.utils.logging.set_verbosity_error()
        except Exception as exc:  # a broken install: say so, keep the window usable
            self.torch_failed.emit(f"torch could not be loaded: {exc}")
            return
        self._warm_imports()
        # torch, diffusers and transformers leave ~400k objects that live as long as the
        # process; a full collection scans them all while holding the GIL, which froze the
        # window for 100-500 ms every few jobs (tests/benchmarks/bench_soak.py). Frozen, they
        # are out of the collector's sight and a collection scans only what jobs create.
        gc.collect()
        gc.freeze()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        from core.devices import runtime_summary

        # Second line: what the engine runs on, for the status bar (CUDA/ROCm/MPS/CPU and what to do on a CPU).
        self.torch_ready.emit(f"torch {torch.__version__} on {device} (loaded in {time.perf_counter() - started:.1f} s)"
                              f"\n{runtime_summary(torch)}")

    @staticmethod
    def _warm_imports() -> None:
        """Import now, while the user is still typing, what the first job would import: a
        big extension module's init holds the GIL for hundreds of milliseconds, which would
        freeze the window mid-run. diffusers and transformers load these lazily on first
        use; the demo family's classes, the engine and its helpers are the first ones used."""
        try:
            import diffusers
            import transformers

            for name in ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "AutoencoderKL",
                         "UNet2DConditionModel", "EulerDiscreteScheduler"):
                getattr(diffusers, name)
            for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer"):
                getattr(transformers, name)
            for module in ("PIL.PngImagePlugin", "core.devices", "core.engine", "core.stage_run", "core.previews", "core.metadata"):
                importlib.import_module(module)
        except Exception:  # only a warm-up: the job imports (and reports) for real
            pass

    def models(self):
        from core.models import ModelCache

        if self._models is None:
            self._models = shared_models(ModelCache)
        return self._models

    @Slot(object, object, object, object)
    def run_job(self, project, out_dir: Path, cancel, from_stage=None) -> None:
        try:
            if self._run_fn is not None:
                for ev in self._run_fn(project, out_dir, cancel):
                    self.event.emit(ev)
            else:
                from core import engine

                # engine.execute runs the job on this thread (engine.run would start another
                # one), so torch stays on the one thread that imported it.
                engine.execute(project, self.event.emit, engine.OutputPlan.in_dir(out_dir), cancel, self.models(),
                               from_stage=from_stage, live_previews=True)
        except Exception as exc:  # the engine reports its own failures; this catches its bugs
            self.event.emit(JobFailed(f"the job stopped unexpectedly: {exc}", traceback.format_exc()))
        finally:
            self.job_done.emit(cancel)

    @Slot(object, object, object)
    def run_sweep(self, request, out_dir: Path, cancel) -> None:
        """request: (project, x axis, y axis or None, core.sweep_pick.PickRequest or None).
        The engine events of every cell go to sweep_event as (cell, event), then the
        SweepResult; with a pick, its scorer is resolved before the first cell (a bad one is
        a PickProblem and no cell runs) and the cells are scored after the last, here,
        where torch lives (core.sweep_pick.pick_cell, through the resident scorer cache)."""
        try:
            from core.errors import Cancelled, ModelError
            from core.sweep import run_sweep

            project, x, y, pick = request
            if pick is not None:
                from core.scorer_refs import resolve_scorer

                try:
                    resolve_scorer(pick.scorer, getattr(cancel, "event", None))
                except ModelError as exc:
                    self.sweep_event.emit(PickProblem.of(exc))
                    return
                except Cancelled:  # cancelled while its CLIP downloaded: no cell to run
                    return
            result = run_sweep(project, x, y, out_dir, self.sweep_event.emit, models=self.models(), cancel=cancel)
            chosen = self._pick(result, pick, out_dir) if pick is not None and not cancel.cancelled else None
            self.sweep_event.emit(result)
            if chosen is not None:
                self.sweep_event.emit(chosen)
        except Exception as exc:
            self.event.emit(JobFailed(f"the sweep stopped unexpectedly: {exc}", traceback.format_exc()))
        finally:
            self.job_done.emit(cancel)

    def _pick(self, result, pick, out_dir: Path):
        """The sweep's pick (the grid re-made with it marked), or a PickProblem."""
        from core.errors import ModelError, ProjectError
        from core.sweep_pick import mark, pick_cell

        try:
            chosen = pick_cell(result, pick.scorer, pick.max_drift, cache=self.models().scorers)
            if chosen.cell is not None:
                mark(result, result.x, result.y, out_dir, chosen.cell)
        except (ModelError, ProjectError) as exc:
            return PickProblem.of(exc)
        except Exception as exc:  # a scorer's bug: the cells that ran are still shown
            return PickProblem.of(exc, "the pick stopped unexpectedly: ")
        return chosen


class JobRunner(QObject):
    """The GUI-thread face of the engine thread: start, cancel, shut down."""

    event = Signal(object)
    torch_ready = Signal(str)
    torch_failed = Signal(str)
    busy_changed = Signal(bool)
    sweep_event = Signal(object)

    _request_preload = Signal()
    _request_job = Signal(object, object, object, object)
    _request_sweep = Signal(object, object, object)

    def __init__(self, run_fn: RunFn | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("handoff-engine")
        self.worker = EngineWorker(run_fn)
        self.worker.moveToThread(self.thread)
        self._request_preload.connect(self.worker.preload)
        self._request_job.connect(self.worker.run_job)
        self._request_sweep.connect(self.worker.run_sweep)
        self.worker.sweep_event.connect(self.sweep_event)
        self.worker.event.connect(self._on_event)
        self.worker.torch_ready.connect(self._on_ready)
        self.worker.torch_failed.connect(self.torch_failed)
        self.worker.job_done.connect(self._on_done)
        self.thread.start()
        self.ready = False
        self.busy = False
        self._cancel = None

    def preload(self) -> None:
        self._request_preload.emit()

    def start(self, project, out_dir: Path, from_stage: int | None = None) -> bool:
        """Run a job; `from_stage` (an index in project.stages) re-runs from there."""
        if self.busy:
            return False
        self._begin()
        # A copy: the user may edit the project while the job runs.
        self._request_job.emit(project.copy(), Path(out_dir), self._cancel, from_stage)
        return True

    def start_sweep(self, project, x, y, out_dir: Path, pick=None) -> bool:
        """Run a sweep (core.sweep) on the engine thread; its events come as sweep_event.
        `pick`: a core.sweep_pick.PickRequest, to score the cells and pick one."""
        if self.busy:
            return False
        self._begin()
        self._request_sweep.emit((project.copy(), x, y, pick), Path(out_dir), self._cancel)
        return True

    def _begin(self) -> None:
        self._cancel = make_cancel_token()
        self.busy = True
        self.busy_changed.emit(True)

    def cancel(self) -> None:
        if self.busy and self._cancel is not None:
            self._cancel.cancel()

    def shutdown(self, wait_ms: int = 30000) -> None:
        """Cancel the job and stop the thread; safe to call more than once."""
        self.cancel()
        _STOPPING[:] = [kept for kept in _STOPPING if not kept[0].isFinished()]
        if self.thread.isRunning():
            self.thread.quit()
            if not self.thread.wait(wait_ms):
                _STOPPING.append((self.thread, self.worker))

    @Slot(object)
    def _on_event(self, ev) -> None:
        if isinstance(ev, (JobFinished, JobFailed, JobCancelled)):
            # Not busy from the terminal event on: whoever reacts to it may start the next job
            # (the engine thread takes it as soon as this one's slot returns).
            self._set_idle()
        self.event.emit(ev)

    @Slot(str)
    def _on_ready(self, text: str) -> None:
        self.ready = True
        self.torch_ready.emit(text)

    @Slot(object)
    def _on_done(self, token) -> None:
        if token is self._cancel:  # a late "done" from an earlier job must not idle a newer one
            self._set_idle()

    def _set_idle(self) -> None:
        if self.busy:
            self.busy = False
            self._cancel = None
            self.busy_changed.emit(False)
