"""The window's size and splitters: opened within the screen's available area (a laptop's
1366×768 minus its panels), restored as the user left them, saved on close.

The geometry is kept as the window's own rectangle, "x,y,width,height" (and ",max" when
maximized), without the frame the window manager draws around it. QWidget.saveGeometry()
mixes the frame in, and restoreGeometry() on a window not yet shown (its frame unknown)
puts it back one title bar lower: 25 px further down every session on X11."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QRect, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QSplitter, QWidget

from gui.settings import Settings

PREFERRED = (1280, 820)  # what the layout is drawn for on a roomy screen
FRAME = (8, 32)  # a frame's width and height (borders, title bar) before the window shows its own


@dataclass(frozen=True)
class SavedGeometry:
    rect: QRect  # the window without its frame, in screen coordinates
    maximized: bool = False

    def text(self) -> str:
        r = self.rect
        return f"{r.x()},{r.y()},{r.width()},{r.height()}" + (",max" if self.maximized else "")

    @classmethod
    def parse(cls, text: str) -> "SavedGeometry | None":
        parts = text.split(",")
        maximized = parts[-1:] == ["max"]
        numbers = parts[:-1] if maximized else parts
        try:
            x, y, w, h = (int(p) for p in numbers)
        except ValueError:
            return None  # not ours: an older base64 saveGeometry(), or damaged
        return cls(QRect(x, y, w, h), maximized) if w > 0 and h > 0 else None


def _frame(window: QWidget) -> tuple[int, int]:
    fw = window.frameGeometry().width() - window.geometry().width()
    fh = window.frameGeometry().height() - window.geometry().height()
    return (fw if fw > 0 else FRAME[0]), (fh if fh > 0 else FRAME[1])


def fit_to_screen(window: QWidget) -> QRect:
    """Size and centre `window` inside its screen's available geometry; the frame (title
    bar, borders) is counted so the status bar stays on screen."""
    screen = window.screen()
    area = screen.availableGeometry() if screen is not None else QRect(0, 0, *PREFERRED)
    frame_w, frame_h = _frame(window)
    w = min(PREFERRED[0], area.width() - frame_w)
    h = min(PREFERRED[1], area.height() - frame_h)
    window.resize(w, h)
    window.move(area.x() + (area.width() - w - frame_w) // 2, area.y() + (area.height() - h - frame_h) // 2)
    return area


def _fits_a_screen(rect: QRect) -> bool:
    """The window (its frame aside: the frame of a window at a screen's edge may be off it)
    lies inside one screen's available area."""
    return any(s.availableGeometry().contains(rect) for s in QGuiApplication.screens())


def restore(window: QWidget, settings: Settings, splitters: dict[str, QSplitter]) -> bool:
    """The saved geometry and splitter sizes, when there are any and they fit a screen (a
    window saved on a bigger monitor, or on one that is gone, is fitted to this one)."""
    fit_to_screen(window)
    saved = SavedGeometry.parse(settings.window_geometry) if settings.window_geometry else None
    ok = False
    if saved is not None:
        ok = _fits_a_screen(saved.rect)
        if ok:
            window.setGeometry(saved.rect)  # the rectangle itself, not the frame's: it lands where it was
        if saved.maximized:
            window.setWindowState(window.windowState() | Qt.WindowMaximized)
    elif settings.window_geometry:
        # Saved by an older version (saveGeometry in base64): taken once, saved anew on close.
        ok = window.restoreGeometry(QByteArray.fromBase64(settings.window_geometry.encode("ascii")))
        screen = window.screen()
        if ok and screen is not None and (window.width() > screen.availableGeometry().width()
                                          or window.height() > screen.availableGeometry().height()):
            fit_to_screen(window)
    # After the size: splitters keep the sizes they are given for the size they have.
    for name, splitter in splitters.items():
        sizes = settings.splitters.get(name)
        if isinstance(sizes, list) and len(sizes) == splitter.count() and all(isinstance(s, int) for s in sizes):
            splitter.setSizes(sizes)
    return ok


def save(window: QWidget, settings: Settings, splitters: dict[str, QSplitter]) -> None:
    maximized = bool(window.windowState() & Qt.WindowMaximized)
    settings.window_geometry = SavedGeometry(QRect(window.normalGeometry()), maximized).text()
    settings.splitters = {name: list(s.sizes()) for name, s in splitters.items()}
