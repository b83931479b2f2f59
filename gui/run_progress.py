"""The words on the stage progress bar while a run goes: the step, the speed and the time
left, measured from the steps the engine reports (Qt-free arithmetic, shown by the window)."""
from __future__ import annotations

import time
from typing import Callable


class StepRate:
    """it/s and time left for the stage running now. The first step is left out of the
    rate: it carries the pipeline's warm-up (encoding the prompt, the first allocation)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.label = ""
        self._first: tuple[int, float] | None = None

    def start(self, label: str) -> None:
        self.label = label
        self._first = None

    def reset(self) -> None:
        """No stage running (a run cancelled or failed): the next step line starts afresh
        rather than measuring from the old stage's first step."""
        self.start("")

    def idle_text(self) -> str:
        """The stage bar's words when nothing runs."""
        return "stage: —"

    def rate(self, step: int) -> float | None:
        now = self.clock()
        if self._first is None or step <= self._first[0]:
            self._first = (step, now)
            return None
        first_step, first_time = self._first
        elapsed = now - first_time
        return (step - first_step) / elapsed if elapsed > 0 else None

    def text(self, step: int, total: int) -> str:
        """e.g. "refiner: step 12/30 · 3.4 it/s · 5 s left"."""
        rate = self.rate(step)
        parts = [f"{self.label}: step {step}/{total}"]
        if rate:
            parts.append(f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it")
            parts.append(f"{format_seconds((total - step) / rate)} left")
        return " · ".join(parts)


def reset_bars(stage_bar, job_bar, rate: StepRate) -> None:
    """Empty the stage and job bars (QProgressBar-like) and the step rate: after a cancel or
    a failure they kept "step 99/300 · 26 s left" and "job: 31%"."""
    rate.reset()
    stage_bar.setRange(0, 1)
    stage_bar.setValue(0)
    stage_bar.setFormat(rate.idle_text())
    job_bar.setRange(0, 1000)
    job_bar.setValue(0)
    job_bar.setFormat("job: %p%")


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
