"""Other tools' images in the window: a PNG (or JPEG) with another tool's metadata offers
its recipe, saying which tool made it and what was not mapped; damaged metadata is said,
not dropped; only an image with no recipe at all becomes the init image. File > Export >
ComfyUI workflow writes the chain for ComfyUI."""
from __future__ import annotations

import json

from tests.interop_helpers import png_with, sample, user_comment, with_exif


def asked_texts(window, answers):
    texts: list[str] = []

    def choose(title, text, choices):
        answers.asked.append(title)
        texts.append(text)
        return answers.pick(choices)

    window.choose = choose
    return texts


def test_a_comfyui_png_offers_its_recipe_and_what_it_needs(window, tmp_path, answers):
    texts = asked_texts(window, answers)
    png = png_with(tmp_path / "ComfyUI_00042_.png", {"prompt": sample("comfyui/sd-1.5-lora-0.json")}, size=(64, 64))
    assert window.open_path(png) == "recipe"
    assert answers.asked == ["Restore recipe?"]
    # Its LoRA is the stage's now; the note says the library has no file of that name.
    assert "by ComfyUI" in texts[0] and "LoRA 'epi_noiseoffset2.safetensors' is not in your model library" in texts[0]
    assert window.project.prompt == "masterpiece best quality girl" and window.project.init_image is None
    assert "LoRA" in window.log.toPlainText()
    # No: the picture is the init image instead.
    answers.yes = False
    assert window.open_path(png) == "init"


def test_a_jpeg_with_a1111_exif_restores(window, tmp_path, answers):
    jpg = with_exif(tmp_path / "00012-903543336.jpg", user_comment(sample("a1111/hires-ultrasharp.txt")), "JPEG",
                    size=(64, 64))
    assert window.open_path(jpg) == "recipe"
    assert [s.upscale for s in window.project.stages] == [1.0, 2.0]


def test_damaged_metadata_is_said_not_dropped(window, tmp_path, answers):
    texts = asked_texts(window, answers)
    png = png_with(tmp_path / "broken.png", {"prompt": '{"3": {"class_type": "KSampler", "inputs": {}}}'}, size=(64, 64))
    assert window.open_path(png) == "init"
    assert answers.asked == ["Recipe unreadable"] and "broken.png: ComfyUI prompt" in texts[0]
    answers.yes = False
    assert window.open_path(png) == "cancelled"


def test_only_a_png_without_a_recipe_becomes_the_init_image_unasked(window, tmp_path, answers):
    png = png_with(tmp_path / "photo.png", {"Software": "GIMP"}, size=(64, 64))
    assert window.open_path(png) == "init" and answers.asked == []


def test_export_comfyui_workflow(window, tmp_path):
    from core.interop.comfyui import looks_like_ui

    titles = [a.text() for a in window.menuBar().actions()[0].menu().actions() if a.menu()]
    assert "&Export" in titles
    out = tmp_path / "chain.json"
    assert window.export_comfyui(out)
    workflow = json.loads(out.read_text())
    assert looks_like_ui(workflow) and any(n["type"] == "KSamplerAdvanced" for n in workflow["nodes"])
    # The default chain is Handoff's demo models: the log says ComfyUI has no such files.
    assert [s.model for s in window.project.stages] == ["builtin:demo-base", "builtin:demo-refiner"]
    assert "ComfyUI export: builtin:demo-base is Handoff's built-in demo model" in window.log.toPlainText()


def test_a_comfyui_json_restores_the_recipe_inspect_prints(window, tmp_path, answers, capsys):
    """core.opening tells the window and the command line the same: a graph saved as .json
    carries a recipe; the window offers it (there is no picture to refine) and restores
    what `main.py inspect` prints."""
    from core.cli import main

    graph = tmp_path / "workflow.json"
    graph.write_text(sample("comfyui/sd-1.5-lora-0.json"))
    asked = []
    window.choose = lambda title, text, choices: (asked.append((title, text, [k for k, _ in choices])), "restore")[1]
    assert window.open_path(graph) == "recipe"
    ((title, text, offered),) = asked
    assert title == "Restore recipe?" and offered == ["restore", "cancel"]
    assert "by ComfyUI" in text and "Use as init image" not in text
    assert main(["inspect", str(graph)]) == 0
    assert json.loads(capsys.readouterr().out) == window.project.to_dict()
    assert window.path is None and window.project.init_image is None
