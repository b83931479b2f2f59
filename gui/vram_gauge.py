"""A live memory gauge that always says what it measures (VRAM by NVML, VRAM by torch,
or this process's RAM on a machine with no GPU), and the peak of each stage."""
from __future__ import annotations

import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from core import devices


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"


WAITING = "memory: waiting for torch…"


def torch_loading() -> bool:
    """torch is being imported (by the worker thread) and is not whole yet: reading it now
    fails with "partially initialized module 'torch'". Python marks a module mid-import on
    its spec; nothing is imported here."""
    torch = sys.modules.get("torch")
    spec = getattr(torch, "__spec__", None) if torch is not None else None
    return bool(getattr(spec, "_initializing", False))


class VramGauge(QWidget):
    def __init__(self, interval_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setObjectName("memory_label")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        self.peaks = QLabel()
        self.peaks.setObjectName("memory_peaks")
        self.peaks.setWordWrap(True)
        # Two lines reserved whether or not there are peaks yet, so the peaks arriving after
        # a run do not push the Generate and Cancel buttons above them (they moved 14 px).
        self.peaks.setFixedHeight(2 * self.peaks.fontMetrics().lineSpacing() + 2)
        self.peaks.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.peaks)
        self._peaks: list[str] = []
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.poll)
        self.timer.start(interval_ms)
        self.poll()

    def poll(self) -> None:
        if torch_loading():
            self._wait()
            return
        try:
            reading = devices.memory_now()
        except Exception as exc:  # a gauge must never take the window down
            if torch_loading():  # the import began between the check and the reading
                self._wait()
            else:
                self.label.setText(f"memory: unavailable ({exc})")
            return
        if reading.total:
            self.label.setText(f"{reading.label}: {human(reading.used)} of {human(reading.total)}")
            self.bar.setValue(int(1000 * reading.used / reading.total))
        else:
            self.label.setText(f"{reading.label}: {human(reading.used)}")
            self.bar.setValue(0)
        self.last = reading

    def _wait(self) -> None:
        self.label.setText(WAITING)
        self.bar.setValue(0)

    def start_run(self) -> None:
        self.clear_peaks()

    def clear_peaks(self) -> None:
        self._peaks = []
        self.peaks.setText("")
        self.peaks.setToolTip("")

    def add_finished(self, ev) -> None:
        """A finished stage's peak (a core.events.StageFinished); a reused stage ran nothing,
        so it has no peak to show (it said "0 B")."""
        if ev.reused:
            self._add(f"{ev.label}: reused (stored output)")
        else:
            self.add_peak(ev.label, ev.peak_memory, ev.memory_kind)

    def add_peak(self, label: str, peak: int, kind: str) -> None:
        self._add(f"{label}: {human(peak)} {kind}")

    def _add(self, text: str) -> None:
        self._peaks.append(text)
        self.peaks.setText("Peak per stage — " + "; ".join(self._peaks))
        self.peaks.setToolTip(self.peaks.text())  # a long chain is clipped to the two lines
