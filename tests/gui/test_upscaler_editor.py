"""The stage editor's Upscaler combo: Lanczos, or an upscaler file from the library."""
from __future__ import annotations

from core.model_library import UPSCALER_KIND, LibraryEntry


def test_upscaler_combo_offers_the_librarys_upscalers_where_a_stage_upscales(window, tmp_path):
    up = tmp_path / "upscale_models" / "4x-tiny.pth"
    entries = [LibraryEntry("4x-tiny", str(up), "comfyui", None, UPSCALER_KIND)]
    window.stage_list.set_library(entries)
    ed = window.stage_list.editor
    window.stage_list.list.setCurrentRow(0)
    assert not ed.upscaler.isVisibleTo(window)  # the base generates at the project size
    window.stage_list.list.setCurrentRow(1)
    ed.handoff.setCurrentIndex(ed.handoff.findData("pixel"))
    assert ed.upscaler.isVisibleTo(window)
    assert [ed.upscaler.itemText(i) for i in range(ed.upscaler.count())] == ["Lanczos", "4x-tiny"]
    ed.upscale.setValue(2.0)
    ed.upscaler.setCurrentIndex(1)
    ed.upscaler.activated.emit(1)
    stage = window.project.stages[1]
    assert stage.upscaler == str(up) and stage.upscale == 2.0
    ed.upscaler.setCurrentIndex(0)
    ed.upscaler.activated.emit(0)
    assert stage.upscaler is None
    # A project's own file is listed when it is loaded, so nothing is lost.
    stage.upscaler = "/elsewhere/2x-other.safetensors"
    window.stage_list.list.setCurrentRow(0)
    window.stage_list.list.setCurrentRow(1)
    assert ed.upscaler.currentText() == "2x-other" and ed.upscaler.currentData() == stage.upscaler
