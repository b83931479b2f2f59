"""PNG recipes and the project file: what is saved restores the same project."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core import project_file
from core.interop import a1111, image_text
from core.interop.detect import from_chunks
from core.interop.model_lookup import ModelLookup
from core.metadata import read_recipe, save_png
from core.project import Project, Stage
from core.errors import ProjectError


def recipe() -> Project:
    return Project(prompt="a knight, blue and gold", negative_prompt="blurry, text", width=1152, height=896, seed=77,
                   stages=[Stage("Tongyi-MAI/Z-Image", steps=30, guidance=3.5),
                           Stage("Tongyi-MAI/Z-Image-Turbo", steps=8, guidance=0.0, handoff="pixel", strength=0.15,
                                 prompt_suffix="intricate engravings")])


def test_png_carries_a1111_parameters_and_the_full_recipe(tmp_path):
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "out.png", recipe(), 1)
    chunks = image_text.read_texts(path).chunks
    params = chunks["parameters"]
    # The job, not the last pass alone: the base's prompt, steps, model; the refine as the hires pass.
    assert params.splitlines()[0] == "a knight, blue and gold"
    assert "Negative prompt: blurry, text" in params
    assert "Steps: 30," in params and "Seed: 77" in params and "Size: 1152x896" in params
    assert "Model: Tongyi-MAI/Z-Image," in params and "Hires checkpoint: Tongyi-MAI/Z-Image-Turbo" in params
    assert "Denoising strength: 0.15" in params and "Hires steps: 8" in params
    assert 'Hires prompt: "a knight, blue and gold, intricate engravings"' in params
    restored = read_recipe(path)
    assert restored.tool == "Handoff" and restored.project == recipe()


def test_a1111_parameters_parse_back():
    text = ("a photo of a cat, \"quoted\"\nNegative prompt: ugly\nSteps: 25, Sampler: Euler a, CFG scale: 6.5, "
            "Seed: 1234, Size: 832x1216, Model: sd_xl_base_1.0, Refiner: sd_xl_refiner_1.0, Refiner switch at: 0.8")
    p = from_chunks({"parameters": text}, "x.png", lookup=ModelLookup([])).project
    assert p.prompt == 'a photo of a cat, "quoted"' and p.negative_prompt == "ugly"
    assert (p.width, p.height, p.seed) == (832, 1216, 1234)
    assert p.stages[0].steps == 25 and p.stages[0].guidance == 6.5 and p.stages[0].scheduler == "Euler a"
    assert p.stages[1].model == "sd_xl_refiner_1.0" and p.stages[1].handoff == "ensemble"
    assert p.stages[1].switch_at == 0.8


def test_own_parameters_round_trip_through_the_a1111_parser():
    p = recipe()
    back = from_chunks({"parameters": a1111.write(p, 0)}, "x.png", lookup=ModelLookup([])).project
    assert (back.prompt, back.seed, back.width, back.stages[0].steps) == (p.prompt, 77, 1152, 30)


def test_png_without_a_recipe(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert read_recipe(tmp_path / "plain.png") is None
    with pytest.raises(ProjectError, match="carries no recipe"):
        project_file.load(tmp_path / "plain.png")


def test_project_file_holds_recipe_init_image_and_history(tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(init)
    p = recipe()
    p.init_image = str(init)
    png = (tmp_path / "h.png")
    Image.new("RGB", (4, 4), (0, 255, 0)).save(png)
    run = project_file.HistoryRun("r1", "2026-11-23T16:00:00", recipe().to_dict(),
                                  [project_file.HistoryImage(0, "base", png.read_bytes(), 1.5)],
                                  [{"stage": 0, "total": 1.5}])
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p, [run]))
    names = zipfile.ZipFile(path).namelist()
    assert {"project.json", "images/init/init.png", "images/r1-1.png"} <= set(names)
    doc = project_file.load(path)
    assert Path(doc.project.init_image).name == "init.png"  # its own name, in a folder named by its hash
    assert doc.project.prompt == p.prompt and doc.project.stages == p.stages
    with Image.open(doc.project.init_image) as im:
        assert im.getpixel((0, 0)) == (255, 0, 0)
    assert doc.history[0].images[0].png == png.read_bytes() and doc.history[0].timings[0]["total"] == 1.5


def test_saves_are_atomic(tmp_path, monkeypatch):
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(recipe()))
    before = path.read_bytes()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(OSError):
        project_file.save(path, project_file.ProjectDocument(Project(prompt="other", stages=[Stage("x")])))
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["p.handoff"]  # no temp file left behind


def test_bad_project_files_say_what_is_wrong(tmp_path):
    (tmp_path / "x.handoff").write_bytes(b"not a zip")
    with pytest.raises(ProjectError, match="not a readable Handoff project"):
        project_file.load(tmp_path / "x.handoff")
    with pytest.raises(ProjectError, match="not found"):
        project_file.load(tmp_path / "missing.handoff")


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from core.atomic import write_bytes

    mask = os.umask(0o022)
    try:
        path = write_bytes(tmp_path / "x.bin", b"data")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
