"""Files in and out of the window: drops, project files, recent files, autosave."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from core import demo
from core.defaults import default_project
from core.project import validate
from core import document
from core.document import Document, Run, StageResult, read_project
from gui.images import qimage_of
from gui.settings import Settings
from tests.qasync_helpers import finish


def make_png(path: Path, size=(64, 64), color=Qt.red) -> Path:
    img = QImage(size[0], size[1], QImage.Format_RGB888)
    img.fill(color)
    assert img.save(str(path))
    return path


def drop(window, qtbot, path: Path) -> None:
    """A real QDropEvent, as the window gets it from a file manager."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(event)
    # The drop is a task of the window (the file read on a worker thread, then the question).
    qtbot.waitUntil(lambda: not window.tasks.pending, timeout=60_000)


def fake_run(number: int = 1) -> Run:
    from PIL import Image

    a, b = Image.new("RGB", (64, 64), (0, 0, 255)), Image.new("RGB", (64, 64), (0, 255, 0))
    run = Run(number, "2025-01-01T00:00:00", 2.5, default_project().to_dict(), outcome="finished")
    run.stages.append(StageResult(0, "base", "generate", 16, 0.5, 1.0, 0.1, 1.6, 1000, "process RAM peak", "", a))
    run.stages.append(StageResult(1, "refiner", "ensemble", 4, 0.1, 0.5, 0.1, 0.7, 2000, "process RAM peak", "", b, a))
    return run


def test_dropped_image_becomes_the_init_image(window, qtbot, tmp_path):
    png = make_png(tmp_path / "photo.png", (80, 48))
    drop(window, qtbot, png)
    p = window.project
    assert p.init_image == str(png.resolve())
    assert p.stages[0].handoff == "auto" and p.stages[1].handoff == "ensemble"
    assert (p.width, p.height) == (80, 48)  # matched to the image, snapped to 8
    assert window.init_row.isVisibleTo(window) and "photo.png" in window.init_label.text()
    assert window.compare.canvas.right is not None
    assert window.windowTitle().endswith("*")
    # A refine-only job: the base stage can go, the refiner then takes the image as pixels.
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.remove_stage()
    assert p.stages[0].model == demo.REFINER
    p.stages[0].handoff = "pixel"
    validate(p)
    window.clear_init_image()
    assert p.init_image is None and not window.init_row.isVisibleTo(window)


def test_an_ensemble_first_stage_refines_an_init_image_as_pixels(window, tmp_path):
    """core.planning decides the first stage's handoff: the window leaves the stage as it
    is, shows it as the pixel refine it runs (strength, not switch point), and can run it
    (tests/test_metadata_ran.py runs such a job and reads what its PNG says)."""
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.remove_stage()  # the refiner (ensemble) is now first
    assert window.open_path(make_png(tmp_path / "a.png")) == "init"
    assert window.project.stages[0].handoff == "ensemble"  # the user's setting, untouched
    assert window.generate_button.isEnabled(), window.problems.text()
    window.stage_list.list.setCurrentRow(0)
    ed = window.stage_list.editor
    assert ed.strength.isVisibleTo(window) and not ed.switch_at.isVisibleTo(window) and not ed.handoff.isEnabled()
    assert "refines the init image" in ed.handoff_note.text()
    assert "pixel @ 0." in window.stage_list.list.item(0).text()
    assert "pixel, strength" in ed.handoff_section.header.text()


def test_png_with_a_recipe_offers_to_restore_it(window, qtbot, tmp_path, answers):
    from PIL import Image

    from core.metadata import save_png

    recipe = default_project()
    recipe.prompt = "a yellow star on a black background"
    recipe.seed = 1234
    png = save_png(Image.new("RGB", (64, 64), "yellow"), tmp_path / "made.png", recipe, 1)
    answers.yes = True
    drop(window, qtbot, png)
    assert answers.asked == ["Restore recipe?"]
    assert window.project.prompt == "a yellow star on a black background"
    assert window.project.seed == 1234 and window.seed.value() == 1234
    assert window.prompt_editor.prompt.toPlainText() == recipe.prompt
    assert window.project.init_image is None
    # Saying no uses the picture as an init image instead.
    answers.yes = False
    assert window.open_path(png) == "init"
    assert window.project.init_image == str(png.resolve())


