"""The studio window: a thin view over core/. It shows one core.document.Document, edits
its Project in place, asks core.project.validate what is wrong with it, and hands it to
the engine thread; engine events go to the document, which says what changed.

The window's jobs live in modules of their own, mixed in here: the layout
(gui/window_layout.py), menus (gui/window_menus.py), files and drops
(gui/window_files.py) and run control (gui/window_run.py). This module holds the
document's state and what follows from it: the title, the project shown, its problems."""
from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QMainWindow

from core import document as doc
from core import init_size, settings_file
from core.document import Document, Run
from core.errors import ProjectError
from core.events import (
    CandidatesScored, JobCancelled, JobFailed, JobFinished, JobStarted, Loading, Notice, StageFinished,
    StageImageUpdated, StagePreview, StageStarted, Step,
)
from core.model_info import chain_problems, info_for
from core.model_library import ModelLibrary
from core.model_presence import absent_models
from core.project import MAX_SEED, Project, validate
from gui.images import image_size
from gui.settings import Settings
from gui import window_state
from gui.undo import ProjectHistory
from gui.tasks import Tasks
from gui.tuning import Tuning
from gui.worker import JobRunner

from gui.window_files import FilesMixin
from gui.window_layout import LayoutMixin
from gui.window_menus import MenusMixin
from gui.window_run import RunControlMixin


