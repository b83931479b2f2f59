"""The window appears without torch: the GUI thread never imports it, the status bar says
it is loading, and the engine thread reports it ready. How fast the window appears is
measured by tests/benchmarks/bench_startup.py, not asserted here."""
from __future__ import annotations

from pathlib import Path

from tests.benchmarks.bench_startup import HANDOFF_SCRIPT, measure


def test_window_shows_without_torch_and_hears_when_it_is_ready(tmp_path: Path):
    result = measure(HANDOFF_SCRIPT, tmp_path)
    assert result["heavy"] == [], "the GUI thread imported heavy libraries before showing the window"
    assert result["torch_on_main"] == [], "the GUI thread imported torch"
    assert result["title"] == "Handoff — untitled"
    assert result["status"] == "Loading torch…"
    assert result["ready"] and result["torch_status"].startswith("torch ")
    assert result["status_ready"].startswith("Runs on ")  # the device, from core.devices.runtime_summary
