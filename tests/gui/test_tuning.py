"""Tuning from the window: Generate while a job runs queues the next one, re-run from a
stage reuses the stages before it, and the sweep panel runs a grid."""
from __future__ import annotations

from conftest import JOB_TIMEOUT_MS
from core.events import JobFinished
from core.job_queue import JobQueue
from gui.images import qimage_of


def wait_ready(qtbot, window) -> None:
    if not window.runner.ready:
        with qtbot.waitSignal(window.runner.torch_ready, timeout=JOB_TIMEOUT_MS):
            pass


def test_generate_while_running_queues_then_runs_from_a_stage(window, qtbot, fast):
    fast(window)
    wait_ready(qtbot, window)
    assert window.generate()
    assert window.runner.busy
    window.project.seed += 1
    assert window.generate(), "a second Generate queues"
    assert len(window.tuning.queue) == 1 and window.tuning.queue_panel.list.count() == 1
    assert len(JobQueue.load()) == 1, "the queue is on disk"
    qtbot.waitUntil(lambda: len(window.runs) == 2 and not window.runner.busy, timeout=JOB_TIMEOUT_MS)
    assert len(window.tuning.queue) == 0
    assert window.runs[1].recipe["seed"] == window.runs[0].recipe["seed"] + 1
    # Re-run from stage 2: stage 1's stored output is reused, the result is the same.
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS) as blocker:
        assert window.tuning.run_from(1)
    assert isinstance(blocker.args[0], JobFinished)
    again = window.runs[-1]
    assert [s.reused for s in again.stages] == [True, False]
    assert again.stages[1].image.tobytes() == window.runs[1].stages[1].image.tobytes()
    assert window.timings.item(0, 2).text() == "reused"


def test_sweep_panel_runs_a_grid_and_opens_a_cell(window, qtbot, fast):
    fast(window)
    wait_ready(qtbot, window)
    panel = window.tuning.sweep_panel
    window.tuning.show_sweep()
    offered = [panel.x.param.itemText(i) for i in range(panel.x.param.count())]
    # The demo's refiner takes an ensemble handoff: its switch point, never a strength it ignores.
    assert "2.switch_at" in offered and "2.strength" not in offered and "1.strength" not in offered
    panel.x.param.setCurrentText("2.switch_at")
    panel.x.values.setText("bogus")
    assert not panel.start() and "numbers" in panel.problem.text()
    panel.x.values.setText("0.5, 0.75")
    with qtbot.waitSignal(window.runner.sweep_event, timeout=JOB_TIMEOUT_MS,
                          check_params_cb=lambda item: not isinstance(item, tuple)):
        assert panel.start()
    assert panel.result is not None and len(panel.result.cells) == 2
    assert not panel.grid.pixmap().isNull() and panel.cells.count() == 2
    panel._open(panel.cells.item(1))
    assert window.compare.canvas.right is qimage_of(panel.result.cells[1].image)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=JOB_TIMEOUT_MS)
