"""What "fits" means for the window's layout tests (tests/gui/test_laptop.py): every
control the user can see lies within the window and is cut by none of the widgets it sits
in, and no column scrolls sideways.

The rule, precisely. A control is a visible button, line edit, combo, spin box, slider
(not a scroll bar), item view (table, list) or tab bar. Its rectangle, mapped into the
window, must lie inside the window's rectangle and inside the rectangle of each of its
ancestors, with one exception: an ancestor that is the viewport of a scroll area which
cannot scroll sideways (its horizontal range is 0) may cut the control vertically (it is
scrolled out of view, a wheel turn away) but never horizontally. A control inside a
scroll area that does scroll sideways gets no such pass, and such a scroll area is
reported on its own: no QAbstractScrollArea shows a horizontal scroll bar, except the
ones named in `strips` (a run strip of thumbnails is a sideways list by design)."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import (
    QAbstractButton, QAbstractItemView, QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QComboBox,
    QLineEdit, QScrollBar, QTabBar, QWidget,
)

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QAbstractSlider, QAbstractItemView, QTabBar)


def _name(w: QWidget) -> str:
    text = w.text() if hasattr(w, "text") and callable(w.text) else ""
    return f"{type(w).__name__}({w.objectName() or text or ''!s:.30})"


def _path(w: QWidget, window: QWidget) -> str:
    names = []
    while w is not None and w is not window:
        names.append(_name(w))
        w = w.parentWidget()
    return " < ".join(names[:4])


def _is_part_of_a_control(w: QWidget, window: QWidget) -> bool:
    """A spin box's line edit, a combo's list, a tab bar's scroll buttons, a cell editor:
    checked as their owner."""
    p = w.parentWidget()
    while p is not None and p is not window:
        if isinstance(p, (QComboBox, QAbstractSpinBox, QTabBar, QAbstractItemView)):
            return True
        p = p.parentWidget()
    return False


def controls(window: QWidget) -> list[QWidget]:
    return [w for w in window.findChildren(QWidget)
            if isinstance(w, CONTROLS) and not isinstance(w, QScrollBar) and w.isVisible()
            and w.window() is window and not _is_part_of_a_control(w, window)]


def _in_window(w: QWidget, window: QWidget) -> QRect:
    return QRect(w.mapTo(window, QPoint(0, 0)), w.size())


def clipped(window: QWidget) -> list[str]:
    """Each visible control that is cut off, with the widget that cuts it."""
    out = []
    for w in controls(window):
        r = _in_window(w, window)
        a = w.parentWidget()
        while a is not None and a is not window:
            ar = _in_window(a, window)
            area = a.parentWidget()
            sideways_free = (isinstance(area, QAbstractScrollArea) and area.viewport() is a
                             and area.horizontalScrollBar().maximum() == 0)
            if sideways_free:
                cut = r.left() < ar.left() or r.right() > ar.right()
                # Scrolled out of view vertically: what shows must fit the rest of the way.
                top, bottom = max(r.top(), ar.top()), min(r.bottom(), ar.bottom())
                r = QRect(r.left(), top, r.width(), max(0, bottom - top + 1))
            else:
                cut = not ar.contains(r) and not r.isEmpty()
            if cut:
                out.append(f"{_path(w, window)} at {r.getRect()} is cut by {_name(a)} at {ar.getRect()}")
                break
            a = a.parentWidget()
        else:
            if not r.isEmpty() and not window.rect().contains(r):
                out.append(f"{_path(w, window)} at {r.getRect()} is outside the window {window.rect().getRect()}")
    return out


def sideways_scrollbars(window: QWidget, strips: tuple[QWidget, ...] = ()) -> list[str]:
    return [f"{_path(a, window)} scrolls sideways by {a.horizontalScrollBar().maximum()} px"
            for a in window.findChildren(QAbstractScrollArea)
            if a.isVisible() and a not in strips and a.horizontalScrollBar().isVisible()]
