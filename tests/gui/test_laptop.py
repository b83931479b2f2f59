"""Issue 13: a studio that fits a 1366×768 laptop, shows the run as it happens, and keeps
its state straight between projects, runs and sessions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import JOB_TIMEOUT_MS
from core.events import JobCancelled, JobFinished, Step
from layout_check import clipped, controls, sideways_scrollbars

# The available area of a 1366×768 screen under a panel (~28 px), less the window's frame:
# a title bar (~32 px) and a border each side (4 px, as most window managers draw it).
LAPTOP = (1366 - 8, 768 - 60)


def _fit_laptop(window, qtbot) -> None:
    window.resize(*LAPTOP)
    qtbot.wait(10)


def test_the_window_opens_within_the_available_area(window):
    area = window.screen().availableGeometry()
    assert window.frameGeometry().width() <= area.width() or window.minimumSizeHint().width() > area.width()
    assert window.frameGeometry().height() <= area.height()
    assert window.statusBar().geometry().bottom() <= window.height()


def test_at_1366x768_the_selected_stage_needs_no_scrollbar(window, qtbot):
    assert window.minimumSizeHint().width() <= 1366 and window.minimumSizeHint().height() <= LAPTOP[1]
    _fit_laptop(window, qtbot)
    for row in range(len(window.project.stages)):
        window.stage_list.list.setCurrentRow(row)
        qtbot.wait(5)
        assert window.left_scroll.verticalScrollBar().maximum() == 0
        assert window.editor_scroll.verticalScrollBar().maximum() == 0
    ed = window.stage_list.editor
    # The demo's refiner is an ensemble: its switch point shows; a pixel refine shows its strength.
    assert ed.switch_at.isVisibleTo(window)
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    assert ed.strength.isVisibleTo(window) and ed.strength.isVisible()
    assert window.editor_scroll.verticalScrollBar().maximum() == 0
    # Folded sections say what they hold.
    assert "strength 0." in ed.handoff_section.header.text()
    ed.prompts_section.set_expanded(True)
    assert ed.prompts.isVisibleTo(window)


def _laptop_session(home: Path, out: Path, *rect: int) -> dict:
    """tests/gui/laptop_screen.py in a process of its own: a 1366×768 screen whose windows
    have frames, which this process's platform (chosen once, frameless) cannot give."""
    from laptop_screen import platform

    env = dict(os.environ, HANDOFF_HOME=str(home), QT_QPA_PLATFORM=platform())
    script = Path(__file__).with_name("laptop_screen.py")
    done = subprocess.run([sys.executable, str(script), str(out), *map(str, rect)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_geometry_and_splitters_are_restored_exactly(handoff_home, with_models, tmp_path):
    """The window reopens where it was closed, at the size it had, not one title bar lower
    nor a few pixels wider each session; the frame is the window manager's, not saved."""
    fresh = _laptop_session(handoff_home, tmp_path / "fresh.json")
    # The size it was given, not the wider minimum its columns learn once shown.
    assert fresh["geometry"][2] == 1280
    x, y, w, h = fresh["frame"]
    assert x >= 0 and y >= 0 and x + w <= 1366 and y + h <= 768
    assert fresh["minimum"][0] <= 1366 - 8, "the window cannot be as narrow as a laptop's screen"
    # Left at its narrowest: it reopens that narrow (a minimum learnt late once widened it).
    narrow = fresh["minimum"][0] + 5
    first = _laptop_session(handoff_home, tmp_path / "first.json", 20, 60, narrow, 650)
    assert first["geometry"] == [20, 60, narrow, 650] and first["frame"] != first["geometry"]
    again = _laptop_session(handoff_home, tmp_path / "again.json")
    assert again["geometry"] == first["geometry"] and again["frame"] == first["frame"]
    assert again["splitters"] == first["splitters"]
    third = _laptop_session(handoff_home, tmp_path / "third.json")
    assert third["geometry"] == first["geometry"]


def test_a_geometry_from_a_bigger_screen_is_fitted_to_this_one(handoff_home, with_models, tmp_path):
    from gui.settings import Settings

    settings = Settings.load()
    settings.window_geometry = "2400,100,1800,1000"  # the right half of a desk's second monitor
    settings.save()
    shown = _laptop_session(handoff_home, tmp_path / "shown.json")
    x, y, w, h = shown["frame"]
    assert x >= 0 and y >= 0 and x + w <= 1366 and y + h <= 768


def _open_everything(window, qtbot) -> None:
    """Every section and panel a user can open at once: the stage editor's four sections
    with ControlNet on, the run settings, two jobs waiting in the queue."""
    ed = window.stage_list.editor
    for section in ed.sections:
        section.set_expanded(True)
    window.run_section.set_expanded(True)
    ed.adapters.use_controlnet.setChecked(True)
    queue = window.tuning.queue
    prompt = window.project.prompt
    window.project.prompt = "a lighthouse on a cliff at dusk, waves breaking below, gulls, oil painting"
    queue.add(window.project, None)  # long enough to need the panel's whole width
    window.project.prompt = prompt
    queue.add(window.project, 1)
    window.tuning.queue_panel.refresh()
    window.tuning.show_queue()
    window.tuning.show_sweep()
    qtbot.wait(20)


def _nothing_cut_off(window) -> list[str]:
    problems = clipped(window) + sideways_scrollbars(window, strips=(window.compare.strip,))
    t = window.timings
    if t.isVisible() and sum(t.columnWidth(c) for c in range(t.columnCount())) > t.viewport().width():
        problems.append("the timing table's columns are wider than the table")
    if window.width() > LAPTOP[0]:
        problems.append(f"the window grew to {window.width()} px")
    return problems


def test_every_panel_fits_a_laptop_with_everything_open(window, qtbot, fast):
    """At 1366×768 with Adapters, the sweep and a queue open and a run's timings listed, no
    control is cut off or outside the window and no column scrolls sideways (the rule:
    tests/gui/layout_check.py). Each stage is selected and each tab under the viewer shown."""
    from PySide6.QtGui import QImage

    fast(window)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS):
        window.generate()
    assert window.minimumSizeHint().width() <= LAPTOP[0] and window.minimumSizeHint().height() <= LAPTOP[1]
    _fit_laptop(window, qtbot)
    generate = (window.generate_button.mapTo(window, window.generate_button.rect().topLeft()),
                window.generate_button.size())
    dividers = window.splitters["main"].sizes()
    _open_everything(window, qtbot)
    # Sweep and queue took the viewer column's room: Generate stays where it was, and
    # opening Adapters did not widen the stage editor's column.
    assert (window.generate_button.mapTo(window, window.generate_button.rect().topLeft()),
            window.generate_button.size()) == generate
    assert window.splitters["main"].sizes() == dividers
    window.compare.show_live(QImage(64, 64, QImage.Format_RGB32), "refiner, step 123")
    ed = window.stage_list.editor
    seen = set()
    for row in range(len(window.project.stages)):
        window.stage_list.list.setCurrentRow(row)
        ed.adapters.use_controlnet.setChecked(True)
        qtbot.wait(10)
        assert ed.adapters.library_loras.isVisible() and ed.adapters.cn_box.isVisible()
        for tab in range(window.tabs.count()):
            window.tabs.setCurrentIndex(tab)
            qtbot.wait(10)
            assert _nothing_cut_off(window) == [], (row, window.tabs.tabText(tab))
            seen |= {id(w) for w in controls(window)}
    t = window.tuning
    checked = (t.sweep_panel.x.values, t.sweep_panel.pick.scorer, t.sweep_panel.pick.max_drift, t.sweep_panel.run,
               t.queue_panel.remove, t.queue_panel.list, window.timings,
               ed.models_button, ed.adapters.remove_lora_button, ed.adapters.ip_model, window.generate_button)
    assert all(id(w) in seen for w in checked), [w for w in checked if id(w) not in seen]
    assert len(seen) > 60  # the check saw the whole window, not a few widgets
    assert window.width() == LAPTOP[0]


def test_a_wide_sweep_grid_shrinks_to_the_tab_and_its_cells_still_open(window, qtbot, tmp_path):
    """A 6 × 6 sweep at 1366×768: the grid's cells are drawn smaller so the grid takes the
    Sweep tab's width (no sideways scroll bar), and a double-click opens the cell under it."""
    from PIL import Image
    from PySide6.QtCore import QPoint, QPointF, Qt

    from core.sweep import cells, finish, grid_layout, parse_axis

    _fit_laptop(window, qtbot)
    p = window.project
    x = parse_axis("2.switch_at=0.5,0.6,0.7,0.8,0.9,1.0", p)
    y = parse_axis("seed=1,2,3,4,5,6", p)
    todo = cells(p, x, y)
    for cell in todo:  # what each cell's run leaves: its final image (here a flat colour, not a run)
        cell.image = Image.new("RGB", (64, 64), (40 * cell.x, 40 * cell.y, 128))
    result = finish(todo, x, y, tmp_path, 0.0)
    t = window.tuning
    t.show_sweep()
    t.sweep_panel.show_result(result)
    qtbot.wait(20)
    grid = t.sweep_panel.grid
    left, top, cw, ch, cap = grid_layout(result.cells, x, y)
    assert left + 6 * cw > grid.parentWidget().width(), "the grid as written is wider than the tab: the test shows nothing"
    assert _nothing_cut_off(window) == []
    shown = grid.shown_scale()
    assert shown < 1 and cw * shown >= 48, "cells shrink, but not past a readable size"
    assert grid.painted_width() <= grid.width()
    # The cell at column 5, row 4 (0-based 4, 3), where it is drawn now.
    at = QPoint(round((left + 4.5 * cw) * shown), round((top + 3 * (ch + cap) + ch / 2) * shown))
    with qtbot.waitSignal(t.sweep_panel.openCell) as opened:
        qtbot.mouseDClick(grid, Qt.LeftButton, pos=at)
    assert opened.args[2] == "sweep 2.switch_at=0.9, seed=4"
    # Its labels drawn small, the cell under the mouse names itself in the tooltip.
    assert grid.describe(grid.to_grid(QPointF(at))).startswith("2.switch_at=0.9, seed=4")


def _geometry(window) -> dict:
    """Where what the user watches and clicks during a run is: Generate and Cancel, the
    columns' dividers, the viewer's tools, the window's size."""
    c = window.compare

    def at(w):
        return (w.mapTo(window, w.rect().topLeft()).toTuple(), w.size().toTuple())

    return {"generate": at(window.generate_button), "cancel": at(window.cancel_button),
            "dividers": [window.splitters["main"].sizes(), window.splitters["viewer"].sizes()],
            "window": window.size().toTuple(),
            "viewer": [at(w) for w in (c.left_pick, c.right_pick, c.mode, c.fit_button, c.save_button, c.live_label)]}


def test_nothing_moves_during_a_run_or_a_cancel(window, qtbot, fast, monkeypatch):
    """Geometry before a run, at a step with the live preview's label showing, after it,
    and the same for a run cancelled part-way: all equal."""
    from PySide6.QtWidgets import QApplication

    import core.stage_run as stage_run

    monkeypatch.setattr(stage_run, "PREVIEW_INTERVAL_S", 0.0)  # a preview at every step
    monkeypatch.setattr(stage_run, "PREVIEW_BUDGET", 1.0)
    fast(window, steps=6)
    _fit_laptop(window, qtbot)
    # The user's narrowest layout: the side columns at their minimum (the live label once
    # pushed the viewer's divider 36 px and the window past a 1366-pixel screen).
    main = window.splitters["main"]
    mins = [main.widget(i).minimumSizeHint().width() for i in range(2)]
    main.setSizes(mins + [sum(main.sizes()) - sum(mins)])
    qtbot.wait(10)
    before = _geometry(window)
    during: list[dict] = []
    cancel_at_step = [False]

    def watch(ev) -> None:
        if isinstance(ev, Step) and window.compare.live_label.isVisible() and len(during) < 3:
            QApplication.processEvents()  # the layout follows what the step changed
            during.append(_geometry(window))
            if cancel_at_step[0]:
                window.cancel()

    window.runner.event.connect(watch)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        assert window.generate()
    assert isinstance(blocker.args[0], JobFinished)
    qtbot.wait(20)
    assert during, "no step came with the live preview showing"
    assert all(d == before for d in during)
    assert _geometry(window) == before
    during.clear()
    cancel_at_step[0] = True
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        assert window.generate()
    assert isinstance(blocker.args[0], JobCancelled)
    qtbot.wait(20)
    assert during and all(d == before for d in during)
    assert _geometry(window) == before


def test_a_long_status_message_ends_in_an_ellipsis_and_is_whole_in_its_tooltip(window, qtbot):
    from PySide6.QtWidgets import QStatusBar

    _fit_laptop(window, qtbot)
    bar = window.statusBar()
    advice = ("Runs on the CPU (torch 2.5.1+cpu, a CPU-only build): real models will be slow; for an NVIDIA GPU "
              "install a CUDA build: pip install torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124 "
              "(the cuXXX of your driver: pytorch.org/get-started)")
    bar.showMessage(advice)
    shown = QStatusBar.currentMessage(bar)  # what is drawn
    assert shown.endswith("…") and bar.fontMetrics().horizontalAdvance(shown) <= bar.message_room()
    assert bar.currentMessage() == advice and bar.toolTip() == advice
    bar.showMessage("Done in 1.2 s", 50)
    assert QStatusBar.currentMessage(bar) == "Done in 1.2 s" and bar.toolTip() == ""
    qtbot.waitUntil(lambda: bar.currentMessage() == "", timeout=5000)  # a timed message still times out


def test_a_run_shows_live_previews_and_its_speed(window, qtbot, fast, monkeypatch):
    from core.events import StagePreview, Step
    import core.stage_run as stage_run

    fast(window, steps=12)
    seen: list = []
    formats: list[str] = []
    live: list = []
    window.runner.event.connect(lambda ev: seen.append(ev))
    window.runner.event.connect(lambda ev: formats.append(window.stage_progress.format()) if isinstance(ev, Step) else None)
    real = window.compare.show_live
    window.compare.show_live = lambda image, caption="": (live.append((image, caption)), real(image, caption))
    # Every step may have one: the demo's steps take milliseconds.
    monkeypatch.setattr(stage_run, "PREVIEW_INTERVAL_S", 0.0)
    monkeypatch.setattr(stage_run, "PREVIEW_BUDGET", 1.0)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        window.generate()
    assert isinstance(blocker.args[0], JobFinished)
    previews = [e for e in seen if isinstance(e, StagePreview)]
    assert previews and all(e.image.size == (window.project.width, window.project.height) for e in previews)
    assert live and not live[-1][0].isNull() and "step" in live[-1][1]
    assert window.compare.live_label.isVisible() is False  # the stage's own image replaced it
    assert any("it/s" in f or "s/it" in f for f in formats) and any("left" in f for f in formats)
    assert any(f.startswith("base: step ") for f in formats)


def test_preview_throttle_keeps_to_its_interval_and_budget():
    from core.stage_run import PreviewThrottle

    now = [0.0]
    t = PreviewThrottle(interval=0.25, budget=0.05, clock=lambda: now[0])
    now[0] = 0.1
    assert not t.due()  # too soon
    now[0] = 1.0
    assert t.due()
    t.took(0.9)  # that preview cost 0.1 s: 10% of the stage so far
    now[0] = 1.3
    assert not t.due()  # over budget until the stage has run 2 s
    now[0] = 2.1
    assert t.due()


def test_step_rate_text():
    from gui.run_progress import StepRate

    now = [0.0]
    r = StepRate(clock=lambda: now[0])
    r.start("refiner")
    assert r.text(1, 30) == "refiner: step 1/30"
    now[0] = 2.0
    assert r.text(11, 30) == "refiner: step 11/30 · 5.0 it/s · 4 s left"


def _png(path, size, colour="red"):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return path


def test_switching_to_a_preset_resets_progress_and_peaks(window, qtbot, fast):
    fast(window)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS):
        window.generate()
    assert window.gauge.peaks.text() and window.overall_progress.value() == 1000
    window.set_modified(False)
    assert window.new_from_preset(next(iter(window.preset_actions)))
    assert window.overall_progress.value() == 0 and window.stage_progress.value() == 0
    assert window.gauge.peaks.text() == "" and "stage" in window.stage_progress.format()
    assert "base" not in window.stage_progress.format()