def test_a1111_png_restores_its_prompt(window, tmp_path, answers):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a green circle\nNegative prompt: blurry\nSteps: 12, Sampler: Euler, CFG scale: 6, Seed: 77, Size: 64x64")
    png = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    assert window.open_path(png) == "recipe"
    assert window.project.prompt == "a green circle" and window.project.negative_prompt == "blurry"


def test_other_files_are_refused_and_change_nothing(window, qtbot, tmp_path):
    before = window.project.to_dict()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    drop(window, qtbot, notes)
    assert window.banner.isVisible() and "notes.txt" in window.banner.text.text()
    assert "nothing was changed" in window.statusBar().currentMessage()
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png")
    assert window.open_path(fake) == "rejected"
    assert window.project.to_dict() == before and not window.modified


def test_save_and_reopen_a_project_with_history(window, qtbot, tmp_path, answers):
    window.prompt_editor.prompt.setPlainText("a purple triangle")
    window.set_init_image(make_png(tmp_path / "init.png", (64, 64), Qt.cyan))
    window.runs.append(fake_run())
    target = tmp_path / "mine.handoff"
    answers.save_path = target
    assert window.save()
    assert target.is_file() and window.windowTitle() == "Handoff — mine"
    assert Settings.load().recent_files[0] == str(target.resolve())
    assert window.recent_menu.actions()[0].text() == str(target.resolve())
    # New asks nothing (saved), then reopening restores the recipe, init image and history.
    window.new_project()
    assert answers.asked == [] and window.project.prompt == "a red circle on a blue background"
    with qtbot.waitSignal(window.projectLoaded):
        assert window.open_path(target) == "project"
    p = window.project
    assert p.prompt == "a purple triangle" and p.init_image and Path(p.init_image).is_file()
    assert QImage(p.init_image).pixelColor(3, 3).name() == "#00ffff"
    assert len(window.runs) == 1 and len(window.runs[0].stages) == 2
    refiner = window.runs[0].stages[1]
    assert refiner.input_image is not None and refiner.image.getpixel((1, 1)) == (0, 255, 0)
    assert refiner.denoise_seconds == 0.5 and refiner.memory_kind == "process RAM peak"
    assert window.timings.rowCount() == 3 and window.compare.strip.count() == 1
    assert window.windowTitle() == "Handoff — mine" and not window.modified


def test_unsaved_changes_are_asked_about(window, tmp_path, answers):
    window.prompt_editor.prompt.setPlainText("changed")
    answers.save_changes = "cancel"
    window.new_project()
    assert window.project.prompt == "changed"  # cancel keeps the document
    answers.save_changes = "save"
    answers.save_path = tmp_path / "kept.handoff"
    window.new_project()
    assert (tmp_path / "kept.handoff").is_file() and window.project.prompt != "changed"
    assert answers.asked == ["save changes", "save changes"]


def test_a_broken_project_file_is_reported(window, tmp_path):
    bad = tmp_path / "bad.handoff"
    bad.write_bytes(b"PK not really a zip")
    assert window.open_path(bad) == "cancelled"
    assert "bad.handoff" in window.banner.text.text()
    assert window.project.prompt == "a red circle on a blue background"


def test_hostile_files_are_refused_with_one_line(window, tmp_path):
    import json
    import zipfile

    from tests.test_bounds import png_header_only

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    assert window.open_path(bomb) == "rejected"  # from its header: no pixel is decoded
    assert "bomb.png is 20000x20000 (400 MP), more than the 67 MP" in window.banner.text.text()
    odd = tmp_path / "odd.handoff"
    with zipfile.ZipFile(odd, "w") as z:
        z.writestr("project.json", json.dumps({"format": "handoff-project", "project": window.project.to_dict(),
                                               "history": {"not": "a list"}}))
    assert window.open_path(odd) == "cancelled"
    assert "odd.handoff: history must be a list, not a table" in window.banner.text.text()
    assert window.project.prompt == "a red circle on a blue background" and not window.modified


