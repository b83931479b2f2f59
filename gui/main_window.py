"""The studio window: a thin view over core/. It shows one core.document.Document, edits
its Project in place, asks core.project.validate what is wrong with it, and hands it to
the engine thread; engine events go to the document, which says what changed."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPlainTextEdit, QProgressBar,
    QPushButton, QScrollArea, QSizePolicy, QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

from core import document as doc
from core import paths, settings_file
from core.defaults import default_project
from core.document import Document, Run, read_project
from core.errors import ProjectError, ReadError
from core.images import pixel_problem
from core.events import (
    CandidatesScored, JobCancelled, JobFailed, JobFinished, JobStarted, Loading, Notice, StageFinished,
    StageImageUpdated, StagePreview, StageStarted, Step,
)
from core.model_info import chain_problems, forget as forget_model_info, info_for
from core.model_library import ModelLibrary
from core.presets import PRESETS
from core.project import MAX_SEED, Project, validate
from gui.candidate_strip import CandidateStrip
from gui.compare_view import CompareView
from gui import init_size
from gui.images import image_size, pil_to_qimage
from gui.prompt_editor import PromptEditor
from gui.resolution_picker import ResolutionPicker
from gui.run_progress import StepRate
from gui.run_settings import RunSettings
from gui.settings import Settings
from gui.stage_list import StageList
from gui.timing_table import TimingTable
from gui import window_state
from gui.collapsible import Section
from gui.undo import ProjectHistory
from gui.widgets import SeedBox
from gui.vram_gauge import VramGauge, human
from gui.tuning import Tuning
from gui.worker import JobRunner

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
PROJECT_SUFFIXES = {".handoff"}
TERMINAL = (JobFinished, JobFailed, JobCancelled)
# The question a dropped or opened image with a recipe asks: (answer, button label).
RESTORE_CHOICES = [("restore", "Restore recipe"), ("init", "Use as init image"), ("cancel", "Cancel")]


class Banner(QFrame):
    """A dismissable message above the image: errors stay until read, never block."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet("#banner { background: #fbe3e1; border: 1px solid #d9534f; border-radius: 4px; }"
                           "#banner QLabel { color: #6b1a17; }")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.text, 1)
        layout.addWidget(close, 0, Qt.AlignTop)
        self.hide()

    def show_message(self, text: str) -> None:
        self.text.setText(text)
        self.show()


