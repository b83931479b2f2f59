"""The window's size and splitters: opened within the screen's available area (a laptop's
1366×768 minus its panels), restored as the user left them, saved on close."""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QRect
from PySide6.QtWidgets import QSplitter, QWidget

from gui.settings import Settings

PREFERRED = (1280, 820)  # what the layout is drawn for on a roomy screen


def fit_to_screen(window: QWidget) -> QRect:
    """Size and centre `window` inside its screen's available geometry; the frame (title
    bar, borders) is counted so the status bar stays on screen."""
    screen = window.screen()
    area = screen.availableGeometry() if screen is not None else QRect(0, 0, *PREFERRED)
    frame_w = max(0, window.frameGeometry().width() - window.geometry().width()) or 8
    frame_h = max(0, window.frameGeometry().height() - window.geometry().height()) or 32
    w = min(PREFERRED[0], area.width() - frame_w)
    h = min(PREFERRED[1], area.height() - frame_h)
    window.resize(w, h)
    window.move(area.x() + (area.width() - w - frame_w) // 2, area.y() + (area.height() - h - frame_h) // 2)
    return area


def restore(window: QWidget, settings: Settings, splitters: dict[str, QSplitter]) -> bool:
    """The saved geometry and splitter sizes, when there are any and they fit a screen
    (restoreGeometry itself moves a window back onto a screen that shrank)."""
    fit_to_screen(window)
    ok = bool(settings.window_geometry) and window.restoreGeometry(
        QByteArray.fromBase64(settings.window_geometry.encode("ascii")))
    screen = window.screen()
    if ok and screen is not None:
        area = screen.availableGeometry()
        if window.width() > area.width() or window.height() > area.height():
            fit_to_screen(window)  # saved on a bigger monitor
    # After the size: splitters keep the sizes they are given for the size they have.
    for name, splitter in splitters.items():
        sizes = settings.splitters.get(name)
        if isinstance(sizes, list) and len(sizes) == splitter.count() and all(isinstance(s, int) for s in sizes):
            splitter.setSizes(sizes)
    return ok


def save(window: QWidget, settings: Settings, splitters: dict[str, QSplitter]) -> None:
    settings.window_geometry = bytes(window.saveGeometry().toBase64()).decode("ascii")
    settings.splitters = {name: list(s.sizes()) for name, s in splitters.items()}