def test_autosave_is_offered_back_after_a_crash(qtbot, with_models, answers):
    from gui.main_window import MainWindow

    project = default_project()
    project.prompt = "work in progress"
    Document(project, None, [fake_run()]).write_autosave()
    assert document.begin_session() is False  # no lock before: a clean previous exit
    assert document.begin_session() is True  # the lock was left behind: a crash
    w = MainWindow()
    qtbot.addWidget(w)
    w.ask = lambda title, text: (answers.asked.append(title), True)[1]
    assert w.offer_recovery()
    assert w.project.prompt == "work in progress" and len(w.runs) == 1
    assert w.modified and w.windowTitle() == "Handoff — untitled*"
    w.set_modified(False)
    w.close()
    assert document.begin_session() is False  # closing cleanly removed the lock


def test_autosave_timer_writes_only_when_changed(window, qtbot):
    assert window.autosave() is None
    assert not document.autosave_file().exists()  # nothing changed yet
    window.prompt_editor.prompt.setPlainText("edited")
    finish(qtbot, window.autosave())  # a task of the window: the write on a worker thread
    assert document.autosave_file().is_file()
    assert read_project(document.autosave_file())[0].prompt == "edited"


def test_compare_view_save_copy_zoom_and_modes(window, tmp_path):
    from PySide6.QtGui import QGuiApplication

    run = fake_run()
    window.runs.append(run)
    window.compare.set_runs(window.runs)
    cv = window.compare
    assert cv.left_pick.currentText() == "refiner input" and cv.right_pick.currentText() == "refiner output"
    cv.compare_stage("refiner")
    assert cv.canvas.left is qimage_of(run.stages[1].input_image)
    cv.one_button.click()
    assert cv.canvas.effective_zoom() == 1.0 and cv.zoom_label.text() == "100%"
    center = cv.canvas.center
    cv.canvas.pan(10, 0)
    assert cv.canvas.center.x() == center.x() - 10  # one pan moves both panes: one centre
    cv.mode.setCurrentText("Side by side")
    assert len(cv.canvas.panes()) == 2 and not cv.wipe_slider.isVisibleTo(cv)
    cv.fit_button.click()
    assert cv.canvas.zoom is None
    cv.canvas.grab()  # paints without error in both modes
    out = tmp_path / "shown.png"
    assert cv.save_shown(str(out)) and QImage(str(out)).pixelColor(0, 0).name() == "#00ff00"
    cv.copy_shown()
    assert QGuiApplication.clipboard().image().size().toTuple() == run.stages[1].image.size


