"""Coroutines owned by a widget, on the asyncio loop that is Qt's own event loop (qasync).

The window's I/O that is not torch (Hub size queries, downloads, library scans, saves,
reading a dropped file) runs as coroutines: the blocking part goes to a worker thread
with `await asyncio.to_thread(...)` and the result comes back on the GUI thread, where
the coroutine goes on. A widget keeps its tasks in a `Tasks`: asyncio itself holds a
task only weakly, so an unkept one can vanish mid-flight; the widget's tasks are
cancelled when it is destroyed (or when it says it closed), and an exception a task
ends with is shown, not lost in a log nobody reads.

    self.tasks = Tasks(self, on_error=self.show_error)
    self.tasks.start(self.save_file(path), name="save")

Modal questions (QMessageBox.exec, a QFileDialog, a modal dialog's exec) run a nested Qt
event loop. Asked inside a coroutine's step, that nested loop would run other tasks'
steps while this one is still "the current task", which asyncio refuses (those tasks
would stop for good); `await modal(fn, ...)` asks from a plain loop callback instead.
"""
from __future__ import annotations

import asyncio
import inspect
import sys
import traceback
import weakref
from typing import Any, Callable, Coroutine

from PySide6.QtCore import QObject


def event_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop. The app runs qasync's (gui/app.py); where none runs yet (a
    Qt loop started by someone else: pytest-qt's waits, a script showing one widget),
    qasync's loop is installed on the QApplication as already running, so every turn of
    whatever Qt loop runs now also runs asyncio's callbacks."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        raise RuntimeError("a coroutine of the window needs a QApplication")
    loop = qasync.QEventLoop(app, already_running=True)
    asyncio.set_event_loop(loop)
    return loop


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Tasks:
    """The tasks one widget started. `on_error(text)` shows an exception a task ended with
    (the traceback also goes to stderr, which a windowed start sends to handoff.log)."""

    def __init__(self, owner: QObject, on_error: Callable[[str], None] | None = None) -> None:
        self._tasks: set[asyncio.Task] = set()
        # Weakly, when it is the owner's method: a cycle through a widget would leave its
        # deletion to Python's cycle collector, which may run on a worker thread.
        self._on_error = weakref.WeakMethod(on_error) if inspect.ismethod(on_error) else (lambda: on_error)
        owner.destroyed.connect(self.cancel_all)

    def start(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        task = event_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def pending(self) -> list[asyncio.Task]:
        return [t for t in self._tasks if not t.done()]

    def cancel_all(self, *_args) -> None:
        """Cancel every task still running (a closing widget's work stops with it)."""
        for task in list(self._tasks):
            task.cancel()

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        text = f"{task.get_name()} failed: {describe_error(exc)}"
        on_error = self._on_error()
        if on_error is not None:
            try:
                on_error(text)
                return
            except RuntimeError:  # the widget that would show it is gone
                pass
        print(text, file=sys.stderr)


async def modal(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` (a modal question, or anything that runs a nested Qt loop) called from a
    plain loop callback rather than inside this coroutine's step; its return value, or
    its exception, comes back here."""
    loop = asyncio.get_running_loop()
    answer = loop.create_future()

    def call() -> None:
        if answer.cancelled():
            return
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001  (handed to the awaiting coroutine)
            if not answer.cancelled():
                answer.set_exception(exc)
            return
        if not answer.cancelled():
            answer.set_result(result)

    loop.call_soon(call)
    return await answer
