"""Fixtures for the window tests: a fresh HANDOFF_HOME per test (the lead's
tests/conftest.py does this too; repeating it here keeps this folder safe on its own),
the demo models built once per session and linked into each home, and a window whose
questions are answered by the test instead of a modal dialog."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> Path:
    """The random-weight demo models, built once (seconds) instead of once per test."""
    from core import demo

    shipped = all((demo.DEMO_DIR / n / "model_index.json").is_file() for n in demo.NAMES)
    folder = tmp_path_factory.mktemp("demo-models")
    if not shipped:
        demo.build_random(folder)
    return folder


@pytest.fixture(autouse=True)
def handoff_home(tmp_path, monkeypatch, request) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HANDOFF_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def asyncio_loop(qapp):
    """The window's coroutines run on qasync's loop (gui/tasks.py installs it on the qapp
    when a test starts one outside `app_loop`). After each test: what is still running is
    cancelled and let finish (a download stops at its next chunk), and the loop closes,
    joining its worker threads, so no thread of one test runs into the next."""
    yield
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
    loop.close()
    asyncio.set_event_loop(None)
    _collect_here(qapp)


@pytest.fixture
def app_loop(qapp):
    """qasync's loop as gui/app.py runs it: not yet running, then `run(scenario())` runs Qt's
    own event loop (QApplication.exec) until the scenario coroutine is done. Whatever the
    scenario starts (the window's tasks) runs on it; waits inside a scenario are awaits,
    never qtbot's nested loops."""
    import qasync

    assert asyncio.events._get_running_loop() is None, "a loop is already running"
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    # A test's last visible window (a dialog alone, a window it closes) must not quit the
    # app mid-scenario: in the app, the main window's close ends the loop, and gui/app.py's
    # finish_tasks then lets cancelled tasks end.
    quits = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)

    class Runner:
        def __init__(self) -> None:
            self.loop = loop

        def run(self, coro, timeout_s: float = 120.0):
            """The scenario's result; what it left running (the library's size queries,
            say) is then cancelled and let finish while the loop still runs: outside
            run(), a Qt event processed by pytest-qt would step a task with no loop running."""
            async def scenario_then_leftovers():
                try:
                    return await asyncio.wait_for(coro, timeout_s)
                finally:
                    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                    for task in left:
                        task.cancel()
                    await asyncio.gather(*left, return_exceptions=True)

            return loop.run_until_complete(scenario_then_leftovers())

    yield Runner()
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    asyncio.set_event_loop(None)
    qapp.setQuitOnLastWindowClosed(quits)
    _collect_here(qapp)


def _collect_here(qapp) -> None:
    """A closed loop's Qt objects (its timer object, its executor's threads) go now, on the
    GUI thread: left to the cycle collector, they could be deleted on a worker thread."""
    import gc

    qapp.processEvents()  # the stopped timer object kills its timers as they fire
    gc.collect()


@pytest.fixture(autouse=True)
def no_hub_sizes(monkeypatch):
    """The model library asks the Hub for download sizes on a thread: tests make no network
    calls, so the Hub "does not say" unless a test fakes an answer."""
    from core import model_library

    monkeypatch.setattr(model_library, "hub_download_size", lambda repo_id: None)


@pytest.fixture
def with_models(handoff_home, demo_models) -> Path:
    """Make the session's demo models visible under this test's HANDOFF_HOME."""
    target = handoff_home / "cache" / "demo-random"
    target.parent.mkdir(parents=True, exist_ok=True)
    if any(demo_models.iterdir()):
        target.symlink_to(demo_models, target_is_directory=True)
    return handoff_home


class Answers:
    """What the tests answer to the window's questions, and a record of what was asked."""

    def __init__(self) -> None:
        self.yes = True
        self.save_changes = "discard"
        self.save_path: Path | None = None
        self.choice: str | None = None  # the answer key a choose() question gets
        self.asked: list[str] = []

    def pick(self, choices: list[tuple[str, str]]) -> str:
        """`choice` when set; else yes takes the first answer (the one offered), no the second."""
        return self.choice if self.choice is not None else choices[0 if self.yes else 1][0]


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def window(qtbot, with_models, answers):
    from gui.main_window import MainWindow

    w = MainWindow()
    w.ask = lambda title, text: (answers.asked.append(title), answers.yes)[1]
    w.choose = lambda title, text, choices: (answers.asked.append(title), answers.pick(choices))[1]
    w.ask_save_changes = lambda: (answers.asked.append("save changes"), answers.save_changes)[1]
    w.choose_save_path = lambda: answers.save_path
    qtbot.addWidget(w)
    w.show()
    w.runner.preload()
    yield w
    w.set_modified(False)  # no question at teardown
    w.close()


def _fast(window, steps: int = 4) -> None:
    for stage in window.project.stages:
        stage.steps = steps
    window.stage_list.refresh()
    window._validate()


@pytest.fixture
def fast():
    """Fewer steps: the demo models on a CPU then finish a job in a second or two."""
    return _fast


JOB_TIMEOUT_MS = 120_000  # the first job of a session pays the torch import (~5 s) too