def test_the_command_line_notes_the_init_size_the_window_warns_of(window, tmp_path, capsys):
    """core.init_size speaks for both: `inspect` notes what the window's init-size row says."""
    from core import project_file
    from core.cli import main

    window.set_init_image(make_png(tmp_path / "photo.png", (200, 150)))
    assert window.init_size_note.isVisibleTo(window) and window.snap_init.text() == "Use 72×56"
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(window.project.copy()))
    assert main(["inspect", str(path)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("handoff: note:")]
    assert notes == [f"handoff: note: {window.init_size_note.text()} (the same shape at that area: 72x56)"]


# ---------------------------------------------------------------- under qasync's loop, as the app runs


def test_save_is_a_coroutine_that_writes_off_the_gui_thread(window, app_loop, answers, tmp_path, monkeypatch):
    """File > Save As under the loop gui/app.py runs: the write happens on a worker thread
    while the window goes on (an edit made meanwhile), and that edit keeps the document
    modified: the file holds the project as it was when the save began."""
    import asyncio
    import threading

    from core import document as doc
    from tests.qasync_helpers import until

    real_write = doc.write_snapshot
    go, writing, threads = threading.Event(), threading.Event(), []

    def write_when_told(path, snapshot):  # the real write, held until the test has edited
        threads.append(threading.current_thread())
        writing.set()
        go.wait(60)
        return real_write(path, snapshot)

    monkeypatch.setattr(doc, "write_snapshot", write_when_told)
    answers.save_path = tmp_path / "mine.handoff"

    async def scenario():
        window.prompt_editor.prompt.setPlainText("saved words")
        task = window.start_save(ask_where=True)
        await until(writing.is_set)
        window.prompt_editor.prompt.setPlainText("typed while it saved")  # the GUI thread is free
        go.set()
        return await task

    assert app_loop.run(scenario()) is True
    assert threads and threads[0] is not threading.main_thread()
    assert read_project(answers.save_path)[0].prompt == "saved words"
    assert window.path == answers.save_path and window.modified  # the later edit is not in the file
    assert window.settings.recent_files[0] == str(answers.save_path)
    assert not any(not t.done() for t in asyncio.all_tasks(app_loop.loop))


def test_a_project_opened_during_a_save_is_not_taken_for_the_saved_one(window, app_loop, answers, tmp_path,
                                                                       monkeypatch):
    import threading

    from core import document as doc
    from tests.qasync_helpers import until

    real_write = doc.write_snapshot
    go, writing = threading.Event(), threading.Event()

    def write_when_told(path, snapshot):
        writing.set()
        go.wait(60)
        return real_write(path, snapshot)

    monkeypatch.setattr(doc, "write_snapshot", write_when_told)
    answers.save_path = tmp_path / "first.handoff"
    answers.save_changes = "discard"

    async def scenario():
        window.prompt_editor.prompt.setPlainText("the first project")
        task = window.start_save(ask_where=True)
        await until(writing.is_set)
        window.new_project()  # another project in the window while the first is written
        go.set()
        return await task

    assert app_loop.run(scenario()) is True
    assert read_project(answers.save_path)[0].prompt == "the first project"
    assert window.path is None and window.windowTitle() == "Handoff — untitled"  # the new one is not "first"


def test_dropped_image_recipe_is_read_off_the_gui_thread_then_asked(window, app_loop, answers, tmp_path, monkeypatch):
    import threading

    from PIL import Image

    import core.metadata
    from core.metadata import save_png

    recipe = default_project()
    recipe.prompt = "a dropped recipe"
    png = save_png(Image.new("RGB", (64, 64), "yellow"), tmp_path / "made.png", recipe, 1)
    real_read, threads = core.metadata.read_recipe, []

    def read_recipe(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_read(*args, **kwargs)

    monkeypatch.setattr(core.metadata, "read_recipe", read_recipe)
    answers.yes = True

    async def scenario():
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(png))])
        window.dropEvent(QDropEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
        [task] = window.tasks.pending
        return await task

    assert app_loop.run(scenario()) == "recipe"
    assert len(threads) == 1 and threads[0] is not threading.main_thread()  # read once, on a worker thread
    assert answers.asked == ["Restore recipe?"]  # then asked on the GUI thread
    assert window.project.prompt == "a dropped recipe"


def test_closing_the_window_cancels_its_autosave_task(qtbot, with_models, app_loop, monkeypatch):
    import asyncio
    import threading

    from core import document as doc
    from gui.main_window import MainWindow
    from tests.qasync_helpers import until

    go, writing = threading.Event(), threading.Event()
    real = doc.write_autosave

    def held(snapshot):
        writing.set()
        go.wait(60)
        return real(snapshot)

    monkeypatch.setattr(doc, "write_autosave", held)
    w = MainWindow()  # (app_loop keeps the app from quitting as its last window closes)
    qtbot.addWidget(w)

    async def scenario():
        w.show()
        w.prompt_editor.prompt.setPlainText("edited")
        task = w.autosave()
        await until(writing.is_set)
        w.set_modified(False)  # no question
        w.close()
        asked_to_stop = task.cancelling() > 0
        go.set()  # (the write on the worker thread finishes: it is atomic, and the loop joins it)
        await asyncio.gather(task, return_exceptions=True)
        return asked_to_stop, task

    asked_to_stop, task = app_loop.run(scenario())
    assert asked_to_stop and task.cancelled() and not w.isVisible()
    assert w._autosave_dirty  # the next autosave (or the quit's) is not skipped
