"""How fast the window appears, against a bare PySide6 window, each in a fresh process.

    python -m tests.benchmarks.bench_startup [--runs 5]

Prints the medians of: a bare QMainWindow shown (the floor any PySide6 app pays), the
Handoff window shown with its default project (issue 3's budget is about 1.5 s), the ratio
of the two, and how long after that the engine thread reports torch and diffusers ready
(which the window does not wait for)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: prints one JSON line. Also checks who imports torch.
HANDOFF_SCRIPT = r"""
import json, sys, threading, time
main = threading.get_ident()
torch_on_main = []
def hook(event, args):
    # Who imports torch: it must be the engine thread, never the GUI thread.
    if event == "import" and args[0] in ("torch", "diffusers") and threading.get_ident() == main:
        torch_on_main.append(args[0])
sys.addaudithook(hook)
t0 = time.perf_counter()
from gui.app import create_window
app, window = create_window([])
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
app.processEvents()  # the first paint
shown = time.perf_counter() - t0
status = window.statusBar().currentMessage()
title = window.windowTitle()
# Now let the engine thread import torch and check the window hears about it.
from PySide6.QtCore import QTimer
ready = []
window.runner.torch_ready.connect(lambda text: (ready.append(time.perf_counter() - t0), app.quit()))
QTimer.singleShot(60000, app.quit)
app.exec()
status_ready = window.statusBar().currentMessage()  # what it runs on (core.devices.runtime_summary)
window.close()
print(json.dumps({"shown": shown, "torch_on_main": torch_on_main, "heavy": heavy, "status": status, "title": title,
                  "ready": ready, "torch_status": window.torch_status.text(), "status_ready": status_ready}))
"""

BARE_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication([])
w = QMainWindow(); w.resize(1280, 820); w.show()
app.processEvents()
print(json.dumps({"shown": time.perf_counter() - t0}))
"""


def measure(script: str, home: Path) -> dict:
    env = dict(os.environ, HANDOFF_HOME=str(home), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
    measure(HANDOFF_SCRIPT, home)  # warm the disk cache for both
    bare, ours, ready = [], [], []
    for _ in range(args.runs):
        bare.append(measure(BARE_SCRIPT, home)["shown"])
        r = measure(HANDOFF_SCRIPT, home)
        ours.append(r["shown"])
        ready.extend(r["ready"])
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"median of {args.runs} fresh processes")
    print(f"bare PySide6 window shown  {b:6.2f} s")
    print(f"Handoff window shown       {o:6.2f} s   ratio {o / b:.2f}   budget 1.5 s")
    print(f"torch + diffusers ready    {statistics.median(ready):6.2f} s after start (the window does not wait)")


if __name__ == "__main__":
    main()
