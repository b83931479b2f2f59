"""Each stage's load, denoise, decode and total time, newest run first, earlier runs kept.
The columns always fit the table's width (it sits under the viewer, a third of a laptop's
screen): short ones (numbers) keep theirs, long ones (peak memory, drift) share what is
left and end in "…", the whole text in the cell's tooltip."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from gui.vram_gauge import human

REUSED = "reused (stored output)"


def describe_finish(ev) -> str:
    """The Log's line for a finished stage (a core.events.StageFinished). A reused stage did
    not run: its 0.00 s and 0 B peak are not measurements, so it says where it came from."""
    if ev.reused:
        return f"{ev.label}: {REUSED} → {ev.path}"
    return f"{ev.label} done in {ev.total_seconds:.2f} s → {ev.path}"


COLUMNS = ("Run", "Stage", "Handoff", "Steps", "Load", "Denoise", "Decode", "Total", "Peak memory", "Drift")
HEADER_TIPS = {"Load": "Seconds loading the model", "Denoise": "Seconds denoising", "Decode": "Seconds decoding (VAE)",
               "Total": "The stage's seconds, or the whole job's", "Peak memory": "The stage's peak memory, and of what",
               "Drift": "How far the handed-over latents drift from a decode of them"}


class Tipped(str):
    """A cell's text with more in its tooltip (the peak's "process RAM peak" or "VRAM")."""

    def __new__(cls, text: str, tip: str) -> "Tipped":
        out = super().__new__(cls, text)
        out.tip = tip
        return out


class TimingTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        for c, name in enumerate(COLUMNS):
            self.horizontalHeaderItem(c).setToolTip(HEADER_TIPS.get(name, name))
        self.setWordWrap(False)  # one line a row: a cut cell ends in "…", not a second line
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectRows)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Fixed)
        header.setMinimumSectionSize(24)
        header.setTextElideMode(Qt.ElideRight)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.ElideRight)
        self.fit_columns()

    def natural_widths(self) -> list[int]:
        """Each column's width with nothing cut: its header's or its widest cell's."""
        header = self.horizontalHeader()
        return [max(header.sectionSizeHint(c), self.sizeHintForColumn(c)) for c in range(self.columnCount())]

    def fit_columns(self) -> None:
        room = self.viewport().width()
        natural = self.natural_widths()
        widths = list(natural)
        last = min(natural[-1], 4 * self.horizontalHeader().minimumSectionSize())
        if sum(natural[:-1]) + last <= room:
            # Every column whole but the last (drift: the longest text, whole in its tooltip).
            widths[-1] = room - sum(natural[:-1])
        elif sum(natural) > room:
            # Water-filling: columns narrower than the cap keep their width, the rest are
            # cut to the cap, the one width at which they all fit.
            left, cap = room, 0
            ordered = sorted(natural)
            for i, w in enumerate(ordered):
                if w * (len(ordered) - i) > left:
                    cap = max(self.horizontalHeader().minimumSectionSize(), left // (len(ordered) - i))
                    break
                left -= w
            widths = [min(w, cap) for w in natural]
        for c, w in enumerate(widths):
            self.setColumnWidth(c, w)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def setRowCount(self, rows: int) -> None:  # noqa: N802 (Qt's name)
        super().setRowCount(rows)
        self.fit_columns()

    def add_run(self, run_label: str, stages: list, total_seconds: float | None = None) -> None:
        """Insert one run's rows at the top (each stage, then the run's total)."""
        rows: list[tuple] = []
        for s in stages:
            if getattr(s, "reused", False):
                rows.append((run_label, s.label, "reused", "", None, None, None, None, REUSED, ""))
                continue
            drift = getattr(s, "drift", None)
            rows.append((run_label, s.label, s.handoff, s.steps_run, s.load_seconds, s.denoise_seconds,
                         s.decode_seconds, s.total_seconds, Tipped(human(s.peak_memory), f"{human(s.peak_memory)} {s.memory_kind}"),
                         "" if drift is None else (drift.label() + (f" — {drift.warning}" if drift.warning else ""))))
        if total_seconds is not None:
            rows.append((run_label, "whole job", "", "", None, None, None, total_seconds, "", ""))
        for r, values in enumerate(rows):
            self.insertRow(r)
            for c, v in enumerate(values):
                text = f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))
                item = QTableWidgetItem(text)
                item.setToolTip(v.tip if isinstance(v, Tipped) else text)  # what a narrow column cuts off
                if isinstance(v, (int, float)):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.setItem(r, c, item)
        # Older runs in grey, so the last run stands out.
        grey = self.palette().mid()
        for r in range(len(rows), self.rowCount()):
            for c in range(self.columnCount()):
                item = self.item(r, c)
                if item:
                    item.setForeground(grey)
        self.fit_columns()
