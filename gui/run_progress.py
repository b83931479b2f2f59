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


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