class MainWindow(LayoutMixin, MenusMixin, FilesMixin, RunControlMixin, QMainWindow):
    jobEnded = Signal(object)  # the terminal event of a job: JobFinished, JobFailed or JobCancelled
    projectLoaded = Signal()

    def __init__(self, runner: JobRunner | None = None, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings.load()
        self.runner = runner or JobRunner(parent=self)
        try:
            self._setup()
        except BaseException:
            # The engine thread runs already: left running, Qt would abort the process as it
            # destroys the half-built window, hiding the exception behind "QThread: Destroyed
            # while thread is still running".
            self.runner.shutdown()
            raise

    def _setup(self) -> None:
        self.library = ModelLibrary.load()
        self.models_dialog = None  # gui.models_dialog.ModelsDialog, while shown
        self.named_by = ""  # the tool whose model names the project's are (load_project)
        self.document = Document()
        self.history = ProjectHistory(lambda: self.document.project, self._restore_snapshot, self)
        self._autosave_dirty = False
        self._autosaving = None  # the autosave task under way (gui/window_files.py)
        # The window's coroutines (saves, autosave, dropped files): cancelled when it closes.
        self.tasks = Tasks(self, on_error=self.show_error)
        self._on_change = {
            doc.CHANGED_PROJECT: lambda _: self._show_project(),
            doc.CHANGED_MODIFIED: self._on_modified,
            doc.CHANGED_RUNS: lambda _: self.compare.set_runs(self.runs),
            doc.RUN_STARTED: lambda run: self.compare.begin_run(run),
            doc.STAGE_ADDED: lambda run: self.compare.stage_added(run),
            doc.STAGE_UPDATED: lambda run: self.compare.stage_updated(run),
            doc.RUN_ENDED: self._on_run_ended,
        }
        # Engine events, each to its view update (the document records them too).
        self._on_engine_event = {
            JobStarted: self._job_started, StageStarted: self._stage_started, Loading: self._loading,
            Step: self._step, StagePreview: self._stage_preview, StageFinished: self._stage_finished, Notice: self._notice,
            StageImageUpdated: self._stage_image_updated,
            JobFinished: self._job_finished, JobFailed: self._job_failed, JobCancelled: self._job_cancelled,
            CandidatesScored: self._candidates_scored,
        }
        self.setAcceptDrops(True)
        self._build()
        self._build_menus()
        self.tuning = Tuning(self)  # re-run from a stage, the job queue, sweeps (gui/tuning.py)
        window_state.restore(self, self.settings, self.splitters)
        # A stage chosen in the list: its prompt's fit (every edit refreshes it in _validate).
        self.stage_list.list.currentRowChanged.connect(lambda _row: self.stage_list.editor.show_prompt_fit(self.project))
        self.runner.event.connect(self.on_event)
        self.runner.torch_ready.connect(self._on_torch_ready)
        self.runner.torch_failed.connect(self._on_torch_failed)
        self.runner.busy_changed.connect(self._on_busy)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start(max(5, int(self.settings.autosave_seconds)) * 1000)
        self.document.subscribe(lambda what, detail: self._on_change[what](detail))
        self.load_project(self.document.project, None, [])
        damaged = [p for p in (settings_file.take_problem(), self.tuning.queue.problem) if p]
        if damaged:
            self.report_damaged(damaged)

    # The document's parts, as the widgets and the tests see them.
    @property
    def project(self) -> Project:
        return self.document.project

    @property
    def path(self) -> Path | None:
        return self.document.path

    @property
    def modified(self) -> bool:
        return self.document.modified

    @property
    def runs(self) -> list[Run]:
        return self.document.runs

    @property
    def current_run(self) -> Run | None:
        return self.document.current_run

    def show_error(self, text: str) -> None:
        self.banner.show_message(text)
        self.statusBar().showMessage(text.splitlines()[0], 15000)

    # ---------------------------------------------------------------- document

    def document_name(self) -> str:
        return self.document.name

    def _update_title(self) -> None:
        self.setWindowTitle(f"Handoff — {self.document_name()}{'*' if self.modified else ''}")

    def set_modified(self, modified: bool) -> None:
        self.document.set_modified(modified)
        if modified:
            self.history.record()  # every edit comes through here
        self._update_title()

    def _restore_snapshot(self, project: Project) -> None:
        """Undo or redo: the project as it was, in place (history and path stay)."""
        row = self.stage_list.current_index()
        self.document.replace_recipe(project)
        if 0 <= row < len(project.stages):
            self.stage_list.list.setCurrentRow(row)

    def apply_edit(self, project: Project) -> None:
        """Make `project` the recipe as one edit the user can undo (a sweep's pick)."""
        self._restore_snapshot(project)  # the widgets show it, the selected stage stays
        self.set_modified(True)  # which records the undo step

    def _on_modified(self, modified: bool) -> None:
        if modified:
            self._autosave_dirty = True
        self._update_title()

    def load_project(self, project: Project, path: Path | None, runs: list[Run], named_by: str = "") -> None:
        """Make a project (new, opened or recovered) the document; every widget shows it.
        `named_by`: the tool whose recipe it is ("ComfyUI"), when its model names are that
        tool's, so a model that is not here is shown as that tool named it."""
        self.named_by = named_by
        self.document.replace(project, path, runs)
        self.history.reset()  # another project: the last one's edits are not undone into it

    def _show_project(self) -> None:
        project = self.project
        if not self.runner.busy:
            self.reset_progress()
        self.prompt_editor.load(project)
        self.seed.blockSignals(True)
        self.seed.setValue(project.seed)
        self.seed.blockSignals(False)
        self.stage_list.load(project)
        self.run_settings.load(project)
        self._refresh_derived()
        self.compare.set_runs(self.runs)
        self.timings.setRowCount(0)
        for run in self.runs:
            self.timings.add_run(run.label, run.stages, run.seconds)
        if not self.runs and project.init_image:
            self.compare.show_single(QImage(project.init_image))
        self.banner.hide()
        self._update_title()
        self.projectLoaded.emit()

    def _refresh_derived(self) -> None:
        """Everything that follows from the project: size presets, init image row, problems."""
        self.resolution.load(self.project, info_for(self._base_model()))
        init = self.project.init_image
        self.init_row.setVisible(bool(init))
        if init:
            self.init_thumb.setPixmap(QPixmap(init))
            size = image_size(Path(init))
            dims = f" ({size[0]}×{size[1]})" if size else ""
            self.init_label.setText(f"Init image: {Path(init).name}{dims} — the first stage refines it")
        self._advise_init_size()
        self._validate()

    def init_size_advice(self) -> tuple[int, int] | None:
        """The size to snap to when the job's size is far from the base model's native area."""
        said = init_size.for_project(self.project)
        return None if said is None else said.good

    def _advise_init_size(self) -> None:
        said = init_size.for_project(self.project)
        if said is not None:
            self.init_size_note.setText(said.note())
            self.snap_init.setText(f"Use {said.good[0]}×{said.good[1]}")
            self.snap_init.setToolTip("The same shape at the model's native area (the init image is resized)")
        self.init_size_note.setVisible(said is not None)
        self.snap_init.setVisible(said is not None)

    def snap_init_size(self) -> None:
        good = self.init_size_advice()
        if good is not None:
            self.resolution.set_size(*good)
            self._refresh_derived()

    def _base_model(self) -> str:
        enabled = self.project.enabled_stages()
        return enabled[0][1].model if enabled else ""

    def stage_multiples(self) -> dict[int, int]:
        return {i: info_for(s.model).multiple for i, s in enumerate(self.project.stages)}

    def problems_now(self) -> list[str]:
        try:
            validate(self.project, stage_multiples=self.stage_multiples(),
                     stage_natives={i: info_for(s.model).native for i, s in enumerate(self.project.stages)})
            problems = []
        except ProjectError as exc:
            problems = list(exc.problems)
        return problems + self.position_problems() + absent_models(self.project, self.named_by)

    def position_problems(self) -> list[str]:
        """Models that cannot take their place in the chain (a refiner-only model first, a
        generate-only model refining), known before any download from the model's family."""
        return chain_problems(self.project)

    def _validate(self) -> list[str]:
        problems = self.problems_now()
        self.problems.setText("\n".join(f"• {p}" for p in problems))
        self.problems.setVisible(bool(problems))
        self.generate_button.setEnabled(not problems)  # while a job runs, Generate queues
        # Rich text, so Qt wraps the long lines (a missing model's says where to get it).
        self.generate_button.setToolTip("<b>The job cannot start:</b>" + "".join(f"<br>• {escape(p, quote=False)}"
                                                                                  for p in problems)
                                        if problems else "Run the chain (Ctrl+Return)")
        self.stage_list.editor.show_prompt_fit(self.project)
        return problems

    def on_edited(self) -> None:
        self.set_modified(True)
        self._validate()

    def _on_stages_changed(self) -> None:
        self.set_modified(True)
        # The base model may have changed: its native size decides the presets.
        self.resolution.load(self.project, info_for(self._base_model()))
        self._validate()

    def _on_seed(self, value: int) -> None:
        self.project.seed = value
        self.on_edited()

    def _random_seed(self) -> None:
        import random

        self.seed.setValue(random.randint(0, MAX_SEED))

    # ---------------------------------------------------------------- closing

    def quit_for_signal(self) -> None:
        """SIGTERM or SIGINT (gui/app.py): close now, asking nothing (nobody may be there to
        answer). Unsaved work is autosaved and the session stays marked, so the next start
        offers it back; with nothing unsaved it is a clean exit and nothing is offered."""
        self._signal_quit = True
        if self.modified:
            self._autosave_dirty = True
            self.autosave_now()
        self.close()

    def closeEvent(self, event) -> None:
        by_signal = getattr(self, "_signal_quit", False)
        if not by_signal and not self.maybe_discard():
            event.ignore()
            return
        self.autosave_timer.stop()
        self.tasks.cancel_all()  # a download, scan or write in flight stops (gui/app.py lets them finish)
        self.gauge.timer.stop()
        window_state.save(self, self.settings, self.splitters)
        self.settings.save()
        self.runner.shutdown()
        if not (by_signal and self.modified):
            doc.end_session()
        event.accept()
