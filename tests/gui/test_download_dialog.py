"""The download dialog against the fake Hub: progress, cancel, success, and errors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog

from tests.fake_hub import BIG_FILE, TINY_SD, go_offline, serving_tiny_sd

REPO = TINY_SD
BIG = BIG_FILE
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests import tiny_pipelines as tp

    return tp.build_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", seed=0)


@pytest.fixture
def hub(tiny_sd, tmp_path, monkeypatch):
    with serving_tiny_sd(tiny_sd, monkeypatch, tmp_path / "hf-cache") as h:
        yield h


def dialog(qtbot, repo_id: str = REPO):
    from gui.download_dialog import DownloadDialog

    d = DownloadDialog(repo_id)
    qtbot.addWidget(d)
    d.show()
    return d


def test_progress_then_success_returns_the_snapshot_folder(qtbot, hub):
    d = dialog(qtbot)
    seen = []
    d.progressed.connect(seen.append)
    with qtbot.waitSignal(d.finished, timeout=TIMEOUT_MS) as done:
        d.start()
    assert done.args == [QDialog.DialogCode.Accepted.value]
    assert d.path is not None and (d.path / "model_index.json").is_file() and (d.path / BIG).is_file()
    assert seen and seen[-1].bytes_done == seen[-1].bytes_total
    assert d.bar.value() == d.bar.maximum()
    assert not d.running


def test_stats_read_bytes_rate_and_time_left(qtbot, hub):
    hub.throttle[BIG] = (16 * 1024, 0.01)
    d = dialog(qtbot)
    d.start()
    qtbot.waitUntil(lambda: d.file_label.text() == BIG and "B/s" in d.stats_label.text(), timeout=TIMEOUT_MS)
    text = d.stats_label.text()  # e.g. "1874 / 6708 kB · 1.6 MB/s · less than a minute left"
    total = round(hub.repos[REPO].total_bytes() / 1e3)
    assert re.fullmatch(rf"\d+ / {total} kB · [\d.]+ [kM]B/s · (less than a minute|about \d+ min) left", text), text
    assert 0 < d.bar.value() < d.bar.maximum()
    with qtbot.waitSignal(d.finished, timeout=TIMEOUT_MS):
        d.reject()  # Escape / the close box cancel too


def test_cancel_stops_the_download_keeps_the_partial_file_and_closes(qtbot, hub, tmp_path):
    hub.throttle[BIG] = (16 * 1024, 0.02)
    d = dialog(qtbot)
    d.start()
    qtbot.waitUntil(lambda: d.file_label.text() == BIG and 0 < d.bar.value(), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(d.finished, timeout=TIMEOUT_MS) as done:
        qtbot.mouseClick(d.cancel_button, Qt.MouseButton.LeftButton)
    assert done.args == [QDialog.DialogCode.Rejected.value]
    assert d.path is None and not d.running and not d.isVisible()
    partial = list((tmp_path / "hf-cache" / "models--fake-org--tiny-sd" / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0


def test_gated_repo_shows_what_to_do_and_closes(qtbot, hub):
    d = dialog(qtbot, "fake-org/gated-sd")
    d.start()
    qtbot.waitUntil(lambda: d.error is not None, timeout=TIMEOUT_MS)
    assert "accept its licence" in d.error_label.text() and "log in" in d.error_label.text()
    assert d.error_label.isVisible() and d.cancel_button.text() == "Close"
    with qtbot.waitSignal(d.finished, timeout=5_000):
        qtbot.mouseClick(d.cancel_button, Qt.MouseButton.LeftButton)
    assert d.path is None


@pytest.mark.parametrize("case, words", [("missing", "not found"), ("offline", "offline mode is on")])
def test_missing_and_offline_each_say_so(qtbot, hub, monkeypatch, case, words):
    if case == "offline":
        go_offline(monkeypatch)
    d = dialog(qtbot, "fake-org/no-such-model" if case == "missing" else REPO)
    d.start()
    qtbot.waitUntil(lambda: d.error is not None, timeout=TIMEOUT_MS)
    assert words in d.error


def test_fetch_is_modal_and_returns_the_path(qtbot, hub):
    from gui.download_dialog import DownloadDialog

    def give_up():  # a guard: never leave a modal loop running if the download hangs
        for w in QApplication.topLevelWidgets():
            if isinstance(w, DownloadDialog) and w.isVisible():
                w._cancel.set()

    QTimer.singleShot(TIMEOUT_MS, give_up)
    path = DownloadDialog.fetch(None, REPO)
    assert path is not None and (path / "model_index.json").is_file()


def test_closing_the_dialog_cancels_the_download_task_under_the_app_loop(qtbot, hub, app_loop, tmp_path):
    """Under the loop gui/app.py runs: progress arrives on the GUI thread while the bytes
    flow on a worker thread; the close box cancels the task, which ends only once the
    worker thread has stopped, and no byte is written after that."""
    import asyncio
    import threading

    from tests.qasync_helpers import until

    hub.throttle[BIG] = (16 * 1024, 0.02)
    d = dialog(qtbot)
    seen: list[tuple[str, int]] = []
    d.progressed.connect(lambda p: seen.append((threading.current_thread().name, p.bytes_done)))
    blobs = tmp_path / "hf-cache" / "models--fake-org--tiny-sd" / "blobs"

    async def scenario():
        task = d.start()
        await until(lambda: d.file_label.text() == BIG and d.bar.value() > 0)
        d.close()  # the window's close box
        assert d.isVisible() and d.running  # stopping: the worker thread finishes its chunk first
        with pytest.raises(asyncio.CancelledError):
            await task
        [partial] = blobs.glob("*.incomplete")
        size = partial.stat().st_size
        for _ in range(20):  # the loop turns on: a worker thread still running would write on
            await asyncio.sleep(0.01)
        return task, partial, size

    task, partial, size = app_loop.run(scenario())
    assert task.cancelled() and not d.isVisible() and d.result() == QDialog.DialogCode.Rejected.value
    assert d.path is None and not d.running
    assert seen and all(name == threading.main_thread().name for name, _ in seen)
    assert 0 < size == partial.stat().st_size < hub.repos[REPO].total_bytes()
