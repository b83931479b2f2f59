"""gui/tasks.py, the window's coroutines on qasync's loop: a failure is shown, not lost; an
owner's tasks go with it; and quitting (gui/app.py) lets cancelled tasks finish."""
from __future__ import annotations

import asyncio


def test_a_failing_task_is_shown_and_a_destroyed_owners_tasks_are_cancelled(qtbot, app_loop):
    from PySide6.QtWidgets import QWidget
    from shiboken6 import delete

    from gui.tasks import Tasks

    shown: list[str] = []
    owner = QWidget()
    tasks = Tasks(owner, on_error=shown.append)

    async def fails():
        await asyncio.sleep(0)
        raise ValueError("disk full")

    async def scenario():
        bad = tasks.start(fails(), name="saving")
        waiting = tasks.start(asyncio.Event().wait(), name="waiting")
        await asyncio.gather(bad, return_exceptions=True)
        assert tasks.pending == [waiting]
        delete(owner)  # the widget goes (destroyed): its work goes with it
        await asyncio.gather(waiting, return_exceptions=True)
        return waiting

    waiting = app_loop.run(scenario())
    assert shown == ["saving failed: ValueError: disk full"]
    assert waiting.cancelled() and tasks.pending == []


def test_quitting_cancels_what_runs_and_lets_it_finish(app_loop):
    from gui.app import finish_tasks

    loop = app_loop.loop
    cleaned: list[str] = []

    async def download_like():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # e.g. waiting for a worker thread to stop at its next chunk
            cleaned.append("stopped")
            raise

    task = loop.create_task(download_like())
    loop.run_until_complete(asyncio.sleep(0))  # the app's loop ran, then the window closed
    finish_tasks(loop)
    assert task.cancelled() and cleaned == ["stopped"]


def _left_behind(loop, threads_before) -> list[str]:
    """What of a test's loop outlives it: Qt objects not yet deleted, the current event loop,
    threads it started."""
    import threading

    from shiboken6 import isValid

    from tests.qasync_helpers import loop_qt_objects

    left = [f"Qt object {type(o).__name__}" for o in loop_qt_objects(loop) if isValid(o)]
    if asyncio.events._get_running_loop() is not None:
        left.append("a running loop")
    if asyncio.get_event_loop_policy()._local._loop is not None:
        left.append("the current event loop")
    left += [f"thread {t.name}" for t in threading.enumerate() if t not in threads_before and not t.daemon]
    return left


async def _timer_and_thread_work():
    """What the window's coroutines leave in a loop: a worker thread of its executor (a
    download's, a save's) and a cancelled timeout still registered as a Qt timer."""
    import threading

    await asyncio.to_thread(threading.current_thread)
    await asyncio.wait_for(asyncio.sleep(0), timeout=600)


def test_a_test_loop_leaves_no_qt_object_for_the_cycle_collector(qapp):
    """A closed loop is cyclic garbage, freed when the cycle collector next runs, on
    whatever thread allocates then. Its Qt objects (a timer object still holding Qt timers
    for cancelled timeouts, its executor's QThreads) must be deleted on the GUI thread as
    the test ends: deleted on another thread, a timer is left registered, fires at the
    freed object, and a later test's processEvents segfaults (the full suite did)."""
    import threading

    from tests.qasync_helpers import running_app_loop

    threads = set(threading.enumerate())
    with running_app_loop(qapp) as runner:
        runner.run(_timer_and_thread_work())
        loop = runner.loop
    assert loop.is_closed() and _left_behind(loop, threads) == []


def test_the_loop_a_pytest_qt_test_installed_is_ended_as_completely(qtbot):
    import threading

    from PySide6.QtWidgets import QApplication

    from gui.tasks import event_loop
    from tests.qasync_helpers import end_installed_loop, finish

    threads = set(threading.enumerate())
    loop = event_loop()  # installed as already running, as a window's first task does
    finish(qtbot, _timer_and_thread_work())
    end_installed_loop(QApplication.instance())  # what the autouse asyncio_loop fixture does after each test
    assert loop.is_closed() and _left_behind(loop, threads) == []
