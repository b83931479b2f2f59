"""The window appears quickly, and the GUI thread does not import torch to show it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
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
window.runner.torch_ready.connect(lambda text: (ready.append(text), app.quit()))
QTimer.singleShot(60000, app.quit)
app.exec()
window.close()
print(json.dumps({"shown": shown, "torch_on_main": torch_on_main, "heavy": heavy, "status": status, "title": title, "ready": ready,
                  "torch_status": window.torch_status.text()}))
"""


def test_window_shows_fast_without_torch(tmp_path):
    env = dict(os.environ, HANDOFF_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], "the GUI thread imported heavy libraries before showing the window"
    assert result["torch_on_main"] == [], "the GUI thread imported torch"
    assert result["shown"] < 1.5, f"window took {result['shown']:.2f} s to show"
    assert result["title"] == "Handoff — untitled"
    assert result["status"] == "Loading torch…"
    assert result["ready"] and result["torch_status"].startswith("torch ")
