"""Restoring a recipe from an image never overwrites the open project's file: the recipe is
a new, untitled document (asked about unsaved changes first), so Ctrl+S asks where to save
it; the restore question has Cancel apart from "Use as init image"."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from core import demo
from core.defaults import default_project
from core.document import read_project
from core.metadata import save_png
from gui.window_files import RESTORE_CHOICES
from tests.interop_helpers import in_library, png_with, sample
from tests.tiny_adapters import save_lora

A1111_PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"


def a1111_png(folder: Path) -> Path:
    """An Automatic1111 PNG, its `parameters` chunk a real sample (SDXL, one pass)."""
    return png_with(folder / "00001-42.png", {"parameters": sample("a1111/wiki-hero.txt")}, size=(64, 64))


def saved_project_with_a_lora(window, folder: Path, answers) -> Path:
    """The window's project, with a LoRA on its base stage, saved as a .handoff file."""
    import torch

    lora = save_lora({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 8),
                      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 2)},
                     folder / "style.safetensors", {"ss_base_model_version": "sdxl_base_v1-0"})
    window.stage_list.list.setCurrentRow(0)
    assert window.stage_list.editor.adapters.add_lora(str(lora))
    answers.save_path = folder / "mine.handoff"
    assert window.save() and window.path == answers.save_path
    return answers.save_path


def press_ctrl_s(window, qtbot) -> None:
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)
    # File > Save is a task of the window (the write on a worker thread): wait for it.
    qtbot.waitUntil(lambda: not window.tasks.pending, timeout=60_000)


def test_ctrl_s_after_a_restore_never_overwrites_the_saved_project(window, qtbot, tmp_path, answers):
    mine = saved_project_with_a_lora(window, tmp_path, answers)
    saved = mine.read_bytes()
    assert window.open_path(a1111_png(tmp_path)) == "recipe"
    assert answers.asked == ["Restore recipe?"]  # nothing unsaved: no second question
    assert window.project.prompt == A1111_PROMPT and len(window.project.stages) == 1
    assert window.path is None and window.windowTitle() == "Handoff — untitled" and window.runs == []
    # Ctrl+S asks where; cancelling that writes nothing anywhere.
    where: list[Path | None] = []
    window.choose_save_path = lambda: (where.append(answers.save_path), answers.save_path)[1]
    answers.save_path = None
    press_ctrl_s(window, qtbot)
    assert where == [None] and mine.read_bytes() == saved and window.path is None
    # Given a new name, Ctrl+S writes the restored recipe there, and only there.
    answers.save_path = tmp_path / "astronaut.handoff"
    press_ctrl_s(window, qtbot)
    assert len(where) == 2 and window.path == answers.save_path and window.windowTitle() == "Handoff — astronaut"
    assert read_project(answers.save_path)[0].prompt == A1111_PROMPT
    assert mine.read_bytes() == saved
    project, _ = read_project(mine)
    assert [lo.ref for lo in project.stages[0].loras] == [str(tmp_path / "style.safetensors")]


def test_cancel_leaves_the_project_and_its_path_untouched(window, tmp_path, answers):
    mine = saved_project_with_a_lora(window, tmp_path, answers)
    before = window.project.to_dict()
    answers.choice = "cancel"
    assert window.open_path(a1111_png(tmp_path)) == "cancelled"
    assert window.project.to_dict() == before and window.project.init_image is None
    assert window.path == mine and not window.modified and window.windowTitle() == "Handoff — mine"


def test_use_as_init_image_keeps_the_project_and_its_path(window, tmp_path, answers):
    mine = saved_project_with_a_lora(window, tmp_path, answers)
    answers.choice = "init"
    png = a1111_png(tmp_path)
    assert window.open_path(png) == "init"
    assert window.project.init_image == str(png.resolve()) and window.project.stages[0].loras
    assert window.path == mine and window.modified


def test_unsaved_changes_are_asked_about_before_the_recipe_replaces_them(window, tmp_path, answers):
    mine = saved_project_with_a_lora(window, tmp_path, answers)
    window.prompt_editor.prompt.setPlainText("my unsaved prompt")
    answers.choice, answers.save_changes = "restore", "cancel"
    assert window.open_path(a1111_png(tmp_path)) == "cancelled"
    assert answers.asked == ["Restore recipe?", "save changes"]
    assert window.project.prompt == "my unsaved prompt" and window.path == mine and window.modified
    # Save: the edit goes to the project's own file, then the recipe is a new document.
    answers.save_changes = "save"
    assert window.open_path(a1111_png(tmp_path)) == "recipe"
    assert read_project(mine)[0].prompt == "my unsaved prompt"
    assert window.project.prompt == A1111_PROMPT and window.path is None and not window.modified


def test_undo_after_a_restore_does_not_bring_the_old_project_or_path_back(window, tmp_path, answers):
    saved_project_with_a_lora(window, tmp_path, answers)
    window.prompt_editor.prompt.setPlainText("an edit before the restore")
    answers.save_changes = "discard"
    assert window.open_path(a1111_png(tmp_path)) == "recipe"
    assert not window.history.stack.canUndo()
    window.undo_action.trigger()
    assert window.project.prompt == A1111_PROMPT and window.path is None
    # Edits of the restored recipe undo within it.
    window.prompt_editor.prompt.setPlainText("an astronaut, edited")
    assert window.history.stack.canUndo()
    window.undo_action.trigger()
    assert window.project.prompt == A1111_PROMPT and window.path is None
    assert window.windowTitle().startswith("Handoff — untitled")


