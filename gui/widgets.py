"""Small widget factories shared by the panels."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QLabel, QScrollArea, QSizePolicy, QStatusBar, QToolButton, QWidget

from core.project import MAX_SEED


def tool_button(text: str, tip: str, slot) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b


class SeedBox(QAbstractSpinBox):
    """A seed field for the whole 64-bit 0..MAX_SEED range (ComfyUI's and A1111's seeds;
    QSpinBox stops at 2**31 - 1), with QSpinBox's value()/setValue()/valueChanged."""

    valueChanged = Signal(object)  # Signal(int) is a C++ int: seeds past 2**31 - 1 would crash it

    def __init__(self, parent=None, maximum: int = MAX_SEED):
        super().__init__(parent)
        self._value, self._max = 0, maximum
        self.lineEdit().setText("0")
        self.lineEdit().textEdited.connect(self._on_text)
        self.editingFinished.connect(lambda: self.lineEdit().setText(str(self._value)))

    def value(self) -> int:
        return self._value

    def sizeHint(self):
        hint = super().sizeHint()
        # QAbstractSpinBox measures no text for a subclass: make room for the longest seed.
        hint.setWidth(hint.width() + self.fontMetrics().horizontalAdvance("8" * len(str(self._max))))
        return hint

    def setValue(self, value: int) -> None:
        value = min(max(0, int(value)), self._max)
        if self.lineEdit().text() != str(value):
            self.lineEdit().setText(str(value))
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def _on_text(self, text: str) -> None:
        if text.isdigit() and int(text) <= self._max:
            self.setValue(int(text))

    def stepBy(self, steps: int) -> None:
        self.setValue(self._value + steps)

    def stepEnabled(self):
        flags = QAbstractSpinBox.StepNone
        if self._value > 0:
            flags |= QAbstractSpinBox.StepDownEnabled
        if self._value < self._max:
            flags |= QAbstractSpinBox.StepUpEnabled
        return flags

    def validate(self, text: str, pos: int):
        if text == "":
            return QValidator.Intermediate, text, pos
        if text.isdigit() and int(text) <= self._max:
            return QValidator.Acceptable, text, pos
        return QValidator.Invalid, text, pos

    def fixup(self, text: str) -> str:
        return str(self._value)


def update_geometry_up(widget: QWidget | None) -> None:
    """Tell `widget` and every widget it sits in that its size hints changed. Before the
    window shows, Qt passes that on only through layouts (not splitters), so a widget
    added or removed then leaves a stale minimum up the chain until the first events, and
    the window opens wider than it was sized."""
    while widget is not None:
        widget.updateGeometry()
        widget = widget.parentWidget()


class ElidedLabel(QLabel):
    """One line of text that never sets its row's width: it takes the width it is given
    (a fixed one, or what the layout leaves) and ends in "…" when the text is longer, the
    whole text in its tooltip. A label that changes during a run (the live preview's
    caption) then moves nothing beside it."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.setMinimumWidth(0)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(0, self.contentsRect().width()))
        super().setText(shown)
        self.setToolTip(self._full if shown != self._full else "")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._elide()

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        # Not the text's width: a fixed width when one is set, else nothing asked for.
        return QSize(self.minimumWidth(), super().sizeHint().height())


class NoteLabel(QLabel):
    """A wrapped line that takes no room while it says nothing (a problem, a progress note)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.hide()

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setVisible(bool(text))

    def clear(self) -> None:
        self.setText("")


class VerticalScrollArea(QScrollArea):
    """A column that scrolls up and down only: it is always as wide as its contents'
    minimum (plus room for the vertical scroll bar, kept whether or not it shows), so a
    section opening never adds a sideways scroll bar or cuts a field at the right edge;
    a splitter it sits in gives it that width."""

    def __init__(self, widget: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setWidget(widget)
        widget.installEventFilter(self)

    def _extra(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        inner = self.widget().minimumSizeHint() if self.widget() is not None else QSize(0, 0)
        return QSize(inner.width() + self._extra(), super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(max(hint.width(), self.minimumSizeHint().width()), hint.height())

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()  # a section opened or closed: the column's minimum follows
        return super().eventFilter(watched, event)


class ElidingStatusBar(QStatusBar):
    """A status bar whose messages end in "…" when longer than the bar, the whole message
    in the tooltip and in currentMessage(); a long message (the CPU advice with its URL)
    is never cut mid-word with no way to read the rest."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clearMessage)
        self._shown = ""
        # Qt shows some messages itself (a menu item's status tip), past showMessage here.
        self.messageChanged.connect(self._on_changed)

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 (Qt's name)
        self._full = text
        self._timer.stop()
        if timeout > 0:
            self._timer.start(timeout)
        self._show()

    def clearMessage(self) -> None:  # noqa: N802
        self._full = ""
        self._timer.stop()
        self.setToolTip("")
        super().clearMessage()

    def currentMessage(self) -> str:  # noqa: N802
        return self._full

    def message_room(self) -> int:
        """The width a message has: the bar less the permanent widgets at its right (by their
        size hints: a text just set there is not laid out yet) and the margins."""
        taken = sum(w.sizeHint().width() + 6 for w in self.children()
                    if isinstance(w, QWidget) and not w.isHidden())
        return max(0, self.width() - taken - 12)

    def _show(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, self.message_room())
        self.setToolTip(self._full if shown != self._full else "")
        self._shown = shown
        super().showMessage(shown)

    def _on_changed(self, text: str) -> None:
        if text != self._shown:
            self._full = self._shown = text
            self.setToolTip("")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._full:
            self._show()
