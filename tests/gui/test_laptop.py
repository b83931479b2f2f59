"""Issue 13: a studio that fits a 1366×768 laptop, shows the run as it happens, and keeps
its state straight between projects, runs and sessions."""
from __future__ import annotations

from conftest import JOB_TIMEOUT_MS
from core.events import JobFinished

LAPTOP = (1366, 768 - 60)  # the available area under a panel, less the window's own title bar


def _fit_laptop(window, qtbot) -> None:
    window.resize(*LAPTOP)
    qtbot.wait(10)


def test_the_window_opens_within_the_available_area(window):
    area = window.screen().availableGeometry()
    assert window.frameGeometry().width() <= area.width() or window.minimumSizeHint().width() > area.width()
    assert window.frameGeometry().height() <= area.height()
    assert window.statusBar().geometry().bottom() <= window.height()


def test_at_1366x768_the_selected_stage_needs_no_scrollbar(window, qtbot):
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


def test_geometry_and_splitters_are_restored(qtbot, with_models):
    from gui.main_window import MainWindow
    from gui.settings import Settings

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    w.resize(w.minimumSizeHint().width(), 650)  # the offscreen screen is narrower than that
    w.splitters["main"].setSizes([330, 310, 400])
    qtbot.wait(10)
    sizes = w.splitters["main"].sizes()
    w.set_modified(False)
    w.close()
    saved = Settings.load()
    assert saved.window_geometry and saved.splitters["main"] == sizes
    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    qtbot.wait(10)
    assert (again.width(), again.height()) == (w.width(), 650)
    assert again.splitters["main"].sizes() == sizes
    again.set_modified(False)
    again.close()


def test_nothing_moves_when_a_run_starts(window, qtbot, fast):
    fast(window)
    _fit_laptop(window, qtbot)
    before = (window.generate_button.geometry(), window.cancel_button.geometry())
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        assert window.generate()
        qtbot.wait(20)
        during = (window.generate_button.geometry(), window.cancel_button.geometry())
    assert isinstance(blocker.args[0], JobFinished)
    assert during == before
    assert (window.generate_button.geometry(), window.cancel_button.geometry()) == before


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
    window.compare.show_live = lambda image: (live.append(image), real(image))
    # Every step may have one: the demo's steps take milliseconds.
    monkeypatch.setattr(stage_run, "PREVIEW_INTERVAL_S", 0.0)
    monkeypatch.setattr(stage_run, "PREVIEW_BUDGET", 1.0)
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        window.generate()
    assert isinstance(blocker.args[0], JobFinished)
    previews = [e for e in seen if isinstance(e, StagePreview)]
    assert previews and all(e.image.size == (window.project.width, window.project.height) for e in previews)
    assert live and not live[-1].isNull()
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