def test_a_handoff_png_restores_as_a_new_document_too(window, tmp_path, answers):
    mine = saved_project_with_a_lora(window, tmp_path, answers)
    recipe = default_project()
    recipe.prompt = "a yellow star"
    png = save_png(Image.new("RGB", (64, 64), "yellow"), tmp_path / "made.png", recipe, 1)
    saved = mine.read_bytes()
    assert window.open_path(png) == "recipe" and window.project.prompt == "a yellow star"
    assert window.path is None and window.document_name() == "untitled"
    answers.save_path = None
    assert not window.save() and mine.read_bytes() == saved


def test_the_restore_question_names_three_answers_and_escape_cancels(window, tmp_path):
    box = window.choice_box("Restore recipe?", "text", RESTORE_CHOICES)
    assert [b.text() for b, _ in box.answers] == ["Restore recipe", "Use as init image", "Cancel"]
    assert box.defaultButton().text() == "Restore recipe" and box.escapeButton().text() == "Cancel"
    assert [box.buttonRole(b) for b, _ in box.answers] == [
        QMessageBox.AcceptRole, QMessageBox.ActionRole, QMessageBox.RejectRole]


def test_choose_gives_the_key_of_the_button_clicked_and_cancel_on_escape(window, qtbot):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    def answer_with(act) -> str:
        QTimer.singleShot(0, lambda: act(QApplication.activeModalWidget()))
        return MainWindow.choose(window, "Restore recipe?", "text", RESTORE_CHOICES)  # the real one, modal

    assert answer_with(lambda box: box.answers[1][0].click()) == "init"
    assert answer_with(lambda box: box.answers[0][0].click()) == "restore"
    assert answer_with(lambda box: qtbot.keyClick(box, Qt.Key_Escape)) == "cancel"
    assert answer_with(lambda box: box.close()) == "cancel"


def comfyui_sdxl_png(folder: Path) -> Path:
    """A ComfyUI PNG whose graph loads sd_xl_base_1.0 and sd_xl_refiner_1.0 by file name."""
    return png_with(folder / "ComfyUI_00001_.png", {"prompt": sample("comfyui/default_graph_sdxl1_0.json")},
                    size=(64, 64))


def test_a_recipe_whose_models_are_missing_says_so_before_the_run(window, tmp_path, answers, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert window.open_path(comfyui_sdxl_png(tmp_path)) == "recipe"
    assert [s.model for s in window.project.stages] == ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]
    # Before any run: the problems area names each model as ComfyUI did, and where to get it.
    shown = window.problems.text()
    assert window.problems.isVisible()
    assert ("• stage 1: model 'sd_xl_base_1.0.safetensors' (as ComfyUI named it) is not a file or folder here, in "
            "your model library or in the Hugging Face cache: add the folder that holds sd_xl_base_1.0.safetensors "
            "with Models > Model Library, or set the stage's model to stabilityai/stable-diffusion-xl-base-1.0 to "
            "download it") in shown
    assert "stage 2: model 'sd_xl_refiner_1.0.safetensors' (as ComfyUI named it)" in shown
    # Generate is off, and says why.
    assert not window.generate_button.isEnabled()
    tip = window.generate_button.toolTip()
    assert "The job cannot start" in tip and "'sd_xl_base_1.0.safetensors' (as ComfyUI named it)" in tip
    assert not window.generate() and not window.runner.busy and window.runs == []
    # The user adds the folder that holds the base: the line points at the library's file.
    base = in_library(tmp_path, "pipeline", "checkpoints/sd_xl_base_1.0.safetensors")
    window.library_changed()  # what Models > Model Library does after a change
    assert f"but your model library has it: set the stage's model to {base}" in window.problems.text()
    # A Hub id that downloads on first use is no problem; offline it is.
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.editor.model._commit("stabilityai/stable-diffusion-xl-base-1.0")
    window.stage_list.list.setCurrentRow(1)
    window.stage_list.editor.model._commit(demo.REFINER)
    assert "stage 1" not in window.problems.text() and "stage 2: model" not in window.problems.text()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window.on_edited()
    assert ("stage 1: stabilityai/stable-diffusion-xl-base-1.0 is not in the local Hugging Face cache and offline "
            "mode is on") in window.problems.text()
    assert not window.generate_button.isEnabled()
    # Models that are here (at their size): nothing said, Generate is back.
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.editor.model._commit(demo.BASE)
    window.resolution.set_size(64, 64)
    assert not window.problems.isVisible() and window.generate_button.isEnabled()
    assert "cannot start" not in window.generate_button.toolTip()


def test_an_opened_project_names_its_missing_models_as_they_are_written(window, tmp_path, answers):
    assert window.open_path(comfyui_sdxl_png(tmp_path)) == "recipe"
    answers.save_path = tmp_path / "cat.handoff"
    assert window.save()
    window.load_project(default_project(), None, [])
    assert window.open_path(answers.save_path) == "project"
    assert "stage 1: model 'sd_xl_base_1.0.safetensors' is not a file or folder here" in window.problems.text()
    assert not window.generate_button.isEnabled()