class MainWindow(QMainWindow):
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
        self.document = Document()
        self.history = ProjectHistory(lambda: self.document.project, self._restore_snapshot, self)
        self._autosave_dirty = False
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

    # ---------------------------------------------------------------- layout

    def _build(self) -> None:
        self.prompt_editor = PromptEditor()
        self.seed = SeedBox()
        self.seed.setObjectName("seed")
        self.random_seed = QToolButton()
        self.random_seed.setText("Random")
        self.random_seed.setToolTip("A new random seed")
        self.resolution = ResolutionPicker()
        self.init_thumb = QLabel()
        self.init_thumb.setFixedSize(48, 48)
        self.init_thumb.setScaledContents(True)
        self.init_label = QLabel()
        self.init_label.setWordWrap(True)
        self.clear_init = QToolButton()
        self.clear_init.setText("Clear")
        self.clear_init.setToolTip("Remove the init image: the first stage generates again")
        self.init_size_note = QLabel()
        self.init_size_note.setObjectName("init_size_note")
        self.init_size_note.setWordWrap(True)
        self.init_size_note.setStyleSheet("color: #8a5a00;")
        self.snap_init = QToolButton()
        self.snap_init.setObjectName("snap_init")
        self.snap_init.clicked.connect(self.snap_init_size)
        self.init_row = QWidget()
        init_layout = QHBoxLayout(self.init_row)
        init_layout.setContentsMargins(0, 0, 0, 0)
        init_layout.addWidget(self.init_thumb)
        init_text = QVBoxLayout()
        init_text.addWidget(self.init_label)
        snap_row = QHBoxLayout()
        snap_row.addWidget(self.init_size_note, 1)
        snap_row.addWidget(self.snap_init)
        init_text.addLayout(snap_row)
        init_layout.addLayout(init_text, 1)
        init_layout.addWidget(self.clear_init, 0, Qt.AlignTop)
        self.stage_list = StageList(self.settings.recent_models)
        self.stage_list.set_library(self.library.all())
        self.run_settings = RunSettings()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generate")
        self.generate_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel")
        self.cancel_button.setEnabled(False)
        # Fixed sizes: enabling, disabling or relabelling them during a run moves nothing.
        for b in (self.generate_button, self.cancel_button):
            b.setFixedHeight(b.sizeHint().height() + 6)
        self.cancel_button.setFixedWidth(max(96, self.cancel_button.sizeHint().width()))
        self.problems = QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b00020;")
        self.stage_progress = QProgressBar()
        self.overall_progress = QProgressBar()
        self.step_rate = StepRate()
        self.gauge = VramGauge()
        # The step line grows during a run ("refiner: step 12/25 · 18.1 it/s · 1 s left"):
        # its text must not widen the column, or the whole window grows past a laptop's screen.
        for w in (self.stage_progress, self.overall_progress, self.gauge.label):
            w.setSizePolicy(QSizePolicy.Ignored, w.sizePolicy().verticalPolicy())
            w.setMinimumWidth(0)
        self.reset_progress()

        seed_row = QHBoxLayout()
        seed_row.addWidget(QLabel("Seed"))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(self.prompt_editor)
        lv.addLayout(seed_row)
        lv.addWidget(self.resolution)
        lv.addWidget(self.init_row)
        lv.addWidget(self.stage_list)
        self.run_settings.setTitle("")  # the section header names it
        self.run_section = Section("Run settings", self.run_settings, expanded=False)
        lv.addWidget(self.run_section)
        lv.addStretch(1)
        self.left_scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        # Wide enough for its widest row (the size picker), so it never scrolls sideways.
        scroll.setMinimumWidth(left.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        left_panel = QWidget()
        lp = QVBoxLayout(left_panel)
        lp.setContentsMargins(0, 0, 0, 0)
        lp.addWidget(scroll, 1)
        controls = QVBoxLayout()
        controls.setContentsMargins(8, 0, 8, 8)
        controls.addWidget(self.problems)
        controls.addLayout(buttons)
        controls.addWidget(self.stage_progress)
        controls.addWidget(self.overall_progress)
        controls.addWidget(self.gauge)
        lp.addLayout(controls)

        self.banner = Banner()
        self.compare = CompareView()
        self.compare.dialog_dir = self._dialog_dir
        self.compare.dialog_used = self.settings.remember_dir
        self.timings = TimingTable()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setObjectName("log")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.timings, "Timings")
        self.tabs.addTab(self.log, "Log")
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.banner)
        self.candidates = CandidateStrip()
        self.candidates.picked.connect(self._repick)
        self._candidates_of: Project | None = None  # the job whose candidates the strip shows
        rv.addWidget(self.candidates)
        vsplit = QSplitter(Qt.Vertical)
        vsplit.addWidget(self.compare)
        vsplit.addWidget(self.tabs)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 1)
        vsplit.setSizes([560, 220])
        rv.addWidget(vsplit, 1)
        # The selected stage's editor in a column of its own beside the chain: at 1366×768
        # neither column needs a scrollbar with the editor's default sections open.
        editor_scroll = QScrollArea()
        editor_scroll.setObjectName("stage_editor_scroll")
        editor_scroll.setWidgetResizable(True)
        editor_scroll.setWidget(self.stage_list.take_editor())
        editor_scroll.setMinimumWidth(self.stage_list.editor.minimumSizeHint().width()
                                      + editor_scroll.verticalScrollBar().sizeHint().width() + 4)
        self.editor_scroll = editor_scroll
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left_panel)
        split.addWidget(editor_scroll)
        split.addWidget(right)
        split.setStretchFactor(2, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([360, 360, 646])
        self.setCentralWidget(split)
        self.splitters = {"main": split, "viewer": vsplit}

        self.torch_status = QLabel("Loading torch…")
        self.torch_status.setObjectName("torch_status")
        self.statusBar().addPermanentWidget(self.torch_status)
        self.statusBar().showMessage("Loading torch…")

        self.prompt_editor.changed.connect(self.on_edited)
        self.seed.valueChanged.connect(self._on_seed)
        self.random_seed.clicked.connect(self._random_seed)
        self.resolution.changed.connect(self.on_edited)
        self.resolution.changed.connect(self._advise_init_size)
        self.resolution.matchInitRequested.connect(self.match_init_size)
        self.stage_list.changed.connect(self._on_stages_changed)
        self.stage_list.modelChosen.connect(self._remember_model)
        self.stage_list.manageModels.connect(self.open_models)
        self.run_settings.changed.connect(self.on_edited)
        self.clear_init.clicked.connect(self.clear_init_image)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")

        def action(menu, text, slot, shortcut=None) -> QAction:
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        action(file_menu, "&New", self.new_project, QKeySequence.New)
        action(file_menu, "&Open…", self.open_dialog, QKeySequence.Open)
        action(file_menu, "Open &Image…", self.open_image_dialog, "Ctrl+I")
        self.recent_menu = file_menu.addMenu("Open &Recent")
        file_menu.addSeparator()
        action(file_menu, "&Save", self.save, QKeySequence.Save)
        action(file_menu, "Save &As…", self.save_as, QKeySequence.SaveAs)
        export_menu = file_menu.addMenu("&Export")
        action(export_menu, "&ComfyUI workflow…", lambda: self.export_comfyui())
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.Quit)
        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = self.history.stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts([QKeySequence(QKeySequence.Undo)])
        self.redo_action = self.history.stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        action(edit_menu, "&Copy Image", self.compare.copy_shown, QKeySequence.Copy)
        action(edit_menu, "Save Image &As…", lambda: self.compare.save_shown(), "Ctrl+Shift+E")
        models_menu = self.menuBar().addMenu("&Models")
        action(models_menu, "Model &Library…", self.open_models, "Ctrl+Shift+M")
        self.preset_actions: dict[str, QAction] = {}
        # Each preset opens as a new, untitled project (after the unsaved-changes question).
        self.presets_menu = self.menuBar().addMenu("&Presets")
        self.presets_menu.setToolTipsVisible(True)
        for key, p in PRESETS.items():
            a = action(self.presets_menu, p.title, lambda _=False, k=key: self.new_from_preset(k))
            a.setToolTip(p.note)
            a.setStatusTip(p.note)
            self.preset_actions[key] = a
        self.presets_menu.aboutToShow.connect(self._mark_presets)  # a download may have finished since
        self._mark_presets()
        run_menu = self.menuBar().addMenu("&Run")
        self.generate_action = action(run_menu, "&Generate", self.generate, "Ctrl+Return")
        self.generate_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.cancel_action = action(run_menu, "&Cancel", self.cancel, "Escape")
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for f in self.settings.recent_files:
            a = self.recent_menu.addAction(f)
            a.triggered.connect(lambda _=False, f=f: self.open_path(Path(f)))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    # ---------------------------------------------------------------- questions (tests replace these)

    def ask(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.Yes

    def choose(self, title: str, text: str, choices: list[tuple[str, str]]) -> str:
        """The key of the answer picked from `choices` (key, button label); the first is the
        default, the last is the way out (Escape or closing the box picks it too)."""
        box = self.choice_box(title, text, choices)
        box.exec()
        return next((key for button, key in box.answers if button is box.clickedButton()), choices[-1][0])

    def choice_box(self, title: str, text: str, choices: list[tuple[str, str]]) -> QMessageBox:
        box = QMessageBox(QMessageBox.Question, title, text, QMessageBox.NoButton, self)
        roles = [QMessageBox.AcceptRole] + [QMessageBox.ActionRole] * (len(choices) - 2) + [QMessageBox.RejectRole]
        box.answers = [(box.addButton(label, role), key) for (key, label), role in zip(choices, roles)]
        box.setDefaultButton(box.answers[0][0])
        box.setEscapeButton(box.answers[-1][0])
        return box

    def ask_save_changes(self) -> str:
        """'save', 'discard' or 'cancel'."""
        box = QMessageBox(QMessageBox.Warning, "Unsaved changes",
                          f"Save the changes to {self.document_name()}?",
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        answer = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def _dialog_dir(self) -> str:
        """Where file dialogs open: the folder last used, else the user's home (never the
        app's data folder, which holds nothing of theirs)."""
        return str(self.settings.start_dir(Path.home()))

    def choose_save_path(self) -> Path | None:
        start = str(self.path or (Path(self._dialog_dir()) / "untitled.handoff"))
        name, _ = QFileDialog.getSaveFileName(self, "Save project", start, "Handoff project (*.handoff)")
        if not name:
            return None
        self.settings.remember_dir(name)
        p = Path(name)
        return p if p.suffix == ".handoff" else p.with_suffix(".handoff")

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

    def _on_modified(self, modified: bool) -> None:
        if modified:
            self._autosave_dirty = True
        self._update_title()

    def load_project(self, project: Project, path: Path | None, runs: list[Run]) -> None:
        """Make a project (new, opened or recovered) the document; every widget shows it."""
        self.document.replace(project, path, runs)
        self.history.reset()  # another project: the last one's edits are not undone into it

    def reset_progress(self) -> None:
        """Bars and peaks that say nothing about a run: a new project, a preset, a failed run
        must not keep showing the last run's stage and peaks."""
        self.stage_progress.setRange(0, 1)
        self.stage_progress.setValue(0)
        self.stage_progress.setFormat("stage: —")
        self.overall_progress.setRange(0, 1000)
        self.overall_progress.setValue(0)
        self.overall_progress.setFormat("job: %p%")
        self.gauge.clear_peaks()

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
        if not self.project.init_image:
            return None
        info = info_for(self._base_model())
        return init_size.advice(self.project.width, self.project.height, info.native, info.multiple)

    def _advise_init_size(self) -> None:
        good = self.init_size_advice()
        if good is not None:
            native = info_for(self._base_model()).native
            self.init_size_note.setText(f"{self.project.width}×{self.project.height} is far from the model's "
                                        f"{native}×{native} area: expect mush or repeats")
            self.snap_init.setText(f"Use {good[0]}×{good[1]}")
            self.snap_init.setToolTip("The same shape at the model's native area (the init image is resized)")
        self.init_size_note.setVisible(good is not None)
        self.snap_init.setVisible(good is not None)

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
        return problems + self.position_problems()

    def position_problems(self) -> list[str]:
        """Models that cannot take their place in the chain (a refiner-only model first, a
        generate-only model refining), known before any download from the model's family."""
        return chain_problems(self.project)

    def _validate(self) -> list[str]:
        problems = self.problems_now()
        self.problems.setText("\n".join(f"• {p}" for p in problems))
        self.problems.setVisible(bool(problems))
        self.generate_button.setEnabled(not problems)  # while a job runs, Generate queues
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

    def _remember_model(self, ref: str) -> None:
        self.settings.add_recent_model(ref)
        self.settings.save()
        self.stage_list.editor.model.set_recent(self.settings.recent_models)

    def maybe_discard(self) -> bool:
        """True when the current document may be replaced (saved, discarded or unchanged)."""
        if not self.modified:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def new_project(self) -> None:
        if self.maybe_discard():
            self.load_project(default_project(), None, [])
            self.statusBar().showMessage("New project", 3000)

    def new_from_preset(self, key: str) -> bool:
        """Replace the document with a fresh project from a preset (after the unsaved-changes
        question). True when it was loaded."""
        preset = PRESETS[key]
        if not self.maybe_discard():
            return False
        self.load_project(preset.project(), None, [])
        self.statusBar().showMessage(f"New project from the preset “{preset.title}”", 5000)
        self.log_line(f"preset {preset.title}: {preset.note}")
        return True

    # ---------------------------------------------------------------- model library

    def open_models(self):
        """Show the model library (one window, raised when already open)."""
        from gui.models_dialog import ModelsDialog

        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.library, self)
            self.models_dialog.changed.connect(self.library_changed)
            self.models_dialog.useModel.connect(self.use_model_for_stage)
            self.models_dialog.sizesChanged.connect(self._mark_presets)
        self.models_dialog.refresh()
        self.models_dialog.show()
        self.models_dialog.raise_()
        self.models_dialog.activateWindow()
        return self.models_dialog

    def use_model_for_stage(self, ref: str) -> None:
        """The library's "Use for this stage" (or a double-click): the selected stage's model."""
        if not self.project.stages:
            return
        self.stage_list.editor.model._commit(ref)

    def _mark_presets(self) -> None:
        """Each preset says whether it needs a download first, and how much once known."""
        from core.model_library import availability, known_download_size

        entries = {e.ref: e for e in self.library.all()}
        for key, a in self.preset_actions.items():
            preset = PRESETS[key]
            missing = [s.model for s in preset.project().stages
                       if s.model in entries and not availability(entries[s.model])[0]]
            if not missing:
                a.setText(preset.title)
                continue
            sizes = [known_download_size(m) for m in dict.fromkeys(missing)]
            size = f" ({human(sum(sizes))})" if all(s is not None for s in sizes) else ""
            a.setText(f"{preset.title} — needs a download{size}")

    def library_changed(self) -> None:
        forget_model_info()
        self.stage_list.set_library(self.library.all())
        self.stage_list.refresh()
        self._refresh_derived()

    def open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Open", self._dialog_dir(),
            "Projects and images (*.handoff *.png *.jpg *.jpeg *.webp);;Handoff project (*.handoff);;All files (*)")
        if name:
            self.settings.remember_dir(name)
            self.open_path(Path(name))

    def open_image_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open image", self._dialog_dir(),
                                              "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
        if name:
            self.settings.remember_dir(name)
            self.open_path(Path(name))

    def open_project_file(self, path: Path) -> bool:
        if not self.maybe_discard():
            return False
        try:
            project, runs = read_project(path)
        except (ProjectError, OSError) as exc:
            problems = exc.problems if isinstance(exc, ProjectError) else [str(exc)]
            self.show_error(f"Could not open {path.name}: " + "; ".join(problems))
            return False
        self.load_project(project, Path(path), runs)
        self.settings.add_recent_file(path)
        self.settings.save()
        self._fill_recent()
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        return self._save_to(self.path)

    def save_as(self) -> bool:
        target = self.choose_save_path()
        return self._save_to(target) if target else False

    def _save_to(self, path: Path) -> bool:
        try:
            self.document.save(Path(path))
        except (ProjectError, OSError) as exc:
            problems = exc.problems if isinstance(exc, ProjectError) else [str(exc)]
            self.show_error(f"Could not save {path.name}: " + "; ".join(problems))
            return False
        self.settings.add_recent_file(path)
        self.settings.save()
        self._fill_recent()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def choose_export_path(self) -> Path | None:
        name, _ = QFileDialog.getSaveFileName(self, "Export ComfyUI workflow", str(paths.home() / "workflow.json"),
                                              "ComfyUI workflow (*.json)")
        return Path(name) if name else None

    def export_comfyui(self, path: Path | None = None) -> bool:
        """File > Export > ComfyUI workflow: the chain as a workflow ComfyUI opens."""
        from core.interop.comfyui import write_workflow

        path = path or self.choose_export_path()
        if path is None:
            return False
        try:
            graph = write_workflow(self.project, path)
        except (ProjectError, OSError) as exc:
            self.show_error(f"Could not export {Path(path).name}: {exc}")
            return False
        self.statusBar().showMessage(f"Exported the ComfyUI workflow to {path}", 5000)
        for note in graph.notes:  # what ComfyUI needs before it can run the graph
            self.log_line(f"ComfyUI export: {note}")
        return True

    def autosave(self) -> None:
        """Write the autosave file when something changed since the last one."""
        if not self._autosave_dirty:
            return
        try:
            self.document.write_autosave()
        except (ProjectError, OSError) as exc:
            self.log_line(f"autosave failed: {exc}")
            return
        self._autosave_dirty = False

    def offer_recovery(self) -> bool:
        """After a crash: offer the autosave back. True when it was restored."""
        if not doc.autosave_file().exists():
            return False
        if not self.ask("Recover unsaved work?",
                        "Handoff did not close cleanly last time. Restore the autosaved project?"):
            return False
        try:
            recovered = doc.read_autosave()
        except ProjectError as exc:
            self.report_damaged([f"The autosave could not be read: {exc}"])
            return False
        self.load_project(recovered.project, recovered.source, recovered.runs)
        self.set_modified(True)  # recovered work is not saved anywhere yet
        if recovered.problem:
            self.report_damaged([f"Recovered the autosaved project; where it was saved is not known: {recovered.problem}"])
        else:
            self.statusBar().showMessage("Recovered the autosaved project", 5000)
        return True

    def report_damaged(self, problems: list[str]) -> None:
        """Handoff's own files that could not be read in full (settings, the job queue, the
        autosave): said once, in the banner and the log; the window goes on with what
        could be read."""
        for line in problems:
            self.log_line(line)
        self.show_error("\n".join(problems))

    # ---------------------------------------------------------------- drops and opening files

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            self.show_error("Only local files can be dropped here.")
            return
        event.acceptProposedAction()
        # Deferred: a modal question inside dropEvent would block the drag source.
        path = Path(urls[0].toLocalFile())
        QTimer.singleShot(0, lambda: self.open_path(path))

    def open_path(self, path: Path) -> str:
        """What a drop or File > Open does with a file. Returns what happened:
        'project', 'recipe', 'init', 'cancelled' or 'rejected'."""
        path = Path(path)
        suffix = path.suffix.lower()
        if not path.is_file():
            self.show_error(f"{path} is not a file; nothing was changed.")
            return "rejected"
        if suffix in PROJECT_SUFFIXES:
            return "project" if self.open_project_file(path) else "cancelled"
        if suffix in IMAGE_SUFFIXES and (size := image_size(path)) is not None:
            too_large = pixel_problem(*size, path.name)
            if too_large:  # refused before a pixel is decoded (core.images)
                self.show_error(f"{too_large}; nothing was changed.")
                return "rejected"
            try:
                imported = self._recipe_in(path)
            except ReadError as exc:
                # Metadata that is there but damaged is said, not silently dropped.
                question = f"{exc}\n\nThe picture can still be the init image of “{self.document_name()}”."
                if self.choose("Recipe unreadable", question, RESTORE_CHOICES[1:]) != "init":
                    return "cancelled"
                self.set_init_image(path)
                return "init"
            if imported is None:
                self.set_init_image(path)
                return "init"
            answer = self.choose("Restore recipe?", self._restore_question(path, imported), RESTORE_CHOICES)
            if answer == "init":
                self.set_init_image(path)
                return "init"
            # The recipe is a new document: unsaved work is asked about first, as for any other
            # replacement, and the saved project is never the target of the next Ctrl+S.
            if answer != "restore" or not self.maybe_discard():
                return "cancelled"
            self.restore_recipe(imported.project)
            for line in imported.summary(limit=100).splitlines():
                self.log_line(f"{path.name}: {line}")
            return "recipe"
        self.show_error(f"{path.name} is not an image or a Handoff project (.handoff); nothing was changed.")
        return "rejected"

    @staticmethod
    def _recipe_in(path: Path):
        """The recipe an image carries (Handoff's, or another tool's), None when it has none;
        raises ReadError for metadata that is there but damaged. On this thread, at most
        1 GiB of not-yet-hashed checkpoints is hashed to match a model hash."""
        from core import checked
        from core.interop.model_lookup import ModelLookup
        from core.metadata import read_recipe

        return checked.guarded(read_recipe, path, ModelLookup(hash_budget=2**30))

    def _restore_question(self, path: Path, imported) -> str:
        recipe = imported.project
        head = (f"{path.name} carries the recipe it was made with, by {imported.tool} "
                f"({len(recipe.stages)} stage(s), “{recipe.prompt[:60]}”).")
        details = "" if imported.tool == "Handoff" else "\n\n" + imported.summary(limit=8)
        here = f"“{self.document_name()}”"
        return (f"{head}{details}\n\nRestore recipe: open it as a new, untitled project; {here} stays as it is."
                f"\nUse as init image: {here} refines this picture.")

    def restore_recipe(self, recipe: Project) -> None:
        """A recipe from elsewhere as a new, untitled document: no path (Save asks where),
        no runs, and no undo back into the project it replaced."""
        if recipe.init_image and not Path(recipe.init_image).is_file():
            recipe.init_image = None
        self.load_project(recipe, None, [])
        self.statusBar().showMessage("Recipe restored as a new, untitled project", 5000)

    def set_init_image(self, path: Path) -> None:
        """Make `path` the init image: a refine-only job, whose first stage refines it."""
        self.project.init_image = str(Path(path).resolve())
        enabled = self.project.enabled_stages()
        if enabled and enabled[0][1].handoff in ("latent", "ensemble"):
            # An init image arrives as pixels; a latent or ensemble first stage cannot take it.
            enabled[0][1].handoff = "pixel"
        self.stage_list.refresh()
        self._refresh_derived()
        self.match_init_size()
        if self.current_run is None:
            self.compare.show_single(QImage(str(path)))
        self.set_modified(True)
        self.statusBar().showMessage(f"Init image: {Path(path).name} — the first stage will refine it", 8000)

    def clear_init_image(self) -> None:
        self.project.init_image = None
        self.stage_list.refresh()
        self._refresh_derived()
        self.on_edited()

    def match_init_size(self) -> None:
        if not self.project.init_image:
            return
        size = image_size(Path(self.project.init_image))
        if size:
            self.resolution.set_size(*size)
            self._validate()

    # ---------------------------------------------------------------- running

    def generate(self) -> bool:
        """Run the project, or queue it while a job runs."""
        problems = self._validate()
        if problems:
            self.show_error("The job cannot start:\n" + "\n".join(f"• {p}" for p in problems))
            return False
        return self.tuning.submit()

    def start_job(self, project: Project, from_stage: int | None = None) -> bool:
        self.banner.hide()
        self.reset_progress()
        self.document.begin_run(project)
        if not self.runner.ready:
            self.statusBar().showMessage("Waiting for torch to load…")
        return self.runner.start(project, paths.outputs_dir(), from_stage)

    def cancel(self) -> None:
        if self.runner.busy:
            self.runner.cancel()
            self.statusBar().showMessage("Cancelling…")

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.cancel_action.setEnabled(busy)
        self._validate()

    def _on_torch_ready(self, text: str) -> None:
        self.torch_status.setText(text.split(" (")[0])
        self.torch_status.setToolTip(text)
        if not self.runner.busy:
            self.statusBar().showMessage(text.splitlines()[-1])  # what it runs on (core.devices.runtime_summary)
        self.log_line(text)

    def _on_torch_failed(self, text: str) -> None:
        self.torch_status.setText("torch unavailable")
        self.show_error(text)

    def log_line(self, text: str) -> None:
        self.log.appendPlainText(f"{datetime.now():%H:%M:%S}  {text}")

    def on_event(self, ev) -> None:
        """Every engine event lands here, on the GUI thread: the view updates, and the
        document records it (which may tell the views of a new run or stage)."""
        handler = self._on_engine_event.get(type(ev))
        if handler is not None:
            handler(ev)
        self.document.record(ev)
        if isinstance(ev, TERMINAL):
            self.jobEnded.emit(ev)

    def _candidates_scored(self, ev: CandidatesScored) -> None:
        self._candidates_of = ev.project
        self.candidates.show_candidates(ev)
        scores = ", ".join(f"seed {c.seed}: {c.score:.3f}" for c in ev.candidates)
        self.log_line(f"candidates scored by {ev.scorer}: {scores}; continuing with seed {ev.kept[0]}")

    def _repick(self, seed: int) -> None:
        """Another candidate continues: a re-run from stage 2 (its stage 1 is stored by seed)."""
        from core.candidates import repick

        if self._candidates_of is None:
            return
        project, from_stage = repick(self._candidates_of, seed)
        if from_stage is None:
            self.statusBar().showMessage(f"seed {seed}'s image is the final one: nothing to re-run", 8000)
            return
        if not self.start_job(project, from_stage):
            self.statusBar().showMessage("A job is running: pick again when it ends", 8000)

    def _job_started(self, ev: JobStarted) -> None:
        self.log_line(f"job {ev.job_id}: {ev.stage_count} stage(s) on {ev.device}")
        self.statusBar().showMessage(f"Running {ev.stage_count} stage(s) on {ev.device}")
        self.gauge.start_run()

    def _stage_started(self, ev: StageStarted) -> None:
        how = ev.handoff + (f" ({ev.note})" if ev.note else "")
        self.statusBar().showMessage(f"{ev.label}: {ev.model}, {how}")
        self.log_line(f"{ev.label}: {ev.model}, {how}")
        self.stage_progress.setValue(0)
        self.stage_progress.setFormat(f"{ev.label}: starting")
        self.step_rate.start(ev.label)

    def _loading(self, ev: Loading) -> None:
        self.statusBar().showMessage(ev.what)
        self.log_line(ev.what)

    def _step(self, ev: Step) -> None:
        self.stage_progress.setMaximum(max(1, ev.total))
        self.stage_progress.setValue(ev.step)
        self.stage_progress.setFormat(self.step_rate.text(ev.step, ev.total))
        self.overall_progress.setValue(int(ev.overall * 1000))

    def _stage_preview(self, ev: StagePreview) -> None:
        # The preview is a PIL image made on the engine thread; the QImage is made here.
        self.compare.show_live(pil_to_qimage(ev.image), f"{self.step_rate.label}, step {ev.step}")

    def _stage_finished(self, ev: StageFinished) -> None:
        self.gauge.add_peak(ev.label, ev.peak_memory, ev.memory_kind)
        self.log_line(f"{ev.label} done in {ev.total_seconds:.2f} s → {ev.path}")

    def _stage_image_updated(self, ev: StageImageUpdated) -> None:
        if ev.decode_seconds:
            self.log_line(f"{ev.label}: decoded in {ev.decode_seconds:.2f} s → {ev.path}")
        if ev.drift is not None:
            self.log_line(f"{ev.label}: drift against that decode: {ev.drift.label()}")

    def _notice(self, ev: Notice) -> None:
        self.log_line(ev.message)
        self.statusBar().showMessage(ev.message, 8000)

    def _job_finished(self, ev: JobFinished) -> None:
        self.overall_progress.setValue(1000)
        self.statusBar().showMessage(f"Done in {ev.seconds:.1f} s", 15000)
        self.log_line(f"finished in {ev.seconds:.2f} s")

    def _job_failed(self, ev: JobFailed) -> None:
        self.reset_progress()
        self.stage_progress.setFormat("failed")
        self.show_error(f"Generation failed: {ev.message}")
        self.log_line(f"failed: {ev.message}")
        if ev.detail:
            self.log_line(ev.detail)

    def _job_cancelled(self, ev: JobCancelled) -> None:
        where = f" during stage {ev.at_stage + 1}" if ev.at_stage is not None else ""
        self.statusBar().showMessage(f"Cancelled{where}", 10000)
        self.log_line(f"cancelled{where}")

    def _on_run_ended(self, run: Run) -> None:
        self.timings.add_run(run.label, run.stages, run.seconds)
        self.compare.stage_added(run)
        self.autosave()

    # ---------------------------------------------------------------- closing

    def quit_for_signal(self) -> None:
        """SIGTERM or SIGINT (gui/app.py): close now, asking nothing (nobody may be there to
        answer). Unsaved work is autosaved and the session stays marked, so the next start
        offers it back; with nothing unsaved it is a clean exit and nothing is offered."""
        self._signal_quit = True
        if self.modified:
            self._autosave_dirty = True
            self.autosave()
        self.close()

    def closeEvent(self, event) -> None:
        by_signal = getattr(self, "_signal_quit", False)
        if not by_signal and not self.maybe_discard():
            event.ignore()
            return
        self.autosave_timer.stop()
        self.gauge.timer.stop()
        window_state.save(self, self.settings, self.splitters)
        self.settings.save()
        self.runner.shutdown()
        if not (by_signal and self.modified):
            doc.end_session()
        event.accept()
