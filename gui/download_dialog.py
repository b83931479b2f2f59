"""The first-use download of a Hub model: repo, current file, a bar over all bytes,
"120 / 3400 MB · 45 MB/s · about 1 min left", and Cancel.

The download is a coroutine on the window's event loop (qasync: Qt's loop is asyncio's).
`core.downloads.download_model` blocks, so it runs on a worker thread through
`asyncio.to_thread`; its progress callbacks come back onto the loop with
`call_soon_threadsafe`, and the dialog shows them on the GUI thread. Cancel (the button,
Escape, the close box) cancels the task; the coroutine then sets the download's cancel
event, waits for the worker thread to stop at its next chunk, and closes the dialog. A
cancelled download keeps what arrived, and the next attempt resumes it. Errors (gated,
missing, offline, unreachable) are shown in the dialog in core's words.

    path = DownloadDialog.fetch(parent, "stabilityai/sdxl-turbo")  # None: cancelled or failed
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QProgressBar, QVBoxLayout, QWidget
from shiboken6 import isValid

from core.downloads import DownloadCancelled, DownloadProgress, format_eta, format_rate
from gui.tasks import Tasks

DownloadFn = Callable[..., Path]


def describe(p: DownloadProgress) -> str:
    """'120 / 3400 MB · 45 MB/s · about 1 min left'"""
    scale, unit = (1e6, "MB") if p.bytes_total >= 10e6 else (1e3, "kB")
    parts = [f"{p.bytes_done / scale:.0f} / {p.bytes_total / scale:.0f} {unit}"]
    if p.rate_bytes_per_s > 0:
        parts.append(format_rate(p.rate_bytes_per_s))
        if eta := format_eta(p.eta_s()):
            parts.append(eta)
    return " · ".join(parts)


class DownloadDialog(QDialog):
    progressed = Signal(object)  # DownloadProgress, after the dialog has shown it

    def __init__(self, repo_id: str, parent: QWidget | None = None, revision: str | None = None,
                 download: DownloadFn | None = None) -> None:
        super().__init__(parent)
        self.repo_id = repo_id
        self.path: Path | None = None
        self.error: str | None = None
        self.setWindowTitle("Downloading a model")
        self.setMinimumWidth(460)

        self.repo_label = QLabel(f"<b>{repo_id}</b>")
        self.repo_label.setTextFormat(Qt.TextFormat.RichText)
        self.file_label = QLabel("connecting to the Hugging Face Hub…")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the size is known
        self.bar.setTextVisible(False)
        self.stats_label = QLabel("")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        for w in (self.repo_label, self.file_label, self.bar, self.stats_label, self.error_label, self.buttons):
            layout.addWidget(w)

        self._cancel = threading.Event()  # what the worker thread checks between chunks
        self.tasks = Tasks(self, on_error=self._on_failed)
        self._task: asyncio.Task | None = None
        self._finished = False  # the download has ended (done, failed or cancelled)
        self._download = download
        self._revision = revision

    # ------------------------------------------------------------ API

    @classmethod
    def fetch(cls, parent: QWidget | None, repo_id: str, revision: str | None = None) -> Path | None:
        """Download `repo_id` with this dialog shown modally: its folder, or None when the
        user cancelled or it failed (the dialog showed why)."""
        dialog = cls(repo_id, parent, revision=revision)
        dialog.start()
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        return dialog.path if accepted else None

    def start(self) -> asyncio.Task:
        """Start the download on the event loop (once): the task, done when the dialog has
        closed or shows why the download failed."""
        if self._task is None:
            self._task = self.tasks.start(self._run(), name=f"download {self.repo_id}")
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._finished

    async def _run(self) -> None:
        from core.models import explain_hub_error

        download = self._download
        if download is None:
            from core.downloads import download_model as download
        loop = asyncio.get_running_loop()

        def progress(p: DownloadProgress) -> None:  # on the worker thread
            loop.call_soon_threadsafe(self._progress_on_loop, p)

        work = asyncio.ensure_future(asyncio.to_thread(download, self.repo_id, progress, self._cancel,
                                                       revision=self._revision))
        try:
            # Shielded: cancelling this task must not abandon the thread, which goes on
            # writing until it sees the cancel event.
            path = await asyncio.shield(work)
        except asyncio.CancelledError:
            self._cancel.set()
            await asyncio.gather(work, return_exceptions=True)  # stopped at its next chunk
            self._on_cancelled()
            raise
        except DownloadCancelled:
            self._on_cancelled()
        except Exception as exc:  # every failure is shown, in words a user can act on
            self._on_failed(explain_hub_error(self.repo_id, exc))
        else:
            self._on_succeeded(Path(path))

    def _progress_on_loop(self, p: DownloadProgress) -> None:
        if not self._finished and isValid(self):
            self._on_progress(p)

    # ------------------------------------------------------------ slots (GUI thread)

    def _on_progress(self, p: DownloadProgress) -> None:
        if p.file:
            self.file_label.setText(p.file)
        if p.bytes_total > 0:
            self.bar.setRange(0, 1000)
            self.bar.setValue(min(1000, round(1000 * p.bytes_done / p.bytes_total)))
        if not self._cancel.is_set():
            self.stats_label.setText(describe(p))
        self.progressed.emit(p)

    def _on_succeeded(self, path: Path) -> None:
        self._finished = True
        if not isValid(self):
            return
        self.path = path
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        QDialog.accept(self)

    def _on_failed(self, message: str) -> None:
        self._finished = True
        if not isValid(self):
            return
        self.error = message
        self.file_label.setText("the download did not complete")
        self.bar.hide()
        self.stats_label.hide()
        self.error_label.setText(message)
        self.error_label.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Close")

    def _on_cancelled(self) -> None:
        self._finished = True
        if isValid(self):
            QDialog.reject(self)

    def reject(self) -> None:
        """Cancel (the button, Escape, the window's close box): the download's task is
        cancelled and stops at the next chunk; the dialog closes when it has stopped."""
        if self.running:
            if not self._cancel.is_set():
                self._cancel.set()  # at once, so a progress report already on its way says nothing more
                self._task.cancel()
                self.cancel_button.setEnabled(False)
                self.stats_label.setText("cancelling… what has arrived is kept, and the next download resumes it")
            return
        QDialog.reject(self)

    def closeEvent(self, event) -> None:
        if self.running:
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)
