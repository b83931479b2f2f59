"""qasync's loop in tests: run as gui/app.py runs it (tests/gui/conftest.py `app_loop`), or
installed on the qapp by gui/tasks.py when a pytest-qt test starts a coroutine; waiting
for the window's coroutines in either; and ending a test's loop so that nothing of it (a
task, a thread, a Qt object) outlives the test."""
from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager


async def until(condition, timeout_s: float = 60.0, step_s: float = 0.01) -> None:
    """Await (on the loop, so its tasks go on) until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {condition}")
        await asyncio.sleep(step_s)


def finish(qtbot, awaitable, timeout_ms: int = 60_000):
    """A window coroutine's result, from a pytest-qt test: started on qasync's loop (as the
    window starts its own) and waited for with Qt's loop turning."""
    from gui.tasks import event_loop

    task = asyncio.ensure_future(awaitable, loop=event_loop())
    qtbot.waitUntil(task.done, timeout=timeout_ms)
    return task.result()


def loop_qt_objects(loop) -> list:
    """The Qt objects a qasync loop made: the object its callbacks are Qt timers of, the one
    worker threads hand callbacks to (call_soon_threadsafe), and its default executor's
    QThreads. qasync keeps them in private attributes (qasync 0.28)."""
    executor = loop._QEventLoop__default_executor
    workers = executor._QThreadExecutor__workers if executor is not None else []
    return [loop._timer, loop._QEventLoop__call_soon_signaller, *workers]


def close_loop(loop) -> None:
    """Close a test's qasync loop (not running) and delete its Qt objects now, here on the
    GUI thread.

    A closed loop is cyclic garbage (its tasks, handles and self-pipe callback point back
    at it): left alone, it is freed whenever the cycle collector next runs, on whatever
    thread allocates then (a download thread, a fake Hub's, ray's PythonGCThread), and its
    Qt objects are deleted there. Its timer object still holds Qt timers for call_later
    handles that were cancelled but are not yet due (asyncio.wait_for's timeout, a
    sleep's), and Qt cannot unregister those from another thread ("QObject::~QObject:
    Timers cannot be stopped from another thread"): the timer then fires at the freed
    object, and the next processEvents (pytest-qt's, in some later test) crashes in
    QCoreApplication::notifyInternal2."""
    from shiboken6 import delete, isValid

    loop.close()  # shuts its default executor down, waiting for the worker threads
    timer = loop._timer
    callbacks = timer._SimpleTimer__callbacks
    for timer_id in list(callbacks):
        timer.killTimer(timer_id)
    callbacks.clear()
    for obj in loop_qt_objects(loop):
        if isValid(obj):
            delete(obj)


@contextmanager
def running_app_loop(qapp):
    """qasync's loop as gui/app.py runs it: not yet running, then `run(scenario())` runs Qt's
    own event loop (QApplication.exec) until the scenario coroutine is done. Whatever the
    scenario starts (the window's tasks) runs on it; waits inside a scenario are awaits,
    never qtbot's nested loops. At the end, what still runs is cancelled and let finish,
    and the loop is closed (close_loop) and no longer the current one."""
    import qasync

    assert asyncio.events._get_running_loop() is None, "a loop is already running"
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    # A test's last visible window (a dialog alone, a window it closes) must not quit the
    # app mid-scenario: in the app, the main window's close ends the loop, and gui/app.py's
    # finish_tasks then lets cancelled tasks end.
    quits = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)
    try:
        yield _Runner(loop)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        close_loop(loop)
        asyncio.set_event_loop(None)
        qapp.setQuitOnLastWindowClosed(quits)


class _Runner:
    def __init__(self, loop) -> None:
        self.loop = loop

    def run(self, coro, timeout_s: float = 120.0):
        """The scenario's result; what it left running (the library's size queries, say)
        is then cancelled and let finish while the loop still runs: outside run(), a Qt
        event processed by pytest-qt would step a task with no loop running."""
        async def scenario_then_leftovers():
            try:
                return await asyncio.wait_for(coro, timeout_s)
            finally:
                left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in left:
                    task.cancel()
                await asyncio.gather(*left, return_exceptions=True)

        return self.loop.run_until_complete(scenario_then_leftovers())


def end_installed_loop(qapp) -> None:
    """End the loop gui/tasks.py installed on the qapp as already running (if a test made
    one): what still runs on it is cancelled and let finish (a download stops at its next
    chunk), then it is closed (close_loop), so no thread of one test runs into the next."""
    loop = asyncio.events._get_running_loop()
    if loop is None:
        return
    import qasync

    assert isinstance(loop, qasync.QEventLoop), loop
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    deadline = time.monotonic() + 60
    while any(not t.done() for t in pending) and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.005)
    # Not loop.stop(): that calls QApplication.exit(), which with no Qt loop running leaves
    # "quit now" set, and the next test's Qt loops would return at once.
    asyncio.events._set_running_loop(None)
    loop._QEventLoop__is_running = False
    qapp.aboutToQuit.disconnect(loop._after_run_forever)
    loop._after_run_forever()
    close_loop(loop)
    asyncio.set_event_loop(None)
