"""SIGINT and SIGTERM from the first line of main.py to the last: exit 130 or 143 with
one line, never a traceback, never a 0.

main.py installs these handlers before it imports anything heavy (torch takes seconds to
import, and Python's default SIGTERM kills without a word). The command line replaces
them with its own while a job can be cancelled (core.cli.Interrupts) and puts them back
when it is done, so a signal during teardown (torch's exit hooks, the last flush) exits
here too. Nothing imported here is heavier than the standard library's os and signal.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable, NoReturn

EXIT_CANCELLED, EXIT_TERMINATED = 130, 143
CODES = {signal.SIGINT: EXIT_CANCELLED, signal.SIGTERM: EXIT_TERMINATED}
CANCELLED_LINE = "handoff: cancelled"
# Tests name a point of the run here (importing, before-first-job, between-jobs, shutdown):
# the process says when it gets there and waits for their signal, so a signal lands at
# that point however loaded the machine is.
PHASE_ENV = "HANDOFF_TEST_PHASE"
PHASE_WAIT_SECONDS = 120.0


def exit_code(signum: int) -> int:
    return CODES.get(signum, EXIT_CANCELLED)


def exit_now(code: int) -> NoReturn:
    """Flush what was printed, say `handoff: cancelled`, and exit with `code` at once. The
    line goes out with os.write: a print here could land inside one of the main thread's
    and fail as a reentrant call instead of exiting."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError, AttributeError):  # closed, reentrant, or None
            pass
    newline = "\n" if _tty(sys.stderr) else ""
    try:
        os.write(2, f"{newline}{CANCELLED_LINE}\n".encode())
    except OSError:
        pass
    os._exit(code)


def _tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


def exit_on_signal(signum: int, _frame=None) -> None:
    exit_now(exit_code(signum))


def exit_on_signals() -> None:
    """SIGINT and SIGTERM exit at once (see the module). A signal ignored on purpose (nohup,
    a background job) stays ignored; only the main thread can set handlers."""
    for sig in CODES:
        try:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, exit_on_signal)
        except ValueError:  # not the main thread
            return


def leave(status: int) -> NoReturn:
    """The process's last act once the command is done: flush and exit with `status`
    without Python's teardown, in which a signal could come out as a traceback (a
    KeyboardInterrupt in torch's exit hook) or a silent kill. A flush that fails (a
    closed pipe) does not change the status."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)


def reached(phase: str, done: Callable[[], bool] = lambda: False) -> None:
    """A named point of the run. Only when the test hook names it: say so on stderr and
    wait until `done()` (a handler that cancels instead of exiting) or the wait ends."""
    if os.environ.get(PHASE_ENV) != phase:
        return
    try:
        os.write(2, f"handoff-phase: {phase}\n".encode())
    except OSError:
        return
    deadline = time.monotonic() + PHASE_WAIT_SECONDS
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
