"""What a file handed to Handoff is (core.opening), one verdict for the window's drops and
the command line's inspect, export, run, sweep and batch."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from core import opening, project_file
from core.cli import EXIT_USAGE, main
from core.defaults import default_project
from core.errors import ReadError
from tests.interop_helpers import no_models, png_with, sample


def test_each_kind_of_file_is_told_with_what_the_caller_needs(tmp_path):
    saved = project_file.save(tmp_path / "mine.handoff", project_file.ProjectDocument(default_project()))
    assert opening.what_is(saved).kind == opening.PROJECT  # read when opened, after unsaved work is asked about
    comfy = png_with(tmp_path / "c.png", {"prompt": sample("comfyui/sd-1.5-lora-0.json")}, size=(24, 16))
    what = opening.what_is(comfy, no_models())
    assert (what.kind, what.size, what.imported.tool) == (opening.RECIPE, (24, 16), "ComfyUI")
    assert what.document.project.prompt == "masterpiece best quality girl"
    plain = png_with(tmp_path / "photo.png", {"Software": "GIMP"})
    assert (opening.what_is(plain).kind, opening.what_is(plain).image) == (opening.IMAGE, True)
    Image.new("RGB", (8, 6)).save(tmp_path / "scan.tif")
    assert opening.what_is(tmp_path / "scan.tif").size == (8, 6)
    broken = png_with(tmp_path / "broken.png", {"prompt": '{"3": {"class_type": "KSampler", "inputs": {}}}'})
    what = opening.what_is(broken)
    assert what.kind == opening.DAMAGED_RECIPE and what.why.startswith("broken.png: ComfyUI prompt") and what.image
    graph = tmp_path / "workflow.json"
    graph.write_text(sample("comfyui/sd-1.5-lora-0.json"))
    what = opening.what_is(graph, no_models())
    assert (what.kind, what.image, what.imported.tool) == (opening.RECIPE, False, "ComfyUI")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(default_project().to_dict()))
    assert opening.what_is(recipe).imported.tool == "Handoff"  # a plain recipe names Handoff


def test_what_cannot_be_used_says_why_from_the_header_alone(tmp_path):
    from tests.test_bounds import png_header_only

    def why(path) -> str:
        what = opening.what_is(path)
        assert what.kind == opening.UNUSABLE
        return what.why

    assert why(tmp_path / "gone.png") == f"{tmp_path / 'gone.png'} is not a file"
    (tmp_path / "notes.txt").write_text("hello")
    assert why(tmp_path / "notes.txt") == "notes.txt is not an image or a Handoff project (.handoff)"
    (tmp_path / "fake.png").write_bytes(b"not a png")
    assert why(tmp_path / "fake.png") == "fake.png is not an image or a Handoff project (.handoff)"
    # Past PIL's own bomb limit too, the size is named: no pixel is decoded.
    (tmp_path / "bomb.png").write_bytes(png_header_only(20000, 20000))
    assert why(tmp_path / "bomb.png").startswith("bomb.png is 20000x20000 (400 MP), more than the 67 MP")
    (tmp_path / "broken.json").write_text('{"stages": 7}')
    assert why(tmp_path / "broken.json").startswith("broken.json")


def test_read_document_restores_a_recipe_and_refuses_a_plain_image_saying_what_it_can_be(tmp_path):
    comfy = png_with(tmp_path / "c.png", {"prompt": sample("comfyui/sd-1.5-lora-0.json")})
    assert opening.read_document(comfy, no_models()).source.tool == "ComfyUI"
    plain = png_with(tmp_path / "photo.png", {})
    with pytest.raises(ReadError, match=r"^photo.png: carries no recipe .*; it can be refined as an init image"):
        opening.read_document(plain)
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(ReadError, match=r"^text.png cannot be read as an image"):  # its reader's own words
        opening.read_document(tmp_path / "text.png")


def test_the_command_line_says_what_a_plain_image_is(tmp_path, capsys):
    plain = png_with(tmp_path / "photo.png", {})
    assert main(["inspect", str(plain)]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        f"handoff: photo.png: {project_file.NO_RECIPE}; it can be refined as an init image (generate --init-image)")
