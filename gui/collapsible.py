"""A titled section that folds away: the stage editor is four of them, so at 1366×768
the controls of the section being worked on fit without a scrollbar, and the rest are
one click away. Plain Qt: a checkable header button and a content widget."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLayout, QSizePolicy, QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    toggled = Signal(bool)

    def __init__(self, title: str, content: QLayout | QWidget, expanded: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QToolButton()
        self.header.setObjectName("section_header")
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setChecked(expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.header.setStyleSheet("QToolButton { font-weight: bold; text-align: left; }")
        if isinstance(content, QLayout):
            body = QWidget()
            body.setLayout(content)
            content = body
        self.body = content
        line = QFrame()
        line.setFrameShape(QFrame.HLine)
        line.setFrameShadow(QFrame.Sunken)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(line)
        layout.addWidget(self.body)
        self.header.toggled.connect(self._apply)
        self._apply(expanded)

    def _apply(self, expanded: bool) -> None:
        self.header.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.body.setVisible(expanded)
        self.toggled.emit(expanded)

    def is_expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        self.header.setChecked(expanded)

    def set_summary(self, text: str) -> None:
        """What the folded section holds, beside its title, so a folded section still says it."""
        title = self.header.text().split("  ·  ")[0]
        self.header.setText(f"{title}  ·  {text}" if text else title)
