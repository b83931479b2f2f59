"""The window's files: open, save, autosave and recovery, export, and what a drop or File >
Open does with a file (a project, an image with a recipe, an init image)."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QFileDialog,
)

from core import document as doc
from core import paths
from core.document import read_project
from core.errors import ProjectError, ReadError
from core.images import pixel_problem
from core.project import Project
from gui.images import image_size
from gui.tasks import modal


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
PROJECT_SUFFIXES = {".handoff"}
# The question a dropped or opened image with a recipe asks: (answer, button label).
RESTORE_CHOICES = [("restore", "Restore recipe"), ("init", "Use as init image"), ("cancel", "Cancel")]


class FilesMixin:
    """Mixed into MainWindow (gui/main_window.py), whose document, settings and widgets it uses."""

    def _dialog_dir(self) -> str:
        """Where file dialogs open: the folder last used, else the user's home (never the
        app's data folder, which holds nothing of theirs)."""
        return str(self.settings.start_dir(Path.home()))

    def choose_save_path(self) -> Path | None:
        start = str(self.path or (Path(self._dialog_dir()) / "untitled.handoff"))
        name, _ = QFileDialog.getSaveFileName(self, "Save project", start, "Handoff project (*.handoff)")
        if not name:
            return None
        self.settings.remember_dir(name)
        p = Path(name)
        return p if p.suffix == ".handoff" else p.with_suffix(".handoff")

    def maybe_discard(self) -> bool:
        """True when the current document may be replaced (saved, discarded or unchanged)."""
        if not self.modified:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Open", self._dialog_dir(),
            "Projects and images (*.handoff *.png *.jpg *.jpeg *.webp);;Handoff project (*.handoff);;All files (*)")
        if name:
            self.settings.remember_dir(name)
            self.open_path(Path(name))

    def open_image_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open image", self._dialog_dir(),
                                              "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
        if name:
            self.settings.remember_dir(name)
            self.open_path(Path(name))

    def open_project_file(self, path: Path) -> bool:
        if not self.maybe_discard():
            return False
        try:
            project, runs = read_project(path)
        except (ProjectError, OSError) as exc:
            problems = exc.problems if isinstance(exc, ProjectError) else [str(exc)]
            self.show_error(f"Could not open {path.name}: " + "; ".join(problems))
            return False
        self.load_project(project, Path(path), runs)
        self.settings.add_recent_file(path)
        self.settings.save()
        self._fill_recent()
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def save(self) -> bool:
        """Save now, for a caller that needs the outcome before it goes on (the question
        before the document is replaced or the window closes): written on this thread.
        File > Save and Save As run `save_file`, the coroutine, instead."""
        if self.path is None:
            return self.save_as()
        return self._save_to(self.path)

    def save_as(self) -> bool:
        target = self.choose_save_path()
        return self._save_to(target) if target else False

    def start_save(self, ask_where: bool = False) -> asyncio.Task:
        """File > Save (Save As with `ask_where`): the save as a task of the window."""
        return self.tasks.start(self.save_file(None if ask_where else self.path), name="saving the project")

    async def save_file(self, path: Path | None) -> bool:
        """Save to `path` (None: ask where). The document is snapshotted here, and the
        snapshot PNG-encoded and written (atomically, core/atomic.py) on a worker thread;
        the window stays live meanwhile. Edits made during the write leave the document
        modified. One save at a time: a second waits for the first."""
        if path is None:
            path = await modal(self.choose_save_path)
            if path is None:
                return False
        async with self._save_lock():
            snapshot = self.document.snapshot()
            self.statusBar().showMessage(f"Saving {path}…")
            try:
                await asyncio.to_thread(doc.write_snapshot, Path(path), snapshot)
            except (ProjectError, OSError) as exc:
                return self._save_failed(Path(path), exc)
            self._saved(Path(path), snapshot)
        return True

    def _save_lock(self) -> asyncio.Lock:
        if getattr(self, "_saving", None) is None:
            self._saving = asyncio.Lock()
        return self._saving

    def _save_to(self, path: Path) -> bool:
        snapshot = self.document.snapshot()
        try:
            doc.write_snapshot(Path(path), snapshot)
        except (ProjectError, OSError) as exc:
            return self._save_failed(Path(path), exc)
        self._saved(Path(path), snapshot)
        return True

    def _save_failed(self, path: Path, exc: Exception) -> bool:
        problems = exc.problems if isinstance(exc, ProjectError) else [str(exc)]
        self.show_error(f"Could not save {path.name}: " + "; ".join(problems))
        return False

    def _saved(self, path: Path, snapshot) -> None:
        mine = self.document.saved(path, snapshot)  # False: another project was opened during the write
        self.settings.add_recent_file(path)
        self.settings.save()
        self._fill_recent()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}" if mine else f"Saved the project you had open to {path}", 5000)

    def choose_export_path(self) -> Path | None:
        name, _ = QFileDialog.getSaveFileName(self, "Export ComfyUI workflow", str(paths.home() / "workflow.json"),
                                              "ComfyUI workflow (*.json)")
        return Path(name) if name else None

    def export_comfyui(self, path: Path | None = None) -> bool:
        """File > Export > ComfyUI workflow: the chain as a workflow ComfyUI opens."""
        from core.interop.comfyui import write_workflow

        path = path or self.choose_export_path()
        if path is None:
            return False
        try:
            graph = write_workflow(self.project, path)
        except (ProjectError, OSError) as exc:
            self.show_error(f"Could not export {Path(path).name}: {exc}")
            return False
        self.statusBar().showMessage(f"Exported the ComfyUI workflow to {path}", 5000)
        for note in graph.notes:  # what ComfyUI needs before it can run the graph
            self.log_line(f"ComfyUI export: {note}")
        return True

    def autosave(self) -> asyncio.Task | None:
        """The autosave timer's (and a finished run's) trigger: when something changed since
        the last autosave, write it as a task of the window (snapshot here, the write on a
        worker thread). None when there is nothing to write, or a write is under way
        (what changes meanwhile goes in the next one)."""
        if not self._autosave_dirty or self._autosaving is not None:
            return None
        task = self._autosaving = self.tasks.start(self._autosave(), name="autosave")
        task.add_done_callback(self._autosave_ended)
        return task

    async def _autosave(self) -> None:
        self._autosave_dirty = False  # an edit from now on sets it again
        try:
            await asyncio.to_thread(doc.write_autosave, self.document.snapshot())
        except (ProjectError, OSError) as exc:
            self._autosave_dirty = True
            self.log_line(f"autosave failed: {exc}")

    def _autosave_ended(self, task: asyncio.Task) -> None:
        self._autosaving = None
        if task.cancelled():
            self._autosave_dirty = True  # (a write under way still finishes: atomic) the next one is not skipped

    def autosave_now(self) -> None:
        """Autosave on this thread, for a window about to go (a quit signal): no task would
        outlive it."""
        if not self._autosave_dirty:
            return
        try:
            self.document.write_autosave()
        except (ProjectError, OSError) as exc:
            self.log_line(f"autosave failed: {exc}")
            return
        self._autosave_dirty = False

    def offer_recovery(self) -> bool:
        """After a crash: offer the autosave back. True when it was restored."""
        if not doc.autosave_file().exists():
            return False
        if not self.ask("Recover unsaved work?",
                        "Handoff did not close cleanly last time. Restore the autosaved project?"):
            return False
        try:
            recovered = doc.read_autosave()
        except ProjectError as exc:
            self.report_damaged([f"The autosave could not be read: {exc}"])
            return False
        self.load_project(recovered.project, recovered.source, recovered.runs)
        self.set_modified(True)  # recovered work is not saved anywhere yet
        if recovered.problem:
            self.report_damaged([f"Recovered the autosaved project; where it was saved is not known: {recovered.problem}"])
        else:
            self.statusBar().showMessage("Recovered the autosaved project", 5000)
        return True

    def report_damaged(self, problems: list[str]) -> None:
        """Handoff's own files that could not be read in full (settings, the job queue, the
        autosave): said once, in the banner and the log; the window goes on with what
        could be read."""
        for line in problems:
            self.log_line(line)
        self.show_error("\n".join(problems))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            self.show_error("Only local files can be dropped here.")
            return
        event.acceptProposedAction()
        # A task: a modal question inside dropEvent would block the drag source, and reading
        # the file (an image's recipe, hashing checkpoints to match its model hash) happens
        # on a worker thread.
        path = Path(urls[0].toLocalFile())
        self.tasks.start(self.open_dropped(path), name=f"opening {path.name}")

    async def open_dropped(self, path: Path) -> str:
        """What dropping `path` does (as open_path says), with the slow read off the GUI
        thread: an image's recipe is read on a worker thread, then open_path asks its
        question here with that read's outcome."""
        path = Path(path)
        read = await asyncio.to_thread(_read_dropped, path, self._recipe_in)
        with self._recipe_already_read(path, read):
            return await modal(self.open_path, path)

    @contextlib.contextmanager
    def _recipe_already_read(self, path: Path, read: "_Read | None"):
        """For the open_path call within: `_recipe_in(path)` gives what the worker thread
        read (its recipe, or raises what the read raised) instead of reading again."""
        if read is None:
            yield
            return
        reader = type(self)._recipe_in

        def recipe_in(p: Path):
            if Path(p) != path:
                return reader(p)
            if read.error is not None:
                raise read.error
            return read.recipe

        self._recipe_in = recipe_in
        try:
            yield
        finally:
            del self._recipe_in

    def open_path(self, path: Path) -> str:
        """What a drop or File > Open does with a file. Returns what happened:
        'project', 'recipe', 'init', 'cancelled' or 'rejected'."""
        path = Path(path)
        suffix = path.suffix.lower()
        if not path.is_file():
            self.show_error(f"{path} is not a file; nothing was changed.")
            return "rejected"
        if suffix in PROJECT_SUFFIXES:
            return "project" if self.open_project_file(path) else "cancelled"
        if suffix in IMAGE_SUFFIXES and (size := image_size(path)) is not None:
            too_large = pixel_problem(*size, path.name)
            if too_large:  # refused before a pixel is decoded (core.images)
                self.show_error(f"{too_large}; nothing was changed.")
                return "rejected"
            try:
                imported = self._recipe_in(path)
            except ReadError as exc:
                # Metadata that is there but damaged is said, not silently dropped.
                question = f"{exc}\n\nThe picture can still be the init image of “{self.document_name()}”."
                if self.choose("Recipe unreadable", question, RESTORE_CHOICES[1:]) != "init":
                    return "cancelled"
                self.set_init_image(path)
                return "init"
            if imported is None:
                self.set_init_image(path)
                return "init"
            answer = self.choose("Restore recipe?", self._restore_question(path, imported), RESTORE_CHOICES)
            if answer == "init":
                self.set_init_image(path)
                return "init"
            # The recipe is a new document: unsaved work is asked about first, as for any other
            # replacement, and the saved project is never the target of the next Ctrl+S.
            if answer != "restore" or not self.maybe_discard():
                return "cancelled"
            self.restore_recipe(imported.project)
            for line in imported.summary(limit=100).splitlines():
                self.log_line(f"{path.name}: {line}")
            return "recipe"
        self.show_error(f"{path.name} is not an image or a Handoff project (.handoff); nothing was changed.")
        return "rejected"

    @staticmethod
    def _recipe_in(path: Path):
        """The recipe an image carries (Handoff's, or another tool's), None when it has none;
        raises ReadError for metadata that is there but damaged. On this thread, at most
        1 GiB of not-yet-hashed checkpoints is hashed to match a model hash."""
        from core import checked
        from core.interop.model_lookup import ModelLookup
        from core.metadata import read_recipe

        return checked.guarded(read_recipe, path, ModelLookup(hash_budget=2**30))

    def _restore_question(self, path: Path, imported) -> str:
        recipe = imported.project
        head = (f"{path.name} carries the recipe it was made with, by {imported.tool} "
                f"({len(recipe.stages)} stage(s), “{recipe.prompt[:60]}”).")
        details = "" if imported.tool == "Handoff" else "\n\n" + imported.summary(limit=8)
        here = f"“{self.document_name()}”"
        return (f"{head}{details}\n\nRestore recipe: open it as a new, untitled project; {here} stays as it is."
                f"\nUse as init image: {here} refines this picture.")

    def restore_recipe(self, recipe: Project) -> None:
        """A recipe from elsewhere as a new, untitled document: no path (Save asks where),
        no runs, and no undo back into the project it replaced."""
        if recipe.init_image and not Path(recipe.init_image).is_file():
            recipe.init_image = None
        self.load_project(recipe, None, [])
        self.statusBar().showMessage("Recipe restored as a new, untitled project", 5000)

    def set_init_image(self, path: Path) -> None:
        """Make `path` the init image: a refine-only job, whose first stage refines it."""
        self.project.init_image = str(Path(path).resolve())
        enabled = self.project.enabled_stages()
        if enabled and enabled[0][1].handoff in ("latent", "ensemble"):
            # An init image arrives as pixels; a latent or ensemble first stage cannot take it.
            enabled[0][1].handoff = "pixel"
        self.stage_list.refresh()
        self._refresh_derived()
        self.match_init_size()
        if self.current_run is None:
            self.compare.show_single(QImage(str(path)))
        self.set_modified(True)
        self.statusBar().showMessage(f"Init image: {Path(path).name} — the first stage will refine it", 8000)

    def clear_init_image(self) -> None:
        self.project.init_image = None
        self.stage_list.refresh()
        self._refresh_derived()
        self.on_edited()

    def match_init_size(self) -> None:
        if not self.project.init_image:
            return
        size = image_size(Path(self.project.init_image))
        if size:
            self.resolution.set_size(*size)
            self._validate()


class _Read:
    """What a worker thread read from a dropped image: its recipe (None: it has none) or
    the error reading it raised."""

    def __init__(self, recipe=None, error: BaseException | None = None) -> None:
        self.recipe, self.error = recipe, error


def _read_dropped(path: Path, recipe_in) -> _Read | None:
    """On a worker thread: the recipe of a dropped image, when open_path would read one
    (an image within the pixel limit); None for anything else (open_path says why)."""
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    size = image_size(path)
    if size is None or pixel_problem(*size, path.name):
        return None
    try:
        return _Read(recipe_in(path))
    except Exception as exc:  # ReadError and the rest: raised again where open_path reads it
        return _Read(error=exc)
