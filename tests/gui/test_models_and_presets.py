"""Presets, run settings, the model library dialog and the stage position warnings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from core import demo, presets
from core import model_library as ml
from tests.fake_hub import GATED_SD, TINY_SD, go_offline, serving_tiny_sd
from tests.qasync_helpers import finish

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests import tiny_pipelines as tp

    return tp.build_sd(tmp_path_factory.mktemp("models-sd") / "tiny-sd", seed=0)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_sd) -> Path:
    """ComfyUI's models folder: an exported SD checkpoint, a LoRA and a FLUX transformer."""
    from safetensors.numpy import save_file

    from tests.ldm_export import export_ldm

    root = tmp_path_factory.mktemp("ComfyUI") / "models"
    export_ldm(tiny_sd, root / "checkpoints" / "tiny-sd15.safetensors")
    (root / "loras").mkdir()
    save_file({"lora_unet_down_blocks_0.alpha": np.zeros(1, np.float32)},
              str(root / "checkpoints" / "detail-lora.safetensors"))
    (root / "diffusion_models").mkdir()
    save_file({"double_blocks.0.img_attn.qkv.weight": np.zeros((2, 2), np.float32)},
              str(root / "diffusion_models" / "flux1-dev.safetensors"))
    return root


def _rows(dialog) -> dict[str, list[str]]:
    from gui.models_dialog import REF  # the rows are keyed by their reference

    t = dialog.table
    return {t.item(r, REF).text(): [t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())}


def _combo_items(window) -> list[str]:
    combo = window.stage_list.editor.model
    return [combo.itemText(i) for i in range(combo.count())]


# ---------------------------------------------------------------- presets


def test_a_preset_fills_the_stages_after_the_unsaved_question(window, answers):
    window.prompt_editor.prompt.setPlainText("my own prompt")
    assert window.modified
    answers.save_changes = "cancel"
    window.preset_actions["flux2-zturbo"].trigger()
    assert [s.model for s in window.project.stages] == [demo.BASE, demo.REFINER]  # kept
    answers.save_changes = "discard"
    window.preset_actions["flux2-zturbo"].trigger()
    assert answers.asked == ["save changes", "save changes"]
    p = window.project
    assert [s.model for s in p.stages] == [presets.FLUX2_DEV, presets.Z_IMAGE_TURBO]
    assert window.stage_list.list.count() == 2 and window.path is None and not window.modified
    assert window.prompt_editor.prompt.toPlainText() == presets.PROMPT
    assert window.problems_now() == [], window.problems_now()
    # Every preset loads; all but the custom slot are ready to run.
    for key, preset in presets.PRESETS.items():
        assert window.new_from_preset(key)
        assert [s.model for s in window.project.stages] == [s.model for s in preset.project().stages]
        assert bool(window.problems_now()) == (not preset.complete), (key, window.problems_now())


# ---------------------------------------------------------------- run settings


def test_memory_and_precision_change_the_project_and_survive_save_and_reopen(window, answers, tmp_path):
    rs = window.run_settings
    assert (rs.memory.currentData(), rs.precision.currentData()) == ("auto", "auto")
    assert "one at a time if the largest fits" in rs.memory.toolTip()
    rs.set_memory_policy("offload")
    rs.set_dtype("bf16")
    assert (window.project.memory_policy, window.project.dtype) == ("offload", "bf16")
    assert window.modified and rs.memory.currentText() == "CPU offload"
    assert "system RAM" in rs.memory.toolTip() and "Ampere" in rs.precision.toolTip()
    answers.save_path = tmp_path / "run.handoff"
    assert window.save()
    window.new_project()
    assert (rs.memory.currentData(), rs.precision.currentData()) == ("auto", "auto")
    assert window.open_project_file(answers.save_path)
    assert (window.project.memory_policy, window.project.dtype) == ("offload", "bf16")
    assert (rs.memory.currentData(), rs.precision.currentData()) == ("offload", "bf16")
    assert not window.modified


# ---------------------------------------------------------------- the model library


