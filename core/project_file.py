"""The project file: one zip holding the recipe, the init image and the run history
with its outputs, so a project moves between machines whole.

    project.json   {"format": "handoff-project", "schema_version", "project", "history"}
    images/init/<name>.png   the init image, as PNG, under its own name (images/init.png before)
    images/<run-id>-<n>.png
A plain .json project (just the recipe), a ComfyUI graph saved as .json, and an image
(PNG, JPEG, WebP) carrying a recipe, Handoff's or another tool's, load too.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from core import paths
from core.atomic import write_with
from core.project import SCHEMA_VERSION, Project
from core.errors import ProjectError, ReadError

if TYPE_CHECKING:
    from core.interop.reading import Imported

FORMAT = "handoff-project"
SUFFIX = ".handoff"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class HistoryImage:
    stage: int
    label: str
    png: bytes
    seconds: float = 0.0


@dataclass
class HistoryRun:
    run_id: str
    when: str  # ISO time
    recipe: dict  # the project as it was run
    images: list[HistoryImage] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)  # per stage: load/denoise/decode/total/peak


@dataclass
class ProjectDocument:
    project: Project
    history: list[HistoryRun] = field(default_factory=list)
    # Where the project came from when it was restored from an image's or a graph's
    # metadata (the tool, what it could not map); None for a Handoff project file.
    source: "Imported | None" = None


def save(path: Path, doc: ProjectDocument) -> Path:
    """Write the whole document atomically: a crash mid-save leaves the old file intact."""
    project = doc.project.copy()
    init_png = None
    if project.init_image:
        init_png = _png_bytes(Path(project.init_image))
        # Under its own name (as PNG), so the reopened project still says which image it is.
        project.init_image = f"images/init/{_safe_stem(Path(project.init_image))}.png"
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "project": project.to_dict(),
        "history": [],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if init_png is not None:
            z.writestr(project.init_image, init_png)
        for run in doc.history:
            entry = {"run_id": run.run_id, "when": run.when, "recipe": run.recipe, "timings": run.timings, "images": []}
            for n, img in enumerate(run.images):
                name = f"images/{run.run_id}-{n + 1}.png"
                z.writestr(name, img.png)
                entry["images"].append({"stage": img.stage, "label": img.label, "file": name, "seconds": img.seconds})
            manifest["history"].append(entry)
        z.writestr("project.json", json.dumps(manifest, indent=1))
    return write_with(Path(path), lambda f: f.write(buf.getvalue()))


def load(path: Path) -> ProjectDocument:
    path = Path(path)
    if not path.is_file():
        raise ProjectError([f"project file not found: {path}"])
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ReadError(f"{path.name} is not a readable project: {exc}") from exc
        from core.interop.detect import from_json

        imported = from_json(data, path.name)  # a ComfyUI graph saved as .json, say
        if imported is not None:
            return ProjectDocument(imported.project, source=imported)
        if not isinstance(data, dict):
            raise ReadError(f"{path.name} is not a Handoff project, nor a ComfyUI workflow")
        try:
            return ProjectDocument(Project.from_dict(data.get("project", data)))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ReadError(f"{path.name}: the project is malformed ({exc})") from exc
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from core.metadata import read_recipe

        imported = read_recipe(path)
        if imported is None:
            raise ReadError(f"{path.name} carries no recipe (no Handoff, Automatic1111, ComfyUI, InvokeAI, Fooocus "
                            "or NovelAI metadata)")
        return ProjectDocument(imported.project, source=imported)
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("project.json"))
            if manifest.get("format") != FORMAT:
                raise ProjectError([f"{path.name} is not a Handoff project"])
            project = Project.from_dict(manifest["project"])
            if project.init_image:
                project.init_image = str(_extract(z.read(project.init_image), PurePosixPath(project.init_image).name))
            history = [
                HistoryRun(
                    run_id=r["run_id"], when=r["when"], recipe=r["recipe"], timings=r.get("timings", []),
                    images=[HistoryImage(i["stage"], i["label"], z.read(i["file"]), i.get("seconds", 0.0)) for i in r["images"]],
                )
                for r in manifest.get("history", [])
            ]
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ProjectError([f"{path.name} is not a readable Handoff project ({exc})"]) from exc
    return ProjectDocument(project, history)


def _png_bytes(path: Path) -> bytes:
    from PIL import Image

    try:
        with Image.open(path) as im:
            out = io.BytesIO()
            im.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except OSError as exc:
        raise ProjectError([f"init image {path} cannot be read: {exc}"]) from exc


def _safe_stem(path: Path) -> str:
    stem = re.sub(r"[^\w.-]+", "_", path.stem).strip("._")[:80]
    return stem or "init"


def _extract(data: bytes, name: str = "init.png") -> Path:
    """Init images live as files while a project is open (the engine reads a path): in a
    folder named by the content's hash (two projects' different photo.png never collide),
    under the image's own name."""
    name = f"{_safe_stem(Path(name))}.png"
    target = paths.cache_dir() / "project-images" / hashlib.sha256(data).hexdigest()[:16] / name
    if not target.exists():
        write_with(target, lambda f: f.write(data))
    return target
