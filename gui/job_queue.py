"""The queue panel: the jobs waiting for the engine (core.job_queue), reordered, removed
or cleared here; the running job can be cancelled from it too."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from core.job_queue import JobQueue, describe_job


class QueuePanel(QWidget):
    cancelRunning = Signal()
    refreshed = Signal()  # the list was redrawn: the jobs waiting may be fewer or more

    def __init__(self, queue: JobQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.status = QLabel("No job running")
        self.status.setObjectName("queue_running")
        # A long prompt's line must not widen the dock past a laptop's screen: cut, and whole in the tooltip.
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.list = QListWidget()
        self.list.setWordWrap(True)  # a long prompt wraps: the panel never scrolls sideways
        self.up, self.down = QPushButton("Up"), QPushButton("Down")
        self.remove, self.clear = QPushButton("Remove"), QPushButton("Clear")
        self.cancel = QPushButton("Cancel running")
        buttons = QHBoxLayout()
        for b in (self.up, self.down, self.remove, self.clear, self.cancel):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.up.clicked.connect(lambda: self._move(-1))
        self.down.clicked.connect(lambda: self._move(1))
        self.remove.clicked.connect(self._remove)
        self.clear.clicked.connect(lambda: (self.queue.clear(), self.refresh()))
        self.cancel.clicked.connect(self.cancelRunning)
        self.list.currentRowChanged.connect(lambda _: self._update_buttons())
        self.set_running(None)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_id()
        self.list.clear()
        for n, job in enumerate(self.queue.jobs):
            item = QListWidgetItem(f"{n + 1}. {job.describe()}")
            item.setToolTip(job.project.prompt)
            item.setData(256, job.id)
            self.list.addItem(item)
            if job.id == selected:
                self.list.setCurrentItem(item)
        self._update_buttons()
        self.refreshed.emit()

    def set_running(self, text: str | None) -> None:
        self.status.setText(f"Running: {text}" if text else "No job running")
        self.status.setToolTip(self.status.text())
        self.cancel.setEnabled(bool(text))

    def show_running(self, project, from_stage: int | None = None) -> None:
        """The job that started: its prompt, chain and seed, as a queued one is shown."""
        self.set_running(describe_job(project, from_stage))

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(256) if item is not None else None

    def _move(self, delta: int) -> None:
        if (job_id := self.selected_id()) is not None:
            self.queue.move(job_id, delta)
            self.refresh()

    def _remove(self) -> None:
        if (job_id := self.selected_id()) is not None:
            self.queue.remove(job_id)
            self.refresh()

    def _update_buttons(self) -> None:
        has = self.selected_id() is not None
        for b in (self.up, self.down, self.remove):
            b.setEnabled(has)
        self.clear.setEnabled(bool(self.queue.jobs))
