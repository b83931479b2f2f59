"""The first stage's candidates in a row, each with its seed and score (a view of
core.events.CandidatesScored); clicking one asks for it to continue instead (the window
re-runs the chain from stage 2 through core.candidates.repick)."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QToolButton, QWidget

from gui.images import pil_to_qimage

THUMB = 96


class CandidateStrip(QScrollArea):
    picked = Signal(int)  # a candidate's seed

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("candidate_strip")
        self.setWidgetResizable(True)
        self.setFixedHeight(THUMB + 64)
        self.buttons: dict[int, QToolButton] = {}
        self.hide()  # shown by a job with candidates

    def show_candidates(self, event) -> None:
        """Lay out the candidates of a CandidatesScored event, the kept ones checked."""
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(QLabel(f"Candidates\n({event.scorer.split(':', 1)[0]})"))
        self.buttons = {}
        for c in event.candidates:
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
            button.setCheckable(True)
            button.setChecked(c.seed in event.kept)
            button.setText(f"seed {c.seed}\nscore {c.score:.3f}")
            button.setToolTip(f"{c.path}\nclick to continue with this candidate (re-runs from stage 2)")
            if c.image is not None:
                button.setIcon(QIcon(QPixmap.fromImage(pil_to_qimage(c.image))))
                button.setIconSize(QSize(THUMB, THUMB))
            button.clicked.connect(lambda _=False, seed=c.seed: self._pick(seed))
            layout.addWidget(button)
            self.buttons[c.seed] = button
        layout.addStretch(1)
        self.setWidget(row)
        self.show()

    def _pick(self, seed: int) -> None:
        for s, button in self.buttons.items():
            button.setChecked(s == seed)
        self.picked.emit(seed)
