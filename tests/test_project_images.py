"""A project file carries the images its stages read, as it carries the init image: the
ControlNet's control image and the IP-Adapters' reference images are stored inside the
.handoff, so a project moved to another machine (the original images gone) opens with
them and runs as it did."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import demo, project_file
from core.project import ControlNet, IPAdapter, Project, Stage


def solid(path: Path, color: tuple[int, int, int], size: int = 16) -> Path:
    im = Image.new("RGB", (size, size), color)
    im.putpixel((1, 2), (color[2], color[0], color[1]))  # not flat: a changed pixel would show
    im.save(path)
    return path


def move_away(saved: Path, to: Path, *originals: Path) -> Path:
    """The project file in another folder, and the images it was made from deleted."""
    to.mkdir()
    moved = Path(shutil.move(str(saved), str(to / saved.name)))
    for p in originals:
        p.unlink()
    return moved


def test_control_and_reference_images_travel_inside_the_project_file(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    control = solid(src / "edges.png", (250, 10, 10))
    first = solid(src / "style.png", (10, 250, 10))
    second = src / "face.jpg"
    Image.new("RGB", (16, 16), (10, 10, 250)).save(second, quality=100)
    expected = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in (control, first, second)}
    stage = Stage(demo.BASE, controlnet=ControlNet(demo.CONTROLNET, str(control)),
                  ip_adapters=[IPAdapter("ip.safetensors", str(first), 0.5), IPAdapter("ip.safetensors", str(second))])
    p = Project(prompt="a red circle", width=64, height=64, stages=[stage, Stage(demo.REFINER)])
    saved = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p))
    assert p.stages[0].controlnet.image == str(control)  # the open project still names the user's files
    names = set(zipfile.ZipFile(saved).namelist())
    assert {"images/stages/1/control/edges.png", "images/stages/1/ip-1/style.png",
            "images/stages/1/ip-2/face.png"} <= names

    moved = move_away(saved, tmp_path / "elsewhere", control, first, second)
    back = project_file.load(moved).project.stages[0]
    cn, (ip1, ip2) = back.controlnet, back.ip_adapters
    assert [Path(x).name for x in (cn.image, ip1.image, ip2.image)] == ["edges.png", "style.png", "face.png"]
    for path, stem in ((cn.image, "edges"), (ip1.image, "style"), (ip2.image, "face")):
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), expected[stem]), stem
    assert (cn.model, ip1.scale, ip2.scale) == (demo.CONTROLNET, 0.5, 0.6)
    # Saved again from where they were unpacked, they are stored again, not lost.
    again = project_file.load(project_file.save(tmp_path / "again.handoff", project_file.ProjectDocument(
        project_file.load(moved).project))).project.stages[0]
    assert Path(again.controlnet.image).is_file() and Path(again.ip_adapters[1].image).is_file()
    # An image already gone at the save stays named as it was: the project still saves, and
    # its check still says the image is missing; the others are stored.
    p.stages[0].ip_adapters[0].image = str(tmp_path / "gone.png")
    p.stages[0].controlnet.image = str(solid(tmp_path / "edges.png", (250, 10, 10)))
    back = project_file.load(project_file.save(tmp_path / "gone.handoff", project_file.ProjectDocument(p))).project
    assert back.stages[0].ip_adapters[0].image == str(tmp_path / "gone.png")
    assert "control" in {Path(*Path(n).parts[:4]).name for n in zipfile.ZipFile(tmp_path / "gone.handoff").namelist()}


def test_a_moved_project_runs_with_its_stored_control_image(tmp_path):
    """The run of the reopened project, with the original control image deleted, equals the
    run before the save bit for bit: the stored image is the one the ControlNet sees."""
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    from core import events as ev
    from tests import demo_measures as dm
    from tests.engine_helpers import of, pixels, run_job

    if not (demo.DEMO_DIR / demo.ADAPTERS["demo-controlnet"]).exists():
        pytest.skip("the trained demo ControlNet is not in this checkout")
    control = tmp_path / "edges.png"
    dm.edge_map(dm.draw_scene(*dm.HELD_OUT_SCENES[0])).save(control)
    stage = Stage(demo.BASE, steps=4, controlnet=ControlNet(demo.CONTROLNET, str(control), preprocessor="none",
                                                            scale=1.0))
    p = Project(prompt="a red circle on a blue background", width=64, height=64, seed=3, stages=[stage])
    (before,) = of(run_job(p, tmp_path / "before"), ev.StageFinished)
    saved = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p))
    moved = move_away(saved, tmp_path / "elsewhere", control)
    reopened = project_file.load(moved).project
    (after,) = of(run_job(reopened, tmp_path / "after"), ev.StageFinished)
    assert np.array_equal(pixels(after.image), pixels(before.image))
