"""The strength of a refine stage as a slider and a spin box, with core.strength's advice
beneath it (the command line says the same words)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from core.strength import advice


class StrengthSlider(QWidget):
    valueChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._steps = 30
        self._same: bool | None = None
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(1, 100)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.01, 1.0)
        self.spin.setSingleStep(0.05)
        self.spin.setDecimals(2)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setObjectName("strength_hint")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #b35c00;")
        self.warning.setObjectName("strength_warning")
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        layout.addWidget(self.warning)
        self.slider.valueChanged.connect(lambda v: self._set(v / 100, from_slider=True))
        self.spin.valueChanged.connect(lambda v: self._set(v, from_slider=False))
        self.setValue(0.3)

    def value(self) -> float:
        return round(self.spin.value(), 2)

    def setValue(self, value: float) -> None:
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        self.slider.setValue(round(value * 100))
        self.spin.setValue(value)
        for w in (self.slider, self.spin):
            w.blockSignals(False)
        self._refresh()

    def set_context(self, steps: int, same_family: bool | None) -> None:
        self._steps, self._same = steps, same_family
        self._refresh()

    def _set(self, value: float, from_slider: bool) -> None:
        other = self.spin if from_slider else self.slider
        other.blockSignals(True)
        if from_slider:
            self.spin.setValue(value)
        else:
            self.slider.setValue(round(value * 100))
        other.blockSignals(False)
        self._refresh()
        self.valueChanged.emit(self.value())

    def _refresh(self) -> None:
        said = advice(self.value(), self._steps, self._same)
        self.hint.setText(said.hint)
        self.warning.setText(said.warning)
        self.warning.setVisible(bool(said.warning))
