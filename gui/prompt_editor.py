"""Prompt and negative prompt for the whole project, and the per-stage prompt fields
(an override that replaces the project prompt, or a suffix of detail terms)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QVBoxLayout, QWidget

from core.project import Project, Stage


class PromptEditor(QWidget):
    """Edits project.prompt and project.negative_prompt in place."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe the image…")
        self.prompt.setObjectName("prompt")
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("Negative prompt (what to avoid)")
        self.negative.setObjectName("negative_prompt")
        for edit, lines in ((self.prompt, 3), (self.negative, 2)):
            edit.setTabChangesFocus(True)
            edit.setFixedHeight(edit.fontMetrics().lineSpacing() * lines + 12)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.prompt)
        layout.addWidget(QLabel("Negative prompt"))
        layout.addWidget(self.negative)
        self.prompt.textChanged.connect(self._write)
        self.negative.textChanged.connect(self._write)

    def load(self, project: Project) -> None:
        self._project = None  # no write-back while filling the fields
        self.prompt.setPlainText(project.prompt)
        self.negative.setPlainText(project.negative_prompt)
        self._project = project

    def _write(self) -> None:
        if self._project is None:
            return
        self._project.prompt = self.prompt.toPlainText()
        self._project.negative_prompt = self.negative.toPlainText()
        self.changed.emit()


class StagePromptFields(QWidget):
    """A stage's own prompt: an override (empty: use the project's) and detail terms."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stage: Stage | None = None
        self.override = QLineEdit()
        self.override.setPlaceholderText("(use the project prompt)")
        self.suffix = QLineEdit()
        self.suffix.setPlaceholderText("e.g. sharp, detailed edges")
        self.negative = QLineEdit()
        self.negative.setPlaceholderText("(use the project negative prompt)")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Prompt override", self.override)
        form.addRow("Detail terms", self.suffix)
        form.addRow("Negative override", self.negative)
        for edit in (self.override, self.suffix, self.negative):
            edit.textEdited.connect(self._write)

    def load(self, stage: Stage | None) -> None:
        self._stage = None
        self.override.setText((stage.prompt or "") if stage else "")
        self.suffix.setText(stage.prompt_suffix if stage else "")
        self.negative.setText((stage.negative_prompt or "") if stage else "")
        self.setEnabled(stage is not None)
        self._stage = stage

    def _write(self) -> None:
        if self._stage is None:
            return
        # Empty means "inherit": stored as None so the project prompt shows through.
        self._stage.prompt = self.override.text() or None
        self._stage.prompt_suffix = self.suffix.text()
        self._stage.negative_prompt = self.negative.text() or None
        self.changed.emit()
