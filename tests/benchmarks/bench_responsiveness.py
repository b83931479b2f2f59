"""How responsive the window stays while a job runs: the longest gap between ticks
of a 5 ms GUI timer, over several runs of the default two-stage demo job.

    QT_QPA_PLATFORM=offscreen python -m tests.benchmarks.bench_responsiveness [--runs 5]

The budget is 50 ms (issue 3). Baseline: the same timer with no job running.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-bench-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer

    from gui.app import create_window

    app, window = create_window([])  # shown, with torch loading in the background as at start-up
    gaps: list[float] = []
    last = [None]

    def tick() -> None:
        now = time.perf_counter()
        if last[0] is not None:
            gaps.append(now - last[0])
        last[0] = now

    timer = QTimer(interval=5)
    timer.timeout.connect(tick)

    def spin_until(done) -> None:
        loop = QEventLoop()
        check = QTimer(interval=20)
        check.timeout.connect(lambda: done() and loop.quit())
        check.start()
        loop.exec()
        check.stop()

    spin_until(lambda: window.runner.ready)
    timer.start()
    spin_until(lambda: len(gaps) > 200)
    timer.stop()
    idle = sorted(gaps)
    results = []
    ended: list = []
    window.jobEnded.connect(ended.append)
    for _ in range(args.runs):
        gaps.clear()
        last[0] = None
        ended.clear()
        timer.start()
        window.generate()
        spin_until(lambda: bool(ended))
        timer.stop()
        results.append(sorted(gaps))
    worst = [r[-1] * 1000 for r in results]
    p99 = [r[int(len(r) * 0.99)] * 1000 for r in results]
    print(f"idle:    worst gap {idle[-1] * 1000:6.1f} ms, p99 {idle[int(len(idle) * 0.99)] * 1000:5.1f} ms")
    print(f"running: worst gap {max(worst):6.1f} ms (median over runs {statistics.median(worst):.1f}), "
          f"p99 {statistics.median(p99):5.1f} ms; budget 50 ms; ratio worst/idle-worst {max(worst) / (idle[-1] * 1000):.1f}")
    window.runner.shutdown()


if __name__ == "__main__":
    main()
