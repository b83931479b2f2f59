"""The window's menus, and what they open that is not a file: questions, presets and the
model library."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QMessageBox,
)

from core.defaults import default_project
from core.model_info import forget as forget_model_info
from core.presets import PRESETS
from gui.vram_gauge import human




class MenusMixin:
    """Mixed into MainWindow (gui/main_window.py), whose document, settings and widgets it uses."""

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")

        def action(menu, text, slot, shortcut=None) -> QAction:
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        action(file_menu, "&New", self.new_project, QKeySequence.New)
        action(file_menu, "&Open…", self.open_dialog, QKeySequence.Open)
        action(file_menu, "Open &Image…", self.open_image_dialog, "Ctrl+I")
        self.recent_menu = file_menu.addMenu("Open &Recent")
        file_menu.addSeparator()
        action(file_menu, "&Save", lambda: self.start_save(), QKeySequence.Save)
        action(file_menu, "Save &As…", lambda: self.start_save(ask_where=True), QKeySequence.SaveAs)
        export_menu = file_menu.addMenu("&Export")
        action(export_menu, "&ComfyUI workflow…", lambda: self.export_comfyui())
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.Quit)
        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = self.history.stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts([QKeySequence(QKeySequence.Undo)])
        self.redo_action = self.history.stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        action(edit_menu, "&Copy Image", self.compare.copy_shown, QKeySequence.Copy)
        action(edit_menu, "Save Image &As…", lambda: self.compare.save_shown(), "Ctrl+Shift+E")
        models_menu = self.menuBar().addMenu("&Models")
        action(models_menu, "Model &Library…", self.open_models, "Ctrl+Shift+M")
        self.preset_actions: dict[str, QAction] = {}
        # Each preset opens as a new, untitled project (after the unsaved-changes question).
        self.presets_menu = self.menuBar().addMenu("&Presets")
        self.presets_menu.setToolTipsVisible(True)
        for key, p in PRESETS.items():
            a = action(self.presets_menu, p.title, lambda _=False, k=key: self.new_from_preset(k))
            a.setToolTip(p.note)
            a.setStatusTip(p.note)
            self.preset_actions[key] = a
        self.presets_menu.aboutToShow.connect(self._presets_shown)  # a download may have finished since
        self._mark_presets()
        run_menu = self.menuBar().addMenu("&Run")
        self.generate_action = action(run_menu, "&Generate", self.generate, "Ctrl+Return")
        self.generate_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.cancel_action = action(run_menu, "&Cancel", self.cancel, "Escape")
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for f in self.settings.recent_files:
            a = self.recent_menu.addAction(f)
            a.triggered.connect(lambda _=False, f=f: self.open_path(Path(f)))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    def ask(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.Yes

    def choose(self, title: str, text: str, choices: list[tuple[str, str]]) -> str:
        """The key of the answer picked from `choices` (key, button label); the first is the
        default, the last is the way out (Escape or closing the box picks it too)."""
        box = self.choice_box(title, text, choices)
        box.exec()
        return next((key for button, key in box.answers if button is box.clickedButton()), choices[-1][0])

    def choice_box(self, title: str, text: str, choices: list[tuple[str, str]]) -> QMessageBox:
        box = QMessageBox(QMessageBox.Question, title, text, QMessageBox.NoButton, self)
        roles = [QMessageBox.AcceptRole] + [QMessageBox.ActionRole] * (len(choices) - 2) + [QMessageBox.RejectRole]
        box.answers = [(box.addButton(label, role), key) for (key, label), role in zip(choices, roles)]
        box.setDefaultButton(box.answers[0][0])
        box.setEscapeButton(box.answers[-1][0])
        return box

    def ask_save_changes(self) -> str:
        """'save', 'discard' or 'cancel'."""
        box = QMessageBox(QMessageBox.Warning, "Unsaved changes",
                          f"Save the changes to {self.document_name()}?",
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        answer = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def open_models(self):
        """Show the model library (one window, raised when already open)."""
        from gui.models_dialog import ModelsDialog

        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.library, self)
            self.models_dialog.changed.connect(self.library_changed)
            self.models_dialog.useModel.connect(self.use_model_for_stage)
            self.models_dialog.sizesChanged.connect(self._mark_presets)
        self.models_dialog.refresh()
        self.models_dialog.show()
        self.models_dialog.raise_()
        self.models_dialog.activateWindow()
        return self.models_dialog

    def use_model_for_stage(self, ref: str) -> None:
        """The library's "Use for this stage" (or a double-click): the selected stage's model."""
        if not self.project.stages:
            return
        self.stage_list.editor.model._commit(ref)

    def _presets_shown(self) -> None:
        self._mark_presets()
        self.ask_preset_sizes()

    def ask_preset_sizes(self):
        """The presets whose models need a download say how much once the Hub has said: ask
        it (a task of the window, each query on a worker thread) for the sizes not known
        yet, once a session each, and mark the menu again as they come. None when there
        is nothing to ask."""
        from core.model_library import availability, known_download_size
        from core.models import offline

        entries = {e.ref: e for e in self.library.all()}
        asked = self.__dict__.setdefault("_preset_sizes_asked", set())
        todo = [m for p in PRESETS.values() for m in dict.fromkeys(s.model for s in p.project().stages)
                if m in entries and entries[m].ref_kind == "hub" and not availability(entries[m])[0]
                and known_download_size(m) is None and m not in asked]
        todo = list(dict.fromkeys(todo))
        if not todo or offline():
            return None
        asked.update(todo)
        return self.tasks.start(self._ask_preset_sizes(todo), name="asking the Hub for download sizes")

    async def _ask_preset_sizes(self, repo_ids: list[str]) -> None:
        import asyncio

        from core import model_library as ml

        for repo_id in repo_ids:
            if await asyncio.to_thread(ml.hub_download_size, repo_id) is not None:
                self._mark_presets()

    def _mark_presets(self) -> None:
        """Each preset says whether it needs a download first, and how much once known."""
        from core.model_library import availability, known_download_size

        entries = {e.ref: e for e in self.library.all()}
        for key, a in self.preset_actions.items():
            preset = PRESETS[key]
            missing = [s.model for s in preset.project().stages
                       if s.model in entries and not availability(entries[s.model])[0]]
            if not missing:
                a.setText(preset.title)
                continue
            sizes = [known_download_size(m) for m in dict.fromkeys(missing)]
            size = f" ({human(sum(sizes))})" if all(s is not None for s in sizes) else ""
            a.setText(f"{preset.title} — needs a download{size}")

    def library_changed(self) -> None:
        forget_model_info()
        self.stage_list.set_library(self.library.all())
        self.stage_list.refresh()
        self._refresh_derived()

    def new_project(self) -> None:
        if self.maybe_discard():
            self.load_project(default_project(), None, [])
            self.statusBar().showMessage("New project", 3000)

    def new_from_preset(self, key: str) -> bool:
        """Replace the document with a fresh project from a preset (after the unsaved-changes
        question). True when it was loaded."""
        preset = PRESETS[key]
        if not self.maybe_discard():
            return False
        self.load_project(preset.project(), None, [])
        self.statusBar().showMessage(f"New project from the preset “{preset.title}”", 5000)
        self.log_line(f"preset {preset.title}: {preset.note}")
        return True

    def _remember_model(self, ref: str) -> None:
        self.settings.add_recent_model(ref)
        self.settings.save()
        self.stage_list.editor.model.set_recent(self.settings.recent_models)