def test_library_adds_a_folder_and_a_comfyui_scan(window, qtbot, tiny_sd, comfy):
    from core import paths

    dialog = window.open_models()
    assert dialog.isVisible()
    rows = _rows(dialog)
    assert rows[presets.FLUX2_DEV][1:5] == ["FLUX.2", "base and refine", "preset", "no"]
    dialog.choose_folder = lambda: str(tiny_sd)
    entry = dialog.add_folder()
    assert entry is not None and entry.family == "sd"
    assert _rows(dialog)[str(tiny_sd)][:5] == ["tiny-sd", "Stable Diffusion 1.x/2.x", "base and refine",
                                             "added by you", "yes"]
    dialog.choose_comfyui_folder = lambda: str(comfy.parent)  # ComfyUI's own folder works too
    found = finish(qtbot, dialog.start_comfyui())
    assert len(found) == 3 and "3 file(s) found" in dialog.status.text() and "1 usable" in dialog.status.text()
    rows = _rows(dialog)
    ckpt = str(comfy / "checkpoints" / "tiny-sd15.safetensors")
    assert rows[ckpt][:4] == ["tiny-sd15", "Stable Diffusion 1.x/2.x", "base and refine", "ComfyUI folder"]
    lora_row = dialog.row_of(str(comfy / "checkpoints" / "detail-lora.safetensors"))
    assert dialog.table.item(lora_row, 1).text() == "unknown"
    assert "LoRAs" in dialog.table.item(lora_row, 1).toolTip()
    flux = rows[str(comfy / "diffusion_models" / "flux1-dev.safetensors")]
    assert flux[1] == "Flux.1" and "needs a base pipeline" in flux[2]
    # The stage's model combo offers what a stage can take, and nothing else.
    items = _combo_items(window)
    assert str(tiny_sd) in items and ckpt in items and presets.FLUX2_DEV in items
    assert not any("lora" in i or "flux1-dev" in i for i in items)
    # Kept in the settings file, beside the window's own settings.
    stored = json.loads(paths.settings_file().read_text())["models"]["entries"]
    assert {str(tiny_sd), ckpt} <= {e["ref"] for e in stored}
    # Remove one.
    dialog.select(str(tiny_sd))
    assert dialog.remove_selected()
    assert str(tiny_sd) not in _rows(dialog) and str(tiny_sd) not in _combo_items(window)
    dialog.close()


def test_the_window_takes_a_models_folder_of_clip_vision_alone(window, qtbot, tmp_path):
    from safetensors.numpy import save_file

    # Kept apart from ComfyUI (extra_model_paths.yaml): only clip_vision/, one encoder file.
    shared = tmp_path / "shared-models"
    (shared / "clip_vision").mkdir(parents=True)
    save_file({"vision_model.post_layernorm.weight": np.ones(4, dtype=np.float32)},
              str(shared / "clip_vision" / "clip_vision_h.safetensors"))
    dialog = window.open_models()
    found = finish(qtbot, dialog.add_comfyui(shared))
    assert [(e.kind, e.name) for e in found] == [(ml.CLIP_VISION_KIND, "clip_vision_h")]
    assert "1 file(s) found" in dialog.status.text() and "1 adapter(s)" in dialog.status.text()
    assert ml.ModelLibrary.load().folders == [str(shared.resolve())]
    dialog.close()


def test_choosing_a_library_checkpoint_sets_the_stage_and_its_size_rules(window, qtbot, comfy):
    dialog = window.open_models()
    finish(qtbot, dialog.add_comfyui(comfy))
    ckpt = str(comfy / "checkpoints" / "tiny-sd15.safetensors")
    combo = window.stage_list.editor.model
    window.stage_list.list.setCurrentRow(0)
    combo.activated.emit(combo.findText(ckpt))
    assert window.project.stages[0].model == ckpt
    assert window.stage_multiples()[0] == 8  # SD's multiple, read from the checkpoint's header
    assert window.stage_list.editor.position_note.isHidden()


@pytest.fixture
def hub(tiny_sd, tmp_path, monkeypatch):
    with serving_tiny_sd(tiny_sd, monkeypatch, tmp_path / "hf-cache") as h:
        yield h


def test_a_cached_hub_id_needs_no_download(window, hub, monkeypatch):
    from core.downloads import download_model

    download_model(TINY_SD)
    go_offline(monkeypatch)  # and it works with no network
    dialog = window.open_models()
    dialog.download = lambda repo_id: pytest.fail(f"{repo_id} is cached: no download expected")
    dialog.ask_hub_id = lambda: TINY_SD
    entry = dialog.add_hub_id()
    assert entry is not None and entry.family == "sd" and "no download needed" in dialog.status.text()
    assert _rows(dialog)[TINY_SD][1:5] == ["Stable Diffusion 1.x/2.x", "base and refine", "added by you", "yes"]
    assert TINY_SD in _combo_items(window)
    # Offline and not cached: core's words, and no download attempt.
    assert dialog.add_hub_id("fake-org/elsewhere") is None
    assert "offline mode is on" in dialog.status.text()


