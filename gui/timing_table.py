"""Each stage's load, denoise, decode and total time, newest run first, earlier runs kept."""
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


COLUMNS = ("Run", "Stage", "Handoff", "Steps", "Load s", "Denoise s", "Decode s", "Total s", "Peak memory", "Drift")


class TimingTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)

    def add_run(self, run_label: str, stages: list, total_seconds: float | None = None) -> None:
        """Insert one run's rows at the top (each stage, then the run's total)."""
        rows: list[tuple] = []
        for s in stages:
            if getattr(s, "reused", False):
                rows.append((run_label, s.label, "reused", "", None, None, None, None, REUSED, ""))
                continue
            drift = getattr(s, "drift", None)
            rows.append((run_label, s.label, s.handoff, s.steps_run, s.load_seconds, s.denoise_seconds,
                         s.decode_seconds, s.total_seconds, f"{human(s.peak_memory)} {s.memory_kind}",
                         "" if drift is None else (drift.label() + (f" — {drift.warning}" if drift.warning else ""))))
        if total_seconds is not None:
            rows.append((run_label, "whole job", "", "", None, None, None, total_seconds, "", ""))
        for r, values in enumerate(rows):
            self.insertRow(r)
            for c, v in enumerate(values):
                text = f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))
                item = QTableWidgetItem(text)
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
