"""Small widget factories shared by the panels."""
from __future__ import annotations

from PySide6.QtWidgets import QToolButton


def tool_button(text: str, tip: str, slot) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b