def test_the_viewer_fits_an_image_of_a_new_size(window, tmp_path):
    from PySide6.QtGui import QImage

    canvas = window.compare.canvas
    window.compare.show_single(QImage(str(_png(tmp_path / "a.png", (32, 32)))))
    canvas.set_zoom(6.06)
    window.compare.show_single(QImage(str(_png(tmp_path / "b.png", (200, 150)))))
    assert canvas.zoom is None  # fitted, not left at 606% and cropped
    canvas.set_zoom(2.0)
    window.compare.show_single(QImage(str(_png(tmp_path / "c.png", (200, 150), "blue"))))
    assert canvas.zoom == 2.0  # the same size keeps the zoom (comparing two results closely)


def test_before_and_after_can_come_from_two_runs(window, qtbot, fast):
    from gui.images import qimage_of

    fast(window)
    for _ in range(2):
        with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS):
            window.generate()
    cv = window.compare
    names = [cv.left_pick.itemText(i) for i in range(cv.left_pick.count())]
    assert "refiner output" in names and "run 1 · refiner output" in names
    cv.compare("run 1 · refiner output", "refiner output")
    assert cv.canvas.left is qimage_of(window.runs[0].stages[-1].image)
    assert cv.canvas.right is qimage_of(window.runs[1].stages[-1].image)


