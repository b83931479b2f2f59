"""The stage editor's transformer file and quantize fields write the stage, and show a
loaded project's values."""
from __future__ import annotations


def test_transformer_file_and_quantize_edit_the_stage(window, tmp_path):
    ed = window.stage_list.editor
    window.stage_list.list.setCurrentRow(1)
    stage = window.project.stages[1]
    gguf = tmp_path / "unet" / "z-image-turbo-Q8_0.gguf"
    ed.transformer.setText(str(gguf))
    ed.transformer.editingFinished.emit()
    ed.quantize.setCurrentIndex(ed.quantize.findData("fp8"))
    assert stage.transformer == str(gguf) and stage.quantize == "fp8"
    ed.transformer.setText("  ")
    ed.transformer.editingFinished.emit()
    assert stage.transformer is None
    # A loaded project's values are shown, and the other stage keeps its own.
    stage.transformer, stage.quantize = "/models/other.safetensors", "int8"
    window.stage_list.list.setCurrentRow(0)
    assert ed.transformer.text() == "" and ed.quantize.currentData() == "none"
    window.stage_list.list.setCurrentRow(1)
    assert ed.transformer.text() == "/models/other.safetensors" and ed.quantize.currentData() == "int8"
