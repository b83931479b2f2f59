"""How much of the schedule a refine stage re-runs, with the guidance users need to pick
it: a light polish within one family, more across families, and a warning where the
picture itself starts to change."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

DRIFT_ABOVE = 0.5
SAME_FAMILY = (0.10, 0.25)
CROSS_FAMILY = (0.40, 0.60)


def advice(strength: float, steps: int, same_family: bool | None) -> tuple[str, str]:
    """(hint, warning) texts for a strength; the warning is empty when there is none."""
    effective = int(steps * strength)
    if same_family is True:
        lo, hi = SAME_FAMILY
        hint = f"Same family: {lo:.2f}–{hi:.2f} polishes detail."
    elif same_family is False:
        lo, hi = CROSS_FAMILY
        hint = f"Across families: {lo:.2f}–{hi:.2f} lets the refiner restyle."
    else:
        hint = f"{SAME_FAMILY[0]:.2f}–{SAME_FAMILY[1]:.2f} polishes within a family; {CROSS_FAMILY[0]:.1f}–{CROSS_FAMILY[1]:.1f} across families."
    hint += f"  Runs {effective} of {steps} steps."
    warning = ""
    if strength > DRIFT_ABOVE:
        warning = "Above 0.5 the text and composition may drift from the previous stage."
    if effective < 1:
        warning = f"{steps} steps × {strength:.2f} runs no step: raise steps or strength."
    return hint, warning


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
        hint, warning = advice(self.value(), self._steps, self._same)
        self.hint.setText(hint)
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))
