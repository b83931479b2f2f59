"""Start the studio: a QApplication driven by a qasync event loop (so asyncio code can
share the Qt loop), the window shown at once, torch imported on the engine thread."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from core import paths


def _real_streams() -> None:
    # A windowed start (pythonw, a desktop launcher) has no stdout/stderr; tqdm and logging write there.
    if sys.stdout is None or sys.stderr is None:
        log = open(paths.ensure(paths.home()) / "handoff.log", "a", buffering=1, encoding="utf-8")
        sys.stdout = sys.stdout or log
        sys.stderr = sys.stderr or log


PRELOAD_DELAY_MS = 300


def create_window(argv: list[str] | None = None):
    """The QApplication (made if needed) and a shown window; torch starts loading in
    the background once the window has painted."""
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from core import document
    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "handoff"])
    app.setApplicationName("Handoff")
    app.setOrganizationName("Handoff")
    app.setDesktopFileName("handoff")  # Wayland matches the window to packaging/install_launcher.py's entry
    icon = paths.RESOURCES / "icon.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    crashed = document.begin_session()
    window = MainWindow()
    window.show()
    # After the first paint: the import costs seconds, and while a thread imports torch it
    # holds the GIL for long stretches, so starting at once would delay the first frame.
    QTimer.singleShot(PRELOAD_DELAY_MS, window.runner.preload)
    files = [a for a in (argv or []) if not a.startswith("-")]
    if crashed:
        QTimer.singleShot(0, window.offer_recovery)
    if files:
        QTimer.singleShot(0, lambda: window.open_path(Path(files[0])))
    return app, window


def run_app(argv: list[str] | None = None) -> int:
    _real_streams()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import qasync

    app, window = create_window(argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    return 0
