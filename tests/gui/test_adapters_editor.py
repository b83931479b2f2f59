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
    offered = [ad.library_loras.itemData(i) for i in range(ad.library_loras.count())]
    assert offered == [None, str(xl)]
    ad._pick_library_lora(1)
    assert [lo.ref for lo in window.project.stages[0].loras] == [str(xl)]
