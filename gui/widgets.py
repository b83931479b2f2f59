"""Small widget factories shared by the panels."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QToolButton

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
