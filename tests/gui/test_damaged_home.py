"""The window starting over damaged files of its own home (queue.json, settings.json with
its window and model library sections, the autosave a crash left): it opens with what
could be read, keeps each damaged file as NAME.damaged, and says so once, in the banner
and the log. The loaders over every kind of damage are tests/test_startup_files.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import paths
from core.project import Project, Stage

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"id": "good0001", "from_stage": None, "project": Project(prompt="queued cat", width=64, height=64, seed=7,
                                                                  stages=[Stage("builtin:demo-base")]).to_dict()}
QUEUE = json.dumps({"version": 1, "jobs": [GOOD, dict(GOOD, id="bad00002", from_stage="two")]}).encode()
SETTINGS = {  # what each damage leaves readable, and what the window says of it
    "queue.json": (QUEUE, "queue.json: job 2: from_stage must be an integer, not 'two' (1 other job(s) queued; "
                          "queue.json is kept as queue.json.damaged)"),
    "settings.json": (b'{"gui": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                      "settings.json is nested more than 64 levels deep"),
    "settings.json gui": (json.dumps({"gui": {"recent_files": 5, "autosave_seconds": 30}}).encode(),
                          "settings.json: gui: recent_files must be a list of text, not 5"),
    "settings.json models": (json.dumps({"models": {"entries": [{"name": "x", "ref": "/m", "source": "two"}]}}).encode(),
                             "settings.json: models: entries[1]: source 'two' is not one of"),
}


def _window(qtbot):
    from gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def _close(w) -> None:
    w.set_modified(False)
    w.close()


@pytest.mark.parametrize("case", SETTINGS)
def test_the_window_opens_over_a_damaged_file_and_says_so_once(qtbot, with_models, case):
    content, says = SETTINGS[case]
    name = case.split()[0]
    target = paths.home() / name
    target.write_bytes(content)
    w = _window(qtbot)
    assert w.banner.isVisible() and says in w.banner.text.text()
    assert w.log.toPlainText().count(says) == 1
    assert (paths.home() / f"{name}.damaged").read_bytes() == content
    if name == "queue.json":
        assert [j.project.prompt for j in w.tuning.queue.jobs] == ["queued cat"] and w.tabs.currentWidget() is w.tuning.queue_panel
    if case == "settings.json gui":
        assert w.settings.autosave_seconds == 30, "the good values are kept"
    _close(w)
    again = _window(qtbot)  # the next start: nothing more to say
    assert not again.banner.isVisible()
    _close(again)


def test_a_damaged_autosave_after_a_crash_is_said_and_kept(window, answers):
    from core import document

    document.autosave_file().write_bytes(b"PK\x03\x04 cut short")
    assert document.begin_session() is False  # a clean previous exit: nothing offered
    assert document.begin_session() is True  # the lock left behind: a crash
    assert window.offer_recovery() is False
    text = window.banner.text.text()
    assert text.startswith("The autosave could not be read: autosave.handoff") and "\n" not in text
    assert "autosave.handoff is kept as autosave.handoff.damaged" in text
    assert document.autosave_file().with_name("autosave.handoff.damaged").read_bytes() == b"PK\x03\x04 cut short"
    assert window.offer_recovery() is False and answers.asked == ["Recover unsaved work?"], "asked and said once"
    document.end_session()


def test_a_failure_while_the_window_is_built_stops_the_engine_thread(qtbot, monkeypatch):
    """A bug in restoring the window's state: the exception is the one raised, and the
    engine thread is stopped, not left for Qt to abort the process over."""
    from gui import main_window, window_state
    from gui.worker import JobRunner

    def broken(*args):
        raise RuntimeError("restoring went wrong")

    monkeypatch.setattr(window_state, "restore", broken)
    runner = JobRunner()
    assert runner.thread.isRunning()
    with pytest.raises(RuntimeError, match="restoring went wrong"):
        main_window.MainWindow(runner=runner)
    assert not runner.thread.isRunning()


def test_an_engine_thread_that_outlives_shutdown_is_kept_until_it_ends(qtbot, tmp_path):
    """A job that does not stop within shutdown's wait (a torch import on a busy machine
    did this to tests/gui/test_laptop.py): its runner may be collected, but not its running
    QThread, or the collecting thread destroys it and Qt aborts the process."""
    import gc
    import threading

    from core.defaults import default_project
    from gui import worker

    started, release = threading.Event(), threading.Event()

    def stuck(project, out_dir, cancel):
        started.set()
        release.wait(60)
        yield from ()

    runner = worker.JobRunner(stuck)
    runner.start(default_project(), tmp_path)
    assert started.wait(30)
    runner.shutdown(wait_ms=50)
    assert runner.thread.isRunning()
    kept = runner.thread
    del runner
    gc.collect()  # the runner goes; its thread must not
    assert any(t is kept for t, _ in worker._STOPPING)
    release.set()
    qtbot.waitUntil(kept.isFinished, timeout=10_000)
    worker.JobRunner().shutdown()  # the next shutdown lets the finished thread go
    assert not any(t is kept for t, _ in worker._STOPPING)


def test_the_real_window_starts_over_a_damaged_queue_and_exits_cleanly(handoff_home):
    """main.py itself, as a user starts it (offscreen, closed by HANDOFF_QUIT_AFTER_MS once
    torch has loaded): exit 0, the message, and no Qt abort."""
    home = handoff_home
    (home / "queue.json").write_bytes(QUEUE)
    env = dict(os.environ, HANDOFF_HOME=str(home), QT_QPA_PLATFORM="offscreen", HANDOFF_QUIT_AFTER_MS="100")
    ran = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"smoke: banner: {SETTINGS['queue.json'][1]}" in ran.stdout, ran.stdout
    assert "QThread" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    assert (home / "queue.json.damaged").read_bytes() == QUEUE
    assert [j["id"] for j in json.loads((home / "queue.json").read_text())["jobs"]] == ["good0001"]
