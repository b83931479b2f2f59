"""Issue 21 (a 1366×768 laptop with the demo): the viewer's zoom label states the scale the
image is drawn at, a reused stage says so instead of "0.00 s" and "0 B", the memory gauge
waits for torch quietly, the bars reset after a cancel, a sweep cell opens under its own
name (from the list or the grid), and a running job is named by prompt, chain and seed."""
from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMainWindow, QProgressBar

from core import events as ev
from core.document import Run, StageResult, history_to_run, run_to_history
from core.models import ModelCache
from core.project import Project, Stage
from core.stage_store import StageStore
from core.sweep import cell_at, grid_layout, parse_axis, run_sweep
from gui.compare_view import SIDE, CompareView
from gui.job_queue import QueuePanel
from gui.run_progress import StepRate, reset_bars
from gui.sweep_panel import SweepPanel, params_for
from gui.timing_table import REUSED, TimingTable, describe_finish
from gui.vram_gauge import WAITING, VramGauge


def _label_percent(view: CompareView) -> float:
    return float(view.zoom_label.text().split()[-1].rstrip("%"))


def _drawn_percent(view: CompareView, width: int) -> float:
    view.canvas.grab()  # paints, as the screen would
    return 100 * view.canvas.painted.width() / width


def test_the_zoom_label_states_the_scale_the_image_is_drawn_at(qtbot):
    window = QMainWindow()
    view = CompareView()
    window.setCentralWidget(view)
    qtbot.addWidget(window)
    image = QImage(256, 256, QImage.Format_RGB32)
    image.fill(0xFF336699)
    view.canvas.set_images(None, image)  # before the window is shown: the canvas has no size yet
    window.resize(900, 600)
    window.show()
    qtbot.waitExposed(window)
    assert abs(_label_percent(view) - _drawn_percent(view, 256)) < 1, view.zoom_label.text()
    # The canvas grows while the viewer keeps its size (the run strip hidden): the fit changes.
    view.strip.hide()
    qtbot.waitUntil(lambda: view.canvas.height() > 500)
    assert abs(_label_percent(view) - _drawn_percent(view, 256)) < 1, view.zoom_label.text()
    view.mode.setCurrentText(SIDE)  # half the width each: the fit shrinks
    assert abs(_label_percent(view) - _drawn_percent(view, 256)) < 1, view.zoom_label.text()
    view.canvas.set_zoom(1.0)
    assert view.zoom_label.text() == "100%" and _drawn_percent(view, 256) == 100


def _stage(reused: bool, index: int = 0) -> ev.StageFinished:
    return ev.StageFinished(
        index=index, label="base", image=Image.new("RGB", (8, 8)), input_image=None, path=Path("/out/01-base.png"),
        load_seconds=0.0 if reused else 1.0, denoise_seconds=0.0 if reused else 2.0, decode_seconds=0.0,
        total_seconds=0.0 if reused else 3.25, peak_memory=0 if reused else 3 << 20,
        memory_kind="" if reused else "process RAM", steps_run=0 if reused else 4, handoff="generate", reused=reused)


def test_a_reused_stage_says_reused_not_zero_seconds_and_bytes(qtbot):
    reused, ran = _stage(True), _stage(False)
    assert describe_finish(reused) == f"base: {REUSED} → /out/01-base.png"
    assert "done in 3.25 s" in describe_finish(ran)
    gauge = VramGauge(interval_ms=60_000)
    qtbot.addWidget(gauge)
    gauge.add_finished(reused)
    gauge.add_finished(ran)
    assert "base: reused (stored output)" in gauge.peaks.text() and "0 B" not in gauge.peaks.text()
    assert "3.0 MiB process RAM" in gauge.peaks.text()
    # The timing table, for the run as it ended and as the history brings it back.
    run = Run(1, "2026-12-03T00:00:00", 0.0, stages=[StageResult.from_event(reused)])
    again = history_to_run(run_to_history(run), 1)
    assert again.stages[0].reused
    table = TimingTable()
    qtbot.addWidget(table)
    table.add_run(again.label, again.stages, again.seconds)
    peak = table.item(0, 8).text()
    assert peak == REUSED and "0 B" not in peak


def test_the_memory_gauge_waits_for_a_torch_being_imported(qtbot, monkeypatch):
    # What the interpreter holds while the worker thread is inside "import torch": a module
    # whose spec is marked initializing, with its attributes not yet set.
    spec = importlib.machinery.ModuleSpec("torch", None)
    half = types.ModuleType("torch")
    half.__spec__ = spec
    spec._initializing = True
    monkeypatch.setitem(sys.modules, "torch", half)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: the gauge would turn to torch
    gauge = VramGauge(interval_ms=60_000)
    qtbot.addWidget(gauge)
    assert gauge.label.text() == WAITING
    spec._initializing = False  # the import is over (here: a torch with no CUDA to read)
    half.cuda = types.SimpleNamespace(is_available=lambda: False)
    gauge.poll()
    assert gauge.label.text().startswith("process RAM"), gauge.label.text()