def test_a_reopened_init_image_keeps_its_name(window, tmp_path, answers):
    window.set_init_image(_png(tmp_path / "holiday photo.png", (64, 64)))
    answers.save_path = tmp_path / "p.handoff"
    assert window.save()
    window.set_modified(False)
    assert window.open_path(tmp_path / "p.handoff") == "project"
    assert "holiday_photo.png" in window.init_label.text()


def test_a_dropped_recipe_asks_before_replacing_unsaved_work(window, tmp_path, answers):
    from PIL import Image

    from core.defaults import default_project
    from core.metadata import save_png

    recipe = default_project()
    recipe.prompt = "a recipe prompt"
    png = save_png(Image.new("RGB", (64, 64), "yellow"), tmp_path / "made.png", recipe, 1)
    window.prompt_editor.prompt.setPlainText("my unsaved prompt")
    answers.save_changes = "cancel"
    assert window.open_path(png) == "cancelled"
    assert answers.asked == ["Restore recipe?", "save changes"]
    assert window.project.prompt == "my unsaved prompt"
    answers.save_changes = "discard"
    assert window.open_path(png) == "recipe" and window.project.prompt == "a recipe prompt"


def test_file_dialogs_start_in_the_last_folder(window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from core import paths

    assert not window._dialog_dir().startswith(str(paths.home()))
    picked = _png(tmp_path / "pic.png", (64, 64))
    starts = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda parent, title, start, filt: (starts.append(start), (str(picked), ""))[1]))
    window.open_image_dialog()
    window.open_image_dialog()
    assert starts[1] == str(tmp_path)


