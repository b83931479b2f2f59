"""What a file handed to Handoff is, told once for the window (a drop, File > Open) and the
command line (inspect, export, run, sweep, batch): a Handoff project, a file carrying a
recipe (an image, or a .json recipe or graph), a plain image (an init image), an image
whose recipe is there but damaged (still an init image), or nothing Handoff can use, and
why. What to do with it is the caller's: the window asks, the command line reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import checked, project_file
from core.errors import ReadError
from core.images import header_size, pixel_problem

if TYPE_CHECKING:
    from core.interop.model_lookup import ModelLookup
    from core.interop.reading import Imported

PROJECT = "project"  # a .handoff: the document itself (read by project_file.load when opened)
RECIPE = "recipe"  # an image or a .json carrying a recipe: restores as a new project
IMAGE = "image"  # an image without a recipe: an init image
DAMAGED_RECIPE = "damaged recipe"  # an image whose metadata is there but unreadable: still an init image
UNUSABLE = "unusable"

PROJECT_SUFFIXES = (project_file.SUFFIX,)
RECIPE_SUFFIXES = (".json",)  # a Handoff recipe, a ComfyUI graph or a Fooocus log entry
# The images whose recipe project_file reads, and formats that carry none but are still init images.
IMAGE_SUFFIXES = project_file.IMAGE_SUFFIXES + (".bmp", ".tif", ".tiff")


@dataclass
class Opening:
    kind: str  # PROJECT, RECIPE, IMAGE, DAMAGED_RECIPE or UNUSABLE
    path: Path
    why: str = ""  # UNUSABLE: why; DAMAGED_RECIPE: what is wrong with the metadata
    document: project_file.ProjectDocument | None = None  # RECIPE: the project it restores
    size: tuple[int, int] | None = None  # an image's (width, height): it can be an init image

    @property
    def image(self) -> bool:
        return self.size is not None

    @property
    def imported(self) -> "Imported | None":
        """RECIPE: where the recipe came from (a plain Handoff .json names Handoff)."""
        from core.interop.reading import Imported

        if self.document is None:
            return None
        return self.document.source or Imported(self.document.project, "Handoff", "the .json file")


def what_is(path: Path, lookup: "ModelLookup | None" = None) -> Opening:
    """What `path` is. `lookup` resolves another tool's model names (a fresh one when None);
    an image's pixels are counted from its header, before its metadata is read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        return Opening(UNUSABLE, path, f"{path} is not a file")
    if suffix in PROJECT_SUFFIXES:
        return Opening(PROJECT, path)
    if suffix in RECIPE_SUFFIXES:
        try:
            return Opening(RECIPE, path, document=project_file.load(path))
        except ReadError as exc:
            return Opening(UNUSABLE, path, str(exc))
    size = header_size(path) if suffix in IMAGE_SUFFIXES else None
    if size is None:
        return Opening(UNUSABLE, path, f"{path.name} is not an image or a Handoff project ({project_file.SUFFIX})")
    too_large = pixel_problem(*size, path.name)
    if too_large:  # refused before a pixel is decoded
        return Opening(UNUSABLE, path, too_large, size=size)
    from core.metadata import read_recipe

    try:
        imported = checked.guarded(read_recipe, path, lookup)
    except ReadError as exc:
        # Metadata that is there but damaged is said, not silently dropped.
        return Opening(DAMAGED_RECIPE, path, str(exc), size=size)
    if imported is None:
        return Opening(IMAGE, path, size=size)
    return Opening(RECIPE, path, document=project_file.ProjectDocument(imported.project, source=imported), size=size)


def read_document(path: Path, lookup: "ModelLookup | None" = None) -> project_file.ProjectDocument:
    """The project a file restores, for a command that runs or describes one: a project
    read whole (a .handoff, or a zip of another name), or the recipe a file carries.
    Raises ReadError (one line naming the file) for anything else: an image without a
    recipe says it can be an init image."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
        return project_file.load(path)
    what = what_is(path, lookup)
    if what.kind == RECIPE:
        return what.document
    if what.kind == UNUSABLE and not what.image:
        return project_file.load(path)  # it says what its reader could not read
    if what.kind == IMAGE:
        raise ReadError(f"{path.name}: {project_file.NO_RECIPE}; it can be refined as an init image "
                        "(generate --init-image)")
    raise ReadError(what.why if what.why.startswith(path.name) else f"{path.name}: {what.why}")
