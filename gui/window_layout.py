"""The window's widgets and how they are laid out: the prompt column, the stage editor's
column and the viewer."""
from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QSizePolicy,
    QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

from core.project import Project
from gui.candidate_strip import CandidateStrip
from gui.compare_view import CompareView
from gui.prompt_editor import PromptEditor
from gui.resolution_picker import ResolutionPicker
from gui.run_progress import StepRate
from gui.run_settings import RunSettings
from gui.stage_list import StageList
from gui.timing_table import TimingTable
from gui.collapsible import Section
from gui.widgets import ElidingStatusBar, SeedBox, VerticalScrollArea, update_geometry_up
from gui.vram_gauge import VramGauge




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


class LayoutMixin:
    """Mixed into MainWindow (gui/main_window.py): builds the widgets the other parts use."""

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
        # As wide as its widest row (the size picker): it never scrolls sideways.
        self.left_scroll = scroll = VerticalScrollArea(left)
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
        # The strip becomes a tab under the viewer when a job first has candidates
        # (gui/window_run.py): above the viewer it pushed the image down mid-run.
        vsplit = QSplitter(Qt.Vertical)
        vsplit.addWidget(self.compare)
        vsplit.addWidget(self.tabs)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 1)
        vsplit.setSizes([560, 220])
        rv.addWidget(vsplit, 1)
        # The selected stage's editor in a column of its own beside the chain: at 1366×768
        # neither column needs a scrollbar with the editor's default sections open, and
        # with every section open the column scrolls down, never sideways.
        editor_scroll = VerticalScrollArea(self.stage_list.take_editor())
        editor_scroll.setObjectName("stage_editor_scroll")
        self.editor_scroll = editor_scroll
        # The chain's column lost the editor: its minimum is known now, not after the first
        # events, or the window opens 44 px wider than it was left (the layouts keep their
        # widgets' minimums until told).
        update_geometry_up(self.stage_list)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left_panel)
        split.addWidget(editor_scroll)
        split.addWidget(right)
        split.setStretchFactor(2, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([360, 360, 646])
        self.setCentralWidget(split)
        self.splitters = {"main": split, "viewer": vsplit}

        self.setStatusBar(ElidingStatusBar(self))
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
