"""The Sweep tab picks, as `sweep --pick` does (core.sweep_pick): the engine thread scores
the cells with the scorer named in "Pick with", the grid marks the best one within the
drift limit, and the window applies it to the open project as one undoable edit (the
saved file stays as it was). A bad scorer is refused before any cell runs."""
from __future__ import annotations

from conftest import JOB_TIMEOUT_MS
from core import demo
from core.sweep_pick import Pick
from gui.worker import PickProblem

VALUES = (0.5, 0.65)  # the demo refiner's switch point; the project's own is 0.8


def wait_ready(qtbot, window) -> None:
    if not window.runner.ready:
        with qtbot.waitSignal(window.runner.torch_ready, timeout=JOB_TIMEOUT_MS):
            pass


def sweep(window, qtbot, scorer: str, max_drift: float = 0.0) -> list:
    """Run a 2-cell sweep of 2.switch_at from the panel; every sweep_event it sent."""
    panel = window.tuning.sweep_panel
    window.tuning.show_sweep()
    panel.x.param.setCurrentText("2.switch_at")
    panel.x.values.setText(", ".join(map(str, VALUES)))
    panel.pick.scorer.setText(scorer)
    panel.pick.max_drift.setValue(max_drift)
    seen: list = []
    window.runner.sweep_event.connect(seen.append)
    try:
        with qtbot.waitSignal(window.runner.busy_changed, timeout=JOB_TIMEOUT_MS,
                              check_params_cb=lambda busy: not busy):
            assert panel.start()
        qtbot.waitUntil(lambda: any(isinstance(e, (Pick, PickProblem)) for e in seen), timeout=JOB_TIMEOUT_MS)
    finally:
        window.runner.sweep_event.disconnect(seen.append)
    return seen


def test_the_sweep_tab_applies_the_best_scored_cell_and_undo_restores(window, qtbot, fast, tmp_path):
    from PIL import Image

    from core.scorer_refs import score_files
    from core.sweep import PICK_COLOUR, grid_layout

    fast(window)
    wait_ready(qtbot, window)
    saved = window.document.save(tmp_path / "chain.handoff")
    on_disk = saved.read_bytes()
    before = window.project.stages[1].switch_at
    assert before not in VALUES

    seen = sweep(window, qtbot, demo.SCORER)
    panel = window.tuning.sweep_panel
    result, chosen = panel.result, panel.chosen
    assert isinstance(chosen, Pick) and chosen.cell is not None and chosen.why == ""
    # The pick is the best of the cells' images as core's scorer scores them, read back from disk.
    prompt = window.project.stages[1].effective_prompt(window.project.prompt)
    scores = score_files(demo.SCORER, prompt, [c.path for c in result.cells])
    best = max(range(len(VALUES)), key=scores.__getitem__)
    assert chosen.cell is result.cells[best]
    assert [round(c.score, 5) for c in result.cells] == [round(s, 5) for s in scores]

    # Applied to the open project, not to its file; the status says so.
    assert window.project.stages[1].switch_at == VALUES[best]
    assert panel.project is window.project, "the next sweep is of the project with the pick"
    assert window.modified and saved.read_bytes() == on_disk
    assert "applied to the project" in window.statusBar().currentMessage()
    assert f"2.switch_at={VALUES[best]:g}" in window.statusBar().currentMessage()

    # The grid (on disk and in the tab) frames the picked cell only; the list and the note say so.
    left, top, cw, ch, cap = grid_layout(result.cells, result.x, result.y)
    corner = [(left + c.x * cw + 1, top + c.y * (ch + cap) + 1) for c in result.cells]
    grid = Image.open(result.grid).convert("RGB")
    assert [grid.getpixel(p) == PICK_COLOUR for p in corner] == [i == best for i in range(len(VALUES))]
    shown = panel.grid.pixmap().toImage()
    assert [shown.pixelColor(*p).getRgb()[:3] == PICK_COLOUR for p in corner] == [i == best for i in range(len(VALUES))]
    assert panel.cells.item(best).text().startswith("✓ picked")
    assert not panel.cells.item(1 - best).text().startswith("✓")
    assert panel.pick_note.text().startswith(f"Picked 2.switch_at={VALUES[best]:g}")
    assert not any(isinstance(e, PickProblem) for e in seen)

    # One Ctrl+Z puts the old switch point back.
    window.undo_action.trigger()
    assert window.project.stages[1].switch_at == before
    window.redo_action.trigger()
    assert window.project.stages[1].switch_at == VALUES[best]


def test_a_drift_limit_no_cell_meets_picks_nothing_and_says_why(window, qtbot, fast):
    fast(window)
    wait_ready(qtbot, window)
    before = window.project.to_dict()
    sweep(window, qtbot, demo.SCORER, max_drift=1.0)  # SSIM 1: an unchanged image, which no refine leaves
    panel = window.tuning.sweep_panel
    assert panel.chosen is not None and panel.chosen.cell is None
    assert "SSIM < 1" in panel.pick_note.text() and all(f"2.switch_at={v:g}" in panel.pick_note.text() for v in VALUES)
    assert window.project.to_dict() == before
    assert all(c.score is not None for c in panel.result.cells), "every cell was scored"


def test_a_bad_scorer_is_refused_before_any_cell_runs(window, qtbot, fast, tmp_path):
    fast(window)
    wait_ready(qtbot, window)
    before = window.project.to_dict()
    seen = sweep(window, qtbot, "nope:thing")
    panel = window.tuning.sweep_panel
    assert [type(e) for e in seen] == [PickProblem], "no cell ran, no result came"
    assert "is not one Handoff knows" in panel.problem.text() and "\n" not in panel.problem.text()
    assert panel.progress.text() == "no cell ran"
    assert window.project.to_dict() == before and not window.runner.busy
