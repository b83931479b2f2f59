"""The window's files: open, save, autosave and recovery, export, and what a drop or File >
Open does with a file (a project, an image with a recipe, an init image)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QFileDialog,
)

from core import document as doc
from core import opening, paths
from core.document import read_project
from core.errors import ProjectError
from core.project import Project
from gui.images import image_size
from gui.tasks import modal


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
        thread: what the file is (an image's recipe, hashing checkpoints to match its model
        hash) is read on a worker thread, then open_path asks its question here."""
        path = Path(path)
        what = await asyncio.to_thread(_what_is, path)
        return await modal(self.open_path, path, what)

    def open_path(self, path: Path, what: "opening.Opening | None" = None) -> str:
        """What a drop or File > Open does with a file, by what core.opening says it is
        (`what`, when it was read already). Returns what happened: 'project', 'recipe',
        'init', 'cancelled' or 'rejected'."""
        path = Path(path)
        what = what or _what_is(path)
        if what.kind == opening.UNUSABLE:
            self.show_error(f"{what.why}; nothing was changed.")
            return "rejected"
        if what.kind == opening.PROJECT:
            return "project" if self.open_project_file(path) else "cancelled"
        if what.kind == opening.IMAGE:
            self.set_init_image(path)
            return "init"
        if what.kind == opening.DAMAGED_RECIPE:
            question = f"{what.why}\n\nThe picture can still be the init image of “{self.document_name()}”."
            if self.choose("Recipe unreadable", question, RESTORE_CHOICES[1:]) != "init":
                return "cancelled"
            self.set_init_image(path)
            return "init"
        imported = what.imported
        # A recipe without a picture (a .json) cannot be the init image.
        choices = RESTORE_CHOICES if what.image else [RESTORE_CHOICES[0], RESTORE_CHOICES[2]]
        answer = self.choose("Restore recipe?", self._restore_question(path, imported, what.image), choices)
        if answer == "init":
            self.set_init_image(path)
            return "init"
        # The recipe is a new document: unsaved work is asked about first, as for any other
        # replacement, and the saved project is never the target of the next Ctrl+S.
        if answer != "restore" or not self.maybe_discard():
            return "cancelled"
        self.restore_recipe(imported.project, imported.tool)
        for line in imported.summary(limit=100).splitlines():
            self.log_line(f"{path.name}: {line}")
        return "recipe"

    def _restore_question(self, path: Path, imported, image: bool) -> str:
        recipe = imported.project
        head = (f"{path.name} carries the recipe it was made with, by {imported.tool} "
                f"({len(recipe.stages)} stage(s), “{recipe.prompt[:60]}”).")
        details = "" if imported.tool == "Handoff" else "\n\n" + imported.summary(limit=8)
        here = f"“{self.document_name()}”"
        init = f"\nUse as init image: {here} refines this picture." if image else ""
        return f"{head}{details}\n\nRestore recipe: open it as a new, untitled project; {here} stays as it is.{init}"

    def restore_recipe(self, recipe: Project, tool: str = "") -> None:
        """A recipe from elsewhere as a new, untitled document: no path (Save asks where),
        no runs, and no undo back into the project it replaced. `tool`: the one that wrote
        it, whose model names a missing model is shown with."""
        if recipe.init_image and not Path(recipe.init_image).is_file():
            recipe.init_image = None
        self.load_project(recipe, None, [], named_by=tool)
        self.statusBar().showMessage("Recipe restored as a new, untitled project", 5000)

    def set_init_image(self, path: Path) -> None:
        """Make `path` the init image: a refine-only job, whose first stage refines it (as
        pixels, whatever handoff that stage holds: core.planning decides, and the recipe
        keeps the stage as it was, for when the init image goes again)."""
        self.project.init_image = str(Path(path).resolve())
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


def _what_is(path: Path):
    """What core.opening says `path` is; at most 1 GiB of not-yet-hashed checkpoints is
    hashed to match another tool's model hash."""
    from core.interop.model_lookup import ModelLookup

    return opening.what_is(path, ModelLookup(hash_budget=2**30))
