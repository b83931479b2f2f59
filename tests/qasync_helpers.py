"""Waiting for the window's coroutines in tests: inside a scenario run on qasync's loop
(tests/gui/conftest.py `app_loop`), and from a pytest-qt test."""
from __future__ import annotations

import asyncio
import time


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
