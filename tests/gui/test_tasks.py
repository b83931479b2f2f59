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