def _answer_download_dialogs():
    """Close a download dialog that shows an error; give up on one that hangs."""
    from gui.download_dialog import DownloadDialog

    def poll():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, DownloadDialog) and w.isVisible() and w.error is not None:
                w.reject()
        timer_alive[0] -= 1
        if timer_alive[0] > 0:
            QTimer.singleShot(50, poll)
        else:
            for w in QApplication.topLevelWidgets():
                if isinstance(w, DownloadDialog) and w.isVisible():
                    w._cancel.set()

    timer_alive = [TIMEOUT_MS // 50]
    QTimer.singleShot(50, poll)
    return timer_alive


def test_an_uncached_hub_id_goes_through_the_download_dialog(window, hub):
    dialog = window.open_models()
    guard = _answer_download_dialogs()
    try:
        entry = dialog.add_hub_id(TINY_SD)
        assert entry is not None and entry.family == "sd" and "downloaded" in dialog.status.text()
        assert any(r.path.endswith("diffusion_pytorch_model.safetensors") for r in hub.gets())
        assert _rows(dialog)[TINY_SD][4] == "yes"
        # A gated repo: the download dialog says what to do, and nothing is added.
        assert dialog.add_hub_id(GATED_SD) is None
        assert "not added" in dialog.status.text() and "accept its licence" in dialog.status.text()
        assert GATED_SD not in _rows(dialog)
    finally:
        guard[0] = 0


def test_a_folder_scan_is_a_task_on_the_app_loop_that_closing_the_library_cancels(window, app_loop, comfy,
                                                                               monkeypatch):
    """Under the loop gui/app.py runs: the scan reads the folder on a worker thread and the
    library fills in afterwards; a scan the user walks away from (closing the library)
    is cancelled and adds nothing."""
    import asyncio
    import threading

    from core import model_library as ml
    from tests.qasync_helpers import until

    real_scan, threads, hold = ml.scan_folder, [], threading.Event()
    hold.set()

    def scan(folder):
        threads.append(threading.current_thread())
        hold.wait(60)
        return real_scan(folder)

    monkeypatch.setattr(ml, "scan_folder", scan)
    ckpt = str(comfy / "checkpoints" / "tiny-sd15.safetensors")

    async def scenario():
        dialog = window.open_models()
        dialog.choose_comfyui_folder = lambda: str(comfy)
        task = dialog.start_comfyui()
        assert "Scanning" in dialog.status.text() and ckpt not in _rows(dialog)  # not yet: it runs on
        found = await task
        assert ckpt in _rows(dialog) and "3 file(s) found" in dialog.status.text()
        # Again, walked away from: closed while the worker thread reads.
        dialog.library.remove(ckpt)
        dialog.refresh()
        hold.clear()
        task = dialog.start_comfyui()
        await until(lambda: len(threads) == 2)
        dialog.close()
        hold.set()
        await asyncio.gather(task, return_exceptions=True)
        return found, task, dialog

    found, task, dialog = app_loop.run(scenario())
    assert len(found) == 3 and all(t is not threading.main_thread() for t in threads)
    assert task.cancelled() and ckpt not in _rows(dialog)


def test_the_presets_menu_asks_the_hub_for_sizes_off_the_gui_thread(window, qtbot, monkeypatch):
    """Showing the Presets menu asks the Hub (a task of the window, each query on a worker
    thread) for the download sizes it does not know, and the menu then says them."""
    import threading

    from core import model_library as ml

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(ml, "_sizes", {})
    threads = []

    def hub_size(repo_id):
        threads.append(threading.current_thread())
        ml._sizes[repo_id] = 3 * 1024 ** 3
        return ml._sizes[repo_id]

    monkeypatch.setattr(ml, "hub_download_size", hub_size)
    window.presets_menu.aboutToShow.emit()
    task = window.tasks.pending[0]
    assert not any("GiB)" in a.text() for a in window.preset_actions.values())  # not asked yet
    finish(qtbot, task)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert any("needs a download (" in a.text() and "GiB)" in a.text() for a in window.preset_actions.values())
    assert window.ask_preset_sizes() is None  # asked once a session


# ---------------------------------------------------------------- positions


def test_the_stage_editor_warns_when_a_model_cannot_take_its_position(window):
    editor = window.stage_list.editor
    window.stage_list.list.setCurrentRow(1)
    assert editor.position_note.isHidden()
    # The SDXL refiner first: it cannot start a chain.
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.remove_stage()
    assert window.project.stages[0].model == demo.REFINER
    assert not editor.position_note.isHidden()
    assert "cannot start a chain" in editor.position_note.text()
    assert any("cannot start a chain" in p for p in window.problems_now())
    assert not window.generate_button.isEnabled()
    # FLUX.2 as a refiner (known from the presets, nothing downloaded): it refines through its
    # text-to-image pipeline, so no note.
    window.stage_list.add_stage()  # a refiner stage after the first
    window.stage_list.list.setCurrentRow(0)
    editor.model._commit(demo.BASE)
    window.stage_list.list.setCurrentRow(1)
    editor.model._commit(presets.FLUX2_DEV)
    assert window.project.stages[1].model == presets.FLUX2_DEV
    assert editor.position_note.isHidden()
    assert [p for p in window.problems_now() if "cannot" in p] == []
    # FLUX.2 first is fine.
    window.stage_list.move_stage(-1)
    assert editor.position_note.isHidden()


def test_download_button_fetches_a_listed_hub_model(window, hub):
    from core import model_library as ml

    dialog = window.open_models()
    dialog.library.add(ml.LibraryEntry(name="tiny", ref=TINY_SD, source="user"))
    dialog.refresh()
    dialog.select(TINY_SD)
    assert dialog.download_button.isEnabled()
    guard = _answer_download_dialogs()
    try:
        dialog.download_button.click()
    finally:
        guard[0] = 0
    assert _rows(dialog)[TINY_SD][4] == "yes" and "downloaded" in dialog.status.text()
    dialog.select(TINY_SD)
    assert not dialog.download_button.isEnabled()  # in the cache now: nothing to download