def test_cancel_resets_the_bars_and_the_step_rate(qtbot):
    now = [0.0]
    rate = StepRate(clock=lambda: now[0])
    stage_bar, job_bar = QProgressBar(), QProgressBar()
    qtbot.addWidget(stage_bar)
    qtbot.addWidget(job_bar)
    rate.start("refiner")
    for step in (1, 99):
        now[0] = step * 0.1
        stage_bar.setRange(0, 300)
        stage_bar.setValue(step)
        stage_bar.setFormat(rate.text(step, 300))
    job_bar.setRange(0, 1000)
    job_bar.setValue(310)
    assert "left" in stage_bar.format()
    reset_bars(stage_bar, job_bar, rate)  # what the window does on JobCancelled and JobFailed
    assert stage_bar.format() == "stage: —" and stage_bar.value() == 0 and job_bar.value() == 0
    assert rate.label == "" and rate.rate(100) is None, "the old stage's first step is forgotten"


def test_a_sweep_cell_opens_under_its_own_name_from_the_grid(qtbot, tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = Project(prompt="a red circle", width=32, height=32, seed=3,
                stages=[Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5)])
    panel = SweepPanel()
    qtbot.addWidget(panel)
    panel.set_project(p)
    offered = [panel.x.param.itemText(i) for i in range(panel.x.param.count())]
    assert "2.strength" in offered and "1.strength" not in offered and "1.switch_at" not in offered
    assert "2.switch_at" not in offered, "a pixel handoff has no switch point"
    wanted = panel.x.values.fontMetrics().horizontalAdvance("0.25, 0.5, 0.75, 1.0")
    panel.resize(120, 400)  # a dock squeezed narrow: the field had room for ",0.6"
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.x.values.width() >= wanted and panel.y.values.width() >= wanted
    x = parse_axis("2.strength=0.25,0.75", p)
    result = run_sweep(p, x, None, tmp_path / "sweep", models=ModelCache(), store=StageStore(tmp_path / "stages"))
    panel.show_result(result)
    panel.resize(700, 700)
    left, top, cw, ch, _ = grid_layout(result.cells, result.x, result.y)
    assert cell_at(result, left + cw + cw // 2, top + ch // 2) is result.cells[1]
    with qtbot.waitSignal(panel.openCell) as opened:
        qtbot.mouseDClick(panel.grid, Qt.LeftButton, pos=QPoint(left + cw + cw // 2, top + ch // 2))
    before, after, title = opened.args
    assert after is result.cells[1].image and before is result.cells[1].input_image
    assert title == "sweep 2.strength=0.75"
    # The viewer drops the run it highlighted and names the cell's images.
    view = CompareView()
    qtbot.addWidget(view)
    run = Run(1, "2026-12-03T00:00:00", 1.0, stages=[StageResult.from_event(_stage(False))])
    view.set_runs([run])
    assert view.strip.currentRow() == 0 and view.left_pick.count() > 0
    view.show_pair(before, after, (f"{title}: input", f"{title}: output"))
    assert view.strip.currentRow() == -1 and not view.strip.selectedItems() and view.run is None
    assert view.left_pick.currentText() == "sweep 2.strength=0.75: input"
    assert view.right_pick.currentText() == "sweep 2.strength=0.75: output"
    assert view.canvas.right is not None and view.canvas.right.width() == after.width


def test_the_sweep_panel_offers_an_auto_handoff_only_the_knob_it_runs_by(qtbot):
    from core import demo

    p = Project(prompt="a red circle", stages=[Stage(demo.BASE), Stage(demo.REFINER, handoff="auto"),
                                              Stage(demo.BASE, handoff="auto")])
    panel = SweepPanel()
    qtbot.addWidget(panel)
    panel.set_project(p)
    offered = [panel.x.param.itemText(i) for i in range(panel.x.param.count())]
    assert "2.switch_at" in offered and "2.strength" not in offered  # an ensemble into the refiner
    assert "3.strength" in offered and "3.switch_at" not in offered  # a refine into another base
    assert offered == params_for(p)


def test_the_running_job_is_named_by_prompt_chain_and_seed(qtbot, tmp_path):
    from core.job_queue import JobQueue

    panel = QueuePanel(JobQueue(tmp_path / "queue.json"))
    qtbot.addWidget(panel)
    p = Project(prompt="a lighthouse at dusk", width=32, height=32, seed=42,
                stages=[Stage("/m/sdxl-base"), Stage("/m/sdxl-refiner", handoff="latent")])
    panel.show_running(p)
    assert panel.status.text() == 'Running: "a lighthouse at dusk" · sdxl-base → sdxl-refiner · seed 42'
    assert panel.cancel.isEnabled()
    panel.queue.add(p, from_stage=1)
    panel.refresh()
    assert "seed 42 · from stage 2" in panel.list.item(0).text()
