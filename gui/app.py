"""Start the studio: a QApplication driven by a qasync event loop (so asyncio code can
share the Qt loop), the window shown at once, torch imported on the engine thread."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from core import paths
from core.desktop import APP_ID


def _real_streams() -> None:
    # A windowed start (pythonw, a desktop launcher) has no stdout/stderr; tqdm and logging write there.
    if sys.stdout is None or sys.stderr is None:
        log = open(paths.ensure(paths.home()) / "handoff.log", "a", buffering=1, encoding="utf-8")
        sys.stdout = sys.stdout or log
        sys.stderr = sys.stderr or log


PRELOAD_DELAY_MS = 300
APP_NAME = "Handoff"


def install_quit_signals(app, window) -> object:
    """SIGTERM (a logout, `kill`, a service manager) and SIGINT close the window through the
    Qt loop, as a user would, instead of killing the process mid-write: the session lock
    goes, so the next start does not take it for a crash. Python runs signal handlers only
    between bytecodes, and a Qt loop waiting for events runs none; the wakeup fd makes the
    loop wake (a socket notifier) so the handler runs at once. Returns what must be kept
    alive; `restore()` on it puts the old handlers back (for tests)."""
    import signal
    import socket

    from PySide6.QtCore import QSocketNotifier, QTimer

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    old_fd = signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Read, app)

    def drain() -> None:
        try:
            reader.recv(256)  # the Python handler has run by now; empty the pipe
        except OSError:
            pass

    notifier.activated.connect(drain)

    def on_signal(signum, _frame) -> None:
        QTimer.singleShot(0, window.quit_for_signal)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    class Installed:
        def restore(self) -> None:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)
            notifier.setEnabled(False)
            reader.close()
            writer.close()

    installed = Installed()
    installed.keep = (reader, writer, notifier)
    return installed


def create_window(argv: list[str] | None = None):
    """The QApplication (made if needed) and a shown window; torch starts loading in
    the background once the window has painted."""
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from core import document
    from gui.main_window import MainWindow

    # X11 names the window's WM_CLASS after argv[0] (or RESOURCE_NAME): "Handoff", not
    # "main.py", so docks and window rules find it; Wayland uses the desktop file name below.
    os.environ.setdefault("RESOURCE_NAME", APP_NAME)
    app = QApplication.instance() or QApplication([APP_NAME] + (sys.argv[1:] if sys.argv else []))
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("Handoff")
    app.setDesktopFileName(APP_ID)  # Wayland matches the window to core/desktop.py's menu entry
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


QUIT_AFTER_ENV = "HANDOFF_QUIT_AFTER_MS"  # packaging/smoke_test.sh: open, wait for torch, report, close
SMOKE_TORCH_WAIT_S = 300


def _quit_after(window, delay_ms: int, result: list[int]) -> None:
    """`delay_ms` after the window is shown, and once torch has loaded (or failed), print what
    the window says (its title, and the status bar naming the device) and close it the way a
    user would; run_app then returns 0, or 1 if any of that went wrong."""
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    started = time.monotonic()
    torch_done: list[str] = []
    window.runner.torch_ready.connect(lambda text: torch_done.append(text))
    window.runner.torch_failed.connect(lambda text: torch_done.append(text))

    def check() -> None:
        if not torch_done and time.monotonic() - started < SMOKE_TORCH_WAIT_S:
            QTimer.singleShot(200, check)
            return
        print(f"smoke: window shown={window.isVisible()} {window.width()}x{window.height()} “{window.windowTitle()}”; "
              f"{window.torch_status.text()}; status bar: {window.statusBar().currentMessage()}", flush=True)
        if window.banner.isVisible():  # what the window said at start (a damaged file, say)
            print(f"smoke: banner: {' / '.join(window.banner.text.text().splitlines())}", flush=True)
        result[0] = 0 if torch_done and window.isVisible() else 1
        if window.modified:  # closing would ask about unsaved changes, and nobody is there to answer
            print("smoke: the untouched window says it has unsaved changes", flush=True)
            result[0] = 1
            window.modified = False
        window.close()
        if window.isVisible():
            print("smoke: the window did not close", flush=True)
            result[0] = 1
            window.hide()
            QApplication.instance().quit()

    QTimer.singleShot(delay_ms, check)


def run_app(argv: list[str] | None = None) -> int:
    _real_streams()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import qasync

    app, window = create_window(argv)
    signals = install_quit_signals(app, window)  # noqa: F841  (kept alive while the app runs)
    result = [0]
    quit_after = os.environ.get(QUIT_AFTER_ENV)
    if quit_after:
        _quit_after(window, int(quit_after), result)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
        finish_tasks(loop)
    return result[0]


def finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """The window has gone: cancel what still runs on the loop (a download, a scan, a
    write) and let each finish its cancellation (a download waits for its thread to stop
    at the next chunk) before the loop closes and joins its worker threads."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
