"""The stage editor's adapters: LoRAs checked against the stage's family from their
header, a ControlNet whose control slot takes a drop and whose preview shows the Canny
map as the thresholds move, and IP-Adapter references."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent


def lora_file(path: Path, base_model: str) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 8),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 2)},
              str(path), metadata={"ss_base_model_version": base_model})
    return path


def shapes_image(path: Path) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(im).ellipse((12, 12, 52, 52), fill=(200, 200, 200))
    ImageDraw.Draw(im).rectangle((24, 24, 40, 40), fill=(120, 120, 120))
    im.save(path)
    return path


def test_loras_are_checked_against_the_stage_family(window, tmp_path):
    window.stage_list.list.setCurrentRow(0)  # the demo base: SDXL's layout
    ad = window.stage_list.editor.adapters
    stage = window.project.stages[0]
    assert not ad.add_lora(str(lora_file(tmp_path / "sd15.safetensors", "sd_v1")))
    assert "made for Stable Diffusion 1.x/2.x, not SDXL" in ad.problem.text() and stage.loras == []
    assert ad.add_lora(str(lora_file(tmp_path / "xl.safetensors", "sdxl_base_v1-0")))
    assert [lo.weight for lo in stage.loras] == [1.0] and not ad.problem.isVisibleTo(ad)
    ad.lora_weight.setValue(0.65)
    assert stage.loras[0].weight == 0.65 and "0.65" in ad.loras.item(0).text()
    assert window.windowTitle().endswith("*")
    ad._remove_lora()
    assert stage.loras == []


def test_control_image_drop_and_live_canny_map(window, tmp_path, qtbot):
    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    assert ad.use_controlnet.isEnabled()
    img = shapes_image(tmp_path / "control.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(img))])
    ad.control_slot.dropEvent(QDropEvent(QPoint(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    cn = window.project.stages[0].controlnet
    assert cn is not None and cn.image == str(img.resolve()) and ad.use_controlnet.isChecked()
    shown = ad.control_map.pixmap().toImage()
    assert not shown.isNull()
    # Thresholds above every edge's gradient leave no edge: the map goes black.
    ad.high.setValue(255)
    ad.low.setValue(255)
    assert (cn.low, cn.high) == (255, 255)
    after = ad.control_map.pixmap().toImage()
    assert after != shown
    ad.low.setValue(10)
    ad.high.setValue(30)
    many = ad.control_map.pixmap().toImage()
    white = lambda q: sum(q.pixelColor(x, y).value() > 128 for x in range(q.width()) for y in range(q.height()))
    assert white(many) > white(after)
    ad.preprocessor.setCurrentIndex(ad.preprocessor.findData("none"))
    assert cn.preprocessor == "none" and not ad.low.isEnabled()


def test_a_refining_stage_offers_no_controlnet_or_ip_adapter(window):
    window.stage_list.list.setCurrentRow(1)  # the demo refiner refines
    ad = window.stage_list.editor.adapters
    assert not ad.use_controlnet.isEnabled() and not ad.ip_box.isVisibleTo(ad)
    assert "generates" in ad.use_controlnet.toolTip()


def test_ip_adapter_reference_images_with_scales(window, tmp_path):
    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    ad.ip_model.setText(str(tmp_path / "ip.safetensors"))
    ad._write_ip()
    ad.add_ip_image(str(shapes_image(tmp_path / "ref.png")))
    ad.ip_scale.setValue(0.4)
    (ip,) = window.project.stages[0].ip_adapters
    assert (ip.model, ip.scale) == (str(tmp_path / "ip.safetensors"), 0.4) and Path(ip.image).name == "ref.png"


def test_the_library_offers_only_adapters_that_fit_the_stage(window, tmp_path):
    from core.model_library import LibraryEntry

    xl = lora_file(tmp_path / "xl.safetensors", "sdxl_base_v1-0")
    sd = lora_file(tmp_path / "sd.safetensors", "sd_v1")
    window.library.add_many([LibraryEntry("xl", str(xl), "comfyui", "sdxl", "lora"),
                             LibraryEntry("sd", str(sd), "comfyui", "sd", "lora")])
    window.library_changed()
    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    assert offered(ad.library_loras) == [None, "builtin:demo-lora", str(xl)]  # the shipped one first, then the library's files
    ad._pick_library_lora(2)
    assert [lo.ref for lo in window.project.stages[0].loras] == [str(xl)]
    # IP-Adapters have a picker too: the one chosen goes in the IP-Adapter field.
    ip = tmp_path / "ip-adapter_sdxl.safetensors"
    window.library.add(LibraryEntry("ip sdxl", str(ip), "comfyui", None, "ip-adapter"))
    window.library_changed()
    window.stage_list.list.setCurrentRow(0)
    assert offered(ad.library_ip_adapters) == [None, str(ip)] and ad.library_ip_adapters.isEnabled()
    ad._pick_library_ip_adapter(1)
    assert ad.ip_model.text() == str(ip) and "IP-Adapter not found" in ad.problem.text()  # (no file made here)


def offered(combo) -> list:
    return [combo.itemData(i) for i in range(combo.count())]


def test_the_shipped_adapters_are_offered_on_the_stages_they_fit(window):
    """A new user's library holds only the builtins: the demo base's stage is offered the
    demo LoRA and ControlNet by their builtin names (not greyed out); the refiner, of
    another family, is not offered them."""
    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    assert offered(ad.library_loras) == [None, "builtin:demo-lora"] and ad.library_loras.isEnabled()
    assert offered(ad.library_controlnets) == [None, "builtin:demo-controlnet"] and ad.library_controlnets.isEnabled()
    assert ad.library_loras.itemText(1) == "demo lora (SDXL, built in)"
    assert "loads offline" in ad.library_loras.itemData(1, Qt.ToolTipRole)
    ad._pick_library_controlnet(1)
    cn = window.project.stages[0].controlnet
    assert cn is not None and cn.model == "builtin:demo-controlnet" and not ad.problem.isVisibleTo(ad)
    ad._pick_library_lora(1)
    assert [lo.ref for lo in window.project.stages[0].loras] == ["builtin:demo-lora"]
    window.stage_list.list.setCurrentRow(1)
    assert "builtin:demo-lora" not in offered(ad.library_loras)
    assert not ad.library_loras.isEnabled() and "none in the library fits" in ad.library_loras.itemText(0)
    # The shipped upscaler is among what a stage that resizes can take.
    assert "builtin:demo-upscaler" in offered(window.stage_list.editor.upscaler)


def test_adapter_fields_take_a_typed_reference_and_say_what_is_wrong(window, tmp_path, qtbot):
    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    stage = window.project.stages[0]
    # A LoRA typed (or pasted) and Enter: the builtin is added; the field empties for the next one.
    ad.lora_ref.setText("builtin:demo-lora")
    qtbot.keyClick(ad.lora_ref, Qt.Key_Return)
    assert [(lo.ref, lo.weight) for lo in stage.loras] == [("builtin:demo-lora", 1.0)] and ad.lora_ref.text() == ""
    assert not ad.problem.isVisibleTo(ad)
    # Bad references are refused, each with what is wrong with it.
    for ref, says in (("builtin:demo-lroa", "there is no builtin adapter 'demo-lroa' (builtin adapters: "),
                      (str(tmp_path / "gone.safetensors"), "LoRA not found: '"),
                      ("builtin:demo-controlnet", "holds no LoRA tensors")):
        ad.lora_ref.setText(ref)
        ad.add_lora_ref_button.click()
        assert says in ad.problem.text() and ad.problem.isVisibleTo(ad), ref
        assert ad.lora_ref.text() == ref and len(stage.loras) == 1  # kept for fixing, nothing added
    # A Hub file not downloaded yet is taken by its shape, with a note that it downloads on the first run.
    ad.lora_ref.setText("someone/their-lora/lora.safetensors")
    ad.add_lora_ref_button.click()
    assert stage.loras[-1].ref == "someone/their-lora/lora.safetensors" and not ad.problem.isVisibleTo(ad)
    assert "not downloaded yet" in ad.notice.text() and ad.notice.isVisibleTo(ad)
    # The ControlNet and IP-Adapter fields check what is typed when editing finishes.
    ad.use_controlnet.setChecked(True)
    for ref, says in (("builtin:demo-controlnet", ""), (str(tmp_path / "no-cn"), "ControlNet "),
                      ("builtin:demo-cn", "there is no builtin adapter 'demo-cn'")):
        ad.cn_model.setText(ref)
        ad.cn_model.editingFinished.emit()
        assert stage.controlnet.model == ref
        assert says in ad.problem.text() and ad.problem.isVisibleTo(ad) == bool(says), ref
    ad.ip_model.setText(str(tmp_path / "ip.safetensors"))
    ad.ip_model.editingFinished.emit()
    assert "IP-Adapter not found: '" in ad.problem.text() and ad.problem.isVisibleTo(ad)


def test_the_model_library_lists_the_shipped_adapters_offline_ready(window):
    from gui.models_dialog import ModelsDialog

    dialog = ModelsDialog(window.library, window)
    rows = {dialog.table.item(r, 0).text(): [dialog.table.item(r, c).text() for c in range(dialog.table.columnCount())]
            for r in range(dialog.table.rowCount())}
    from gui.models_dialog import OFFLINE, SOURCE

    source, ready = SOURCE, OFFLINE
    for name, ref in (("demo lora", "builtin:demo-lora"), ("demo controlnet", "builtin:demo-controlnet"),
                      ("demo upscaler", "builtin:demo-upscaler")):
        assert rows[name][source] == "built in" and rows[name][ready] == "yes" and rows[name][-1] == ref
        row = dialog.row_of(ref)
        assert dialog.table.item(row, 0).foreground().color().name() != "#b00020"  # nothing wrong with it
    assert rows["demo lora"][1] == "SDXL" and "an adapter (lora) for SDXL stages" in rows["demo lora"]


def test_a_saved_project_keeps_its_control_and_reference_images_when_moved(window, tmp_path, answers, qtbot):
    """Save, move the project file to another folder, delete the images it was made from,
    open it: the ControlNet's control image and the IP-Adapter's reference are there, shown
    in the editor, and the stage's adapters check clean."""
    import shutil

    from core.project import adapter_problems

    window.stage_list.list.setCurrentRow(0)
    ad = window.stage_list.editor.adapters
    ad.use_controlnet.setChecked(True)
    ad.cn_model.setText("builtin:demo-controlnet")
    ad.cn_model.editingFinished.emit()
    control, ref = shapes_image(tmp_path / "control.png"), shapes_image(tmp_path / "ref.png")
    ad.set_control_image(str(control))
    ad.add_ip_image(str(ref))
    answers.save_path = tmp_path / "mine.handoff"
    assert window.save()
    (tmp_path / "elsewhere").mkdir()
    moved = shutil.move(str(answers.save_path), str(tmp_path / "elsewhere" / "mine.handoff"))
    control.unlink()
    ref.unlink()
    window.new_project()
    with qtbot.waitSignal(window.projectLoaded):
        assert window.open_path(Path(moved)) == "project"
    stage = window.project.stages[0]
    assert Path(stage.controlnet.image).is_file() and Path(stage.controlnet.image).name == "control.png"
    assert Path(stage.ip_adapters[0].image).is_file() and Path(stage.ip_adapters[0].image).name == "ref.png"
    window.stage_list.list.setCurrentRow(1)
    window.stage_list.list.setCurrentRow(0)
    assert not ad.control_slot.pixmap().isNull() and not ad.control_map.pixmap().isNull()
    assert adapter_problems(stage, "stage 1", generates=True) == []
