"""The project file: one zip holding the recipe, the init image and the run history
with its outputs, so a project moves between machines whole.

    project.json   {"format": "handoff-project", "schema_version", "project", "history"}
    images/init/<name>.png   the init image, as PNG, under its own name (images/init.png before)
    images/stages/<n>/control/<name>.png   stage n's control image (ControlNet), likewise
    images/stages/<n>/ip-<k>/<name>.png    stage n's k-th IP-Adapter reference image
    images/<run-id>-<n>.png
A plain .json project (just the recipe), a ComfyUI graph saved as .json, and an image
(PNG, JPEG, WebP) carrying a recipe, Handoff's or another tool's, load too.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from core import checked, paths
from core.atomic import write_with
from core.errors import ReadError
from core.project import SCHEMA_VERSION, Project

if TYPE_CHECKING:
    from core.interop.reading import Imported

FORMAT = "handoff-project"
SUFFIX = ".handoff"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
NO_RECIPE = "carries no recipe (no Handoff, Automatic1111, ComfyUI, InvokeAI, Fooocus or NovelAI metadata)"


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
    stage_pngs = _embed_stage_images(project)
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
        for name, png in stage_pngs.items():
            z.writestr(name, png)
        for run in doc.history:
            entry = {"run_id": run.run_id, "when": run.when, "recipe": run.recipe, "timings": run.timings, "images": []}
            for n, img in enumerate(run.images):
                name = f"images/{run.run_id}-{n + 1}.png"
                z.writestr(name, img.png)
                entry["images"].append({"stage": img.stage, "label": img.label, "file": name, "seconds": img.seconds})
            manifest["history"].append(entry)
        z.writestr("project.json", json.dumps(manifest, indent=1))
    return write_with(Path(path), lambda f: f.write(buf.getvalue()))


# What a .handoff may hold: larger entries, or more of them, are not a project Handoff wrote
# (a zip bomb, or another file renamed), and are refused before they are read.
MAX_MANIFEST_BYTES = checked.MAX_JSON_BYTES
MAX_IMAGE_BYTES = 256 * checked.MiB  # a stored PNG; an 8192 x 8192 RGB one is at most 192 MiB
MAX_TOTAL_BYTES = 4096 * checked.MiB  # everything an archive may expand to
MAX_ENTRIES = 10_000
# What zipfile raises for a damaged archive (a version it does not know, a cut header, a
# bad deflate stream, an encrypted entry) besides BadZipFile.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, ValueError,
               struct.error, zlib.error, IndexError)


def load(path: Path) -> ProjectDocument:
    """A project file (.handoff), a plain .json recipe or a ComfyUI graph, or an image
    carrying a recipe. Raises ReadError (one line naming the file and what is wrong) and
    nothing else."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"project file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            return _json_project(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return _image_recipe(path)
        return _load_archive(path)
    except ReadError as exc:
        message = str(exc)
        raise ReadError(message if message.startswith(path.name) else f"{path.name}: {message}") from None
    except OSError as exc:  # the file went away or cannot be read, the cache cannot be written
        raise ReadError(f"{path.name} cannot be read ({exc.strerror or exc})") from None


def _json_project(path: Path) -> ProjectDocument:
    from core.interop.detect import from_json

    data = checked.read_json_file(path, path.name)
    imported = checked.guarded(from_json, data, path.name)  # a ComfyUI graph saved as .json, say
    if imported is not None:
        return ProjectDocument(imported.project, source=imported)
    if isinstance(data, dict) and "project" in data:
        data = data["project"]
    return ProjectDocument(Project.from_dict(data))


def _image_recipe(path: Path) -> ProjectDocument:
    from core.images import image_size
    from core.metadata import read_recipe

    image_size(path, path.name)  # pixels capped before the recipe reader decodes them
    imported = checked.guarded(read_recipe, path)
    if imported is None:
        raise ReadError(NO_RECIPE)
    return ProjectDocument(imported.project, source=imported)


def _load_archive(path: Path) -> ProjectDocument:
    try:
        z = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ReadError(f"not a readable Handoff project (a .handoff file is a zip: {exc})") from None
    with z:
        archive = _Archive(z)
        manifest = checked.table(checked.parse_json(archive.read("project.json", MAX_MANIFEST_BYTES), "project.json"),
                                 "project.json")
        if manifest.get("format") != FORMAT:
            raise ReadError("not a Handoff project (project.json has no \"format\": \"handoff-project\")")
        if "project" not in manifest:
            raise ReadError("project.json has no project")
        project = Project.from_dict(manifest["project"])
        if project.init_image:
            data = archive.read_image(project.init_image, "the init image")
            project.init_image = str(_extract(data, PurePosixPath(project.init_image).name))
        _extract_stage_images(project, archive)
        raw_history = checked.listing(manifest.get("history", []), "history")
        history = [_history_run(archive, raw, f"history run {n + 1}") for n, raw in enumerate(raw_history)]
    return ProjectDocument(project, history)


def _stage_images(project: Project):
    """(archive name, what it is, the object holding it) for each control and IP-Adapter
    reference image a stage names: they are read by path as the job runs, so they travel
    inside the file as the init image does."""
    for n, stage in enumerate(project.stages):
        if stage.controlnet is not None and stage.controlnet.image:
            yield f"images/stages/{n + 1}/control", f"stage {n + 1}'s control image", stage.controlnet
        for k, ip in enumerate(stage.ip_adapters):
            if ip.image:
                yield f"images/stages/{n + 1}/ip-{k + 1}", f"stage {n + 1}'s IP-Adapter image {k + 1}", ip


def _embed_stage_images(project: Project) -> dict[str, bytes]:
    """Point `project`'s (a copy's) control and reference images at archive names, and
    return those entries' PNG bytes. An image that is gone stays named as it was: the
    project saves, and its check says the image is missing, as it did before the save."""
    out: dict[str, bytes] = {}
    for folder, what, holder in _stage_images(project):
        path = Path(holder.image).expanduser()
        if not path.is_file():
            continue
        name = f"{folder}/{_safe_stem(path)}.png"
        out[name] = _png_bytes(path, what)
        holder.image = name
    return out


def _extract_stage_images(project: Project, archive: "_Archive") -> None:
    """Control and reference images stored in the archive, as files again (a name outside
    images/ is a path a project saved before they were stored, or one that was missing)."""
    for _folder, what, holder in _stage_images(project):
        if holder.image.startswith("images/"):
            data = archive.read_image(holder.image, what)
            holder.image = str(_extract(data, PurePosixPath(holder.image).name))


def _history_run(archive: "_Archive", raw, where: str) -> HistoryRun:
    raw = checked.table(raw, where)
    images = []
    for n, item in enumerate(checked.listing(raw.get("images", []), f"{where}: images")):
        at = f"{where}, image {n + 1}"
        item = checked.table(item, at)
        images.append(HistoryImage(
            stage=checked.integer(item.get("stage"), f"{at}: stage"),
            label=checked.text(item.get("label", ""), f"{at}: label"),
            png=archive.read_image(checked.text(item.get("file"), f"{at}: file"), at),
            seconds=checked.number(item.get("seconds", 0.0), f"{at}: seconds"),
        ))
    return HistoryRun(
        run_id=checked.text(raw.get("run_id"), f"{where}: run_id"),
        when=checked.text(raw.get("when", ""), f"{where}: when"),
        recipe=checked.table(raw.get("recipe", {}), f"{where}: recipe"),
        images=images,
        timings=checked.listing(raw.get("timings", []), f"{where}: timings"),
    )


class _Archive:
    """The entries of a .handoff, checked before any is read: no entry may climb out of
    the archive (`..`, an absolute path) or be a link, and each is read with a size cap
    in bounded chunks (the size a zip declares can lie)."""

    def __init__(self, z: zipfile.ZipFile) -> None:
        infos = z.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ReadError(f"holds {len(infos)} entries, more than the {MAX_ENTRIES} a project may have")
        for info in infos:
            problem = _entry_problem(info)
            if problem:
                raise ReadError(f"entry '{info.filename[:120]}' {problem}: refused")
        self.z = z
        self.total = 0

    def read(self, name: str, cap: int) -> bytes:
        try:
            info = self.z.getinfo(name)
        except KeyError:
            raise ReadError(f"has no entry '{name[:120]}'") from None
        if info.file_size > cap:
            raise ReadError(f"entry '{name[:120]}' is {info.file_size / checked.MiB:.0f} MiB, more than the "
                            f"{cap // checked.MiB} MiB it may be")
        try:
            with self.z.open(info) as f:
                data = checked.read_capped(f, cap, f"entry '{name[:120]}'")
        except _ZIP_ERRORS as exc:
            raise ReadError(f"entry '{name[:120]}' is damaged ({exc})") from None
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise ReadError(f"the entries expand to more than {MAX_TOTAL_BYTES // checked.MiB} MiB")
        return data

    def read_image(self, name: str, what: str) -> bytes:
        """A stored PNG, checked to be an image of a size Handoff reads."""
        from core.images import image_size

        data = self.read(name, MAX_IMAGE_BYTES)
        image_size(data, f"{what} ('{name[:120]}')")
        return data


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the archive (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _png_bytes(path: Path, what: str = "init image") -> bytes:
    from core.images import read_image

    image = read_image(Path(path), f"{what} {path}")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


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
