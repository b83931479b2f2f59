"""Fixtures for the window tests: a fresh HANDOFF_HOME per test (the lead's
tests/conftest.py does this too; repeating it here keeps this folder safe on its own),
the demo models built once per session and linked into each home, and a window whose
questions are answered by the test instead of a modal dialog."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.qasync_helpers import end_installed_loop, running_app_loop

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
    when a test starts one outside `app_loop`); after each test, end_installed_loop ends
    what still runs on it and closes it."""
    yield
    end_installed_loop(qapp)


@pytest.fixture
def app_loop(qapp):
    """qasync's loop as gui/app.py runs it (tests/qasync_helpers.py running_app_loop)."""
    with running_app_loop(qapp) as runner:
        yield runner


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
