"""The first-use download of a Hub model: repo, current file, a bar over all bytes,
"120 / 3400 MB · 45 MB/s · about 1 min left", and Cancel.

The download runs `core.downloads.download_model` on its own QThread; the dialog keeps
strong references to the thread and its worker, and signals carry plain Python objects
(DownloadProgress, Path, str). A cancelled download keeps what arrived, and the next
attempt resumes it. Errors (gated, missing, offline, unreachable) are shown in the
dialog in core's words.

    path = DownloadDialog.fetch(parent, "stabilityai/sdxl-turbo")  # None: cancelled or failed
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from core.downloads import DownloadCancelled, DownloadProgress, format_eta, format_rate

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


class DownloadWorker(QObject):
    """Lives on the download thread."""

    progress = Signal(object)  # DownloadProgress
    succeeded = Signal(object)  # Path
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, repo_id: str, cancel: threading.Event, download: DownloadFn | None = None,
                 revision: str | None = None) -> None:
        super().__init__()
        self.repo_id = repo_id
        self.revision = revision
        self.cancel = cancel
        self._download = download

    @Slot()
    def run(self) -> None:
        from core.models import explain_hub_error

        download = self._download
        if download is None:
            from core.downloads import download_model as download
        try:
            path = download(self.repo_id, self.progress.emit, self.cancel, revision=self.revision)
        except DownloadCancelled:
            self.cancelled.emit()
        except Exception as exc:  # every failure is shown, in words a user can act on
            self.failed.emit(explain_hub_error(self.repo_id, exc))
        else:
            self.succeeded.emit(Path(path))


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

        self._cancel = threading.Event()
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._finished = False  # the worker has reported (done, failed or cancelled)
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

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = QThread(self)
        self._thread.setObjectName(f"download {self.repo_id}")
        self._worker = DownloadWorker(self.repo_id, self._cancel, self._download, self._revision)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._finished

    # ------------------------------------------------------------ slots (GUI thread)

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        if p.file:
            self.file_label.setText(p.file)
        if p.bytes_total > 0:
            self.bar.setRange(0, 1000)
            self.bar.setValue(min(1000, round(1000 * p.bytes_done / p.bytes_total)))
        if not self._cancel.is_set():
            self.stats_label.setText(describe(p))
        self.progressed.emit(p)

    @Slot(object)
    def _on_succeeded(self, path: Path) -> None:
        self._stop_thread()
        self.path = path
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        QDialog.accept(self)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._stop_thread()
        self.error = message
        self.file_label.setText("the download did not complete")
        self.bar.hide()
        self.stats_label.hide()
        self.error_label.setText(message)
        self.error_label.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Close")

    @Slot()
    def _on_cancelled(self) -> None:
        self._stop_thread()
        QDialog.reject(self)

    def reject(self) -> None:
        """Cancel (the button, Escape, the window's close box): stop the download at the
        next chunk; the dialog closes when the worker has stopped."""
        if self.running:
            if not self._cancel.is_set():
                self._cancel.set()
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

    def shutdown(self) -> None:
        """Stop a running download and wait for its thread (for a window closing under it):
        the worker stops at its next chunk, keeping what arrived."""
        self._cancel.set()
        self._stop_thread()

    def _stop_thread(self) -> None:
        self._finished = True
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
