"""Tuning a chain from the window: re-run from the selected stage, queue jobs pressed while
one runs, and sweep a parameter. The panels are tabs beside the timings and the log,
under the viewer: they take the viewer column's width and leave the prompt column (and
Generate) where they are. main_window makes one Tuning and routes Generate through
submit()."""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFrame, QSizePolicy

from core import paths
from core.job_queue import JobQueue, describe_job
from gui.job_queue import QueuePanel
from gui.sweep_panel import SweepPanel
from gui.widgets import VerticalScrollArea, update_geometry_up


class Tuning(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.queue = JobQueue.load()
        self.queue_panel = QueuePanel(self.queue)
        self.sweep_panel = SweepPanel()
        # Tabs under the viewer, not docks: a dock at the side widened the window past a
        # 1366-pixel screen, one at the bottom took half the window and moved Generate.
        tabs = window.tabs
        self.queue_panel.setObjectName("queue_panel")
        self.sweep_panel.setObjectName("sweep_panel")
        tabs.addTab(self.queue_panel, "Queue")
        # What changes while a sweep runs must not widen the viewer's column (and the
        # window): the progress line takes the width it is given, long cell names wrap.
        self.sweep_panel.progress.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.sweep_panel.cells.setWordWrap(True)
        # Its grid and cells scroll when the pane is short; the pane grows when it is shown.
        self.sweep_scroll = VerticalScrollArea(self.sweep_panel)
        self.sweep_scroll.setFrameShape(QFrame.NoFrame)
        tabs.addTab(self.sweep_scroll, "Sweep")
        update_geometry_up(tabs)  # the viewer's column knows its new minimum before it shows
        self.queue_panel.refreshed.connect(self._update_queue_tab)
        self._update_queue_tab()
        if self.queue.jobs:
            self.show_queue()
        run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
        self.run_from_action = QAction("Run From Selected &Stage", window)
        self.run_from_action.setShortcut("Ctrl+Shift+Return")
        self.run_from_action.triggered.connect(lambda: self.run_from(window.stage_list.current_index()))
        run_menu.addAction(self.run_from_action)
        sweep_action = QAction("S&weep…", window)
        sweep_action.triggered.connect(self.show_sweep)
        run_menu.addAction(sweep_action)
        self.queue_action = QAction("Job &Queue", window)
        self.queue_action.triggered.connect(self.show_queue)
        run_menu.addAction(self.queue_action)
        # The stage list's context menu: "Run from this stage".
        stage_view = window.stage_list.list
        stage_view.setContextMenuPolicy(Qt.ActionsContextMenu)
        stage_view.addAction(self.run_from_action)
        self.queue_panel.cancelRunning.connect(window.cancel)
        self.sweep_panel.startSweep.connect(self.start_sweep)
        self.sweep_panel.openCell.connect(self.open_cell)
        self.sweep_panel.picked.connect(self.apply_pick)
        window.projectLoaded.connect(self._sweep_the_new_project)
        window.runner.sweep_event.connect(self.sweep_panel.on_sweep_event)
        window.runner.busy_changed.connect(self._on_busy)
        window.jobEnded.connect(lambda _: QTimer.singleShot(0, self.start_next))
        if self.queue.jobs:
            window.statusBar().showMessage(f"{len(self.queue)} queued job(s) from the last session", 10000)

    def _show_tab(self, panel) -> None:
        self.window.tabs.setCurrentWidget(panel)

    def show_queue(self) -> None:
        self._show_tab(self.queue_panel)

    def _update_queue_tab(self) -> None:
        """The tab says how many jobs wait, so a queue is seen with another tab in front."""
        n = len(self.queue.jobs)
        self.window.tabs.setTabText(self.window.tabs.indexOf(self.queue_panel), f"Queue ({n})" if n else "Queue")


    # ---------------------------------------------------------------- jobs and the queue

    def submit(self, from_stage: int | None = None) -> bool:
        """Run the window's project now, or queue it when a job is running."""
        if self.window.runner.busy:
            job = self.queue.add(self.window.project, from_stage)
            self.queue_panel.refresh()
            self.show_queue()
            self.window.statusBar().showMessage(f"queued: {job.describe()}", 5000)
            return True
        return self.window.start_job(self.window.project, from_stage)

    def run_from(self, index: int) -> bool:
        """Re-run from stage `index`, reusing the stored output of the stages before it."""
        if not 0 <= index < len(self.window.project.stages):
            return False
        if self.window._validate():
            return False
        return self.submit(index)

    def start_next(self) -> None:
        if self.window.runner.busy or not self.queue.jobs:
            return
        job = self.queue.pop()
        self.queue_panel.refresh()
        self.window.start_job(job.project, job.from_stage)

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self.queue_panel.set_running(None)
            # A sweep ends with no terminal job event: take the next queued job here too.
            QTimer.singleShot(0, self.start_next)

    # ---------------------------------------------------------------- sweeps

    def show_sweep(self) -> None:
        self.sweep_panel.set_project(self.window.project)
        self._show_tab(self.sweep_scroll)
        self._make_room(self.sweep_panel.sizeHint().height())

    def _make_room(self, height: int) -> None:
        """Give the tabs under the viewer `height` (as far as the viewer's own minimum
        allows): the viewer column shrinks, the prompt column and Generate stay put."""
        split = self.window.splitters["viewer"]
        sizes = split.sizes()
        total = sum(sizes)
        room = min(height + self.window.tabs.tabBar().sizeHint().height() + 8,
                   total - split.widget(0).minimumSizeHint().height())
        if sizes[1] < room:
            split.setSizes([total - room, room])

    def _sweep_the_new_project(self) -> None:
        """A project replaced (opened, undone, a pick applied): the next sweep is of the new
        one. (Before the Sweep tab was first shown there is nothing to update.)"""
        if self.sweep_panel.project is not None:
            self.sweep_panel.set_project(self.window.project)

    def start_sweep(self, project, x, y, pick=None) -> None:
        if self.window.runner.busy:
            self.sweep_panel.problem.setText("a job is running: the sweep starts when it has finished")
            return
        from datetime import datetime

        out = paths.outputs_dir() / f"sweep-{datetime.now():%Y%m%d-%H%M%S}"
        if self.window.runner.start_sweep(project, x, y, out, pick):
            axes = x.name + (f" × {y.name}" if y is not None else "")
            self.queue_panel.set_running(f"sweep of {axes} · {describe_job(project)}")

    def apply_pick(self, cell, x, y) -> bool:
        """The sweep's pick as the open project's setting: one undoable edit (Ctrl+Z), never
        written into the saved file behind the user's back (sweep --pick on the command
        line writes the file, which is all it has)."""
        from core.sweep_pick import apply_pick

        window = self.window
        project = window.project.copy()
        if any(a is not None and a.stage is not None and a.stage >= len(project.stages) for a in (x, y)):
            window.statusBar().showMessage("the pick was not applied: the project's stages changed during the sweep",
                                           15000)
            return False
        apply_pick(project, cell, x, y)
        what = ", ".join(cell.labels)
        if project.to_dict() == window.project.to_dict():
            window.statusBar().showMessage(f"picked {what} (score {cell.score:.2f}); the project already has it", 15000)
            return False
        window.apply_edit(project)
        window.statusBar().showMessage(f"picked {what} (score {cell.score:.2f}); applied to the project — "
                                       "Ctrl+Z undoes", 15000)
        return True

    def open_cell(self, before, after, title: str = "") -> None:
        self.window.compare.show_pair(before, after, (f"{title}: input", f"{title}: output"))