def test_undo_and_redo_every_edit(window, qtbot):
    from PySide6.QtCore import Qt

    stack = window.history.stack
    ed = window.stage_list.editor
    window.stage_list.list.setCurrentRow(1)
    ed.steps.setValue(9)
    assert window.project.stages[1].steps == 9
    window.prompt_editor.prompt.setPlainText("one")
    window.prompt_editor.prompt.setPlainText("one two")  # rapid edits of one field: one step
    window.stage_list.add_stage()
    assert len(window.project.stages) == 3
    window.setFocus()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert len(window.project.stages) == 2
    window.undo_action.trigger()
    assert window.project.prompt != "one" and window.project.prompt != "one two"
    window.undo_action.trigger()
    assert window.project.stages[1].steps != 9 and window.stage_list.editor.steps.value() != 9
    assert not stack.canUndo()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.project.stages[1].steps == 9
    window.redo_action.trigger()
    window.redo_action.trigger()
    assert window.project.prompt == "one two" and len(window.project.stages) == 3
    # Another project starts with nothing to undo.
    window.set_modified(False)
    window.new_project()
    assert not stack.canUndo()


def test_an_init_image_far_from_the_native_area_offers_a_snap(window, tmp_path):
    from core.model_info import info_for

    info = info_for(window.project.stages[0].model)
    small = info.native // 4
    window.set_init_image(_png(tmp_path / "tiny.png", (small * 4 // 3, small)))
    assert window.init_size_note.isVisibleTo(window) and window.snap_init.isVisibleTo(window)
    window.snap_init.click()
    w, h = window.project.width, window.project.height
    assert w % info.multiple == 0 and h % info.multiple == 0
    assert 0.5 <= w * h / info.native ** 2 <= 2 and w > h
    assert not window.init_size_note.isVisibleTo(window)


def test_keys_generate_cancel_and_save(window, qtbot):
    keys = {a.shortcut().toString() for a in window.findChildren(type(window.generate_action))}
    assert {"Ctrl+Return", "Esc", "Ctrl+Z", "Ctrl+Shift+Z", "Ctrl+S"} <= keys
    assert "Ctrl+Enter" in [s.toString() for s in window.generate_action.shortcuts()]


def test_the_library_lists_the_builtin_models_and_chooses_for_the_stage(window, qtbot):
    from gui.models_dialog import OFFLINE, REF, SIZE

    dialog = window.open_models()
    t = dialog.table
    rows = {t.item(r, REF).text(): r for r in range(t.rowCount())}
    for ref in ("builtin:demo-base", "builtin:demo-refiner"):
        assert t.item(rows[ref], OFFLINE).text() == "yes" and t.item(rows[ref], SIZE).text() == "none needed"
    # A message about one row goes when another is selected.
    dialog.say("Something went wrong with that one")
    window.stage_list.list.setCurrentRow(1)
    dialog.select("builtin:demo-base")
    assert dialog.status.text() == ""
    assert dialog.use_button.isEnabled() and not dialog.remove_button.isEnabled()
    assert dialog.use_selected()
    assert window.project.stages[1].model == "builtin:demo-base"
    assert window.stage_list.editor.model.currentText() == "builtin:demo-base"
    dialog.table.cellDoubleClicked.emit(rows["builtin:demo-refiner"], 0)
    assert window.project.stages[1].model == "builtin:demo-refiner"
    assert window.history.stack.canUndo()  # choosing from the library is an edit like any other


def test_download_sizes_in_the_library_and_the_presets_menu(window, qtbot, monkeypatch):
    from core import model_library as ml
    from core.presets import PRESETS
    from gui.models_dialog import REF, SIZE, SIZE_UNKNOWN_OFFLINE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog = window.open_models()
    t = dialog.table
    hub = [r for r in range(t.rowCount()) if dialog.entries[r].ref_kind == "hub"]
    assert hub and all(t.item(r, SIZE).text() == SIZE_UNKNOWN_OFFLINE for r in hub)
    marked = [a.text() for a in window.preset_actions.values()]
    assert any("needs a download" in m for m in marked)
    assert window.preset_actions["demo"].text() == PRESETS["demo"].title  # the builtins need nothing
    # Online: the Hub's answer arrives on the GUI thread, into the table and the menu.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(ml, "_sizes", {})

    def fake_size(repo_id):
        ml._sizes[repo_id] = 5 * 1024 ** 3
        return ml._sizes[repo_id]

    monkeypatch.setattr(ml, "hub_download_size", fake_size)
    dialog.sizes._asked.clear()
    with qtbot.waitSignal(dialog.sizesChanged, timeout=5000):
        dialog.refresh()
    qtbot.waitUntil(lambda: all(t.item(r, SIZE).text() == "5.0 GiB" for r in hub), timeout=5000)
    window.presets_menu.aboutToShow.emit()
    assert any("needs a download (" in a.text() and "GiB)" in a.text() for a in window.preset_actions.values())


def test_download_size_counts_what_a_pipeline_download_fetches():
    from core.model_library import download_files

    files = {"model_index.json": 1, "sd_xl_base_1.0.safetensors": 7000, "unet/config.json": 1,
             "unet/diffusion_pytorch_model.safetensors": 100, "unet/diffusion_pytorch_model.fp16.safetensors": 50,
             "unet/diffusion_pytorch_model.bin": 100, "vae/diffusion_pytorch_model.fp16.safetensors": 10}
    assert set(download_files(files)) == {"model_index.json", "unet/config.json",
                                          "unet/diffusion_pytorch_model.safetensors",
                                          "vae/diffusion_pytorch_model.fp16.safetensors"}


def test_sigterm_quits_cleanly_and_is_no_crash(qtbot, with_models, monkeypatch):
    import os
    import signal

    from core import document
    from gui.app import create_window, install_quit_signals

    app, w = create_window([])
    qtbot.addWidget(w)
    assert app.applicationName() == "Handoff" and os.environ.get("RESOURCE_NAME") == "Handoff"
    assert document._lock_file().exists()
    installed = install_quit_signals(app, w)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    finally:
        installed.restore()
    assert not document._lock_file().exists()
    assert not document.begin_session()  # the next start offers no recovery
    document.end_session()


def test_sigterm_with_unsaved_work_keeps_it_for_the_next_start(window, qtbot):
    from core import document

    document.begin_session()
    window.prompt_editor.prompt.setPlainText("not saved anywhere")
    window.quit_for_signal()
    assert not window.isVisible()
    assert document.begin_session()  # offered back: it was never saved
    document.end_session()
