"""The model library: the models the user keeps (core.model_library), each with its
family, the chain positions it can take, where it came from and whether it loads with no
network. Add a Hub id (downloaded with DownloadDialog when not cached), a local folder or
.safetensors file, a ComfyUI models folder or what the Hugging Face cache holds; remove.

The questions (a Hub id, a folder, a file) and the download are methods, so tests answer
them instead of a modal dialog."""
from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from core import model_library as ml
from core.models import offline, offline_message, parse_ref
from core.errors import ModelError
from gui.tasks import Tasks
from gui.vram_gauge import human

COLUMNS = ("Name", "Family", "Positions", "Source", "Offline-ready", "Download", "Reference")
NAME, FAMILY, POSITIONS, SOURCE, OFFLINE, SIZE, REF = range(len(COLUMNS))
SIZE_UNKNOWN_OFFLINE = "size unknown offline"


def size_text(entry: ml.LibraryEntry, ready: bool) -> str:
    """What the Download column says: nothing to fetch, the size (once the Hub said), or why not."""
    if entry.ref_kind != "hub" or ready:
        return "none needed"
    size = ml.known_download_size(entry.ref)
    if size is not None:
        return human(size)
    return SIZE_UNKNOWN_OFFLINE if offline() else "asking the Hub…"


class SizeFetcher(QObject):
    """Asks the Hub for download sizes, one repo at a time, as a coroutine on the window's
    event loop: each network call runs on a worker thread (`asyncio.to_thread`), and
    `found(repo_id, bytes or None)` is emitted on the GUI thread as each answer comes.
    `cancel()` stops asking; what was not answered is asked again next time."""

    found = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._asked: set[str] = set()
        self.tasks = Tasks(self)

    def ask(self, repo_ids: list[str]) -> asyncio.Task | None:
        todo = [r for r in repo_ids if r not in self._asked]
        if not todo or offline():
            return None
        self._asked.update(todo)
        return self.tasks.start(self._fetch(todo), name="asking the Hub for download sizes")

    async def _fetch(self, todo: list[str]) -> None:
        left = list(todo)
        try:
            while left:
                size = await asyncio.to_thread(ml.hub_download_size, left[0])
                self.found.emit(left.pop(0), size)
        finally:
            self._asked.difference_update(left)  # cancelled (or failed) before these were answered

    def cancel(self) -> None:
        self.tasks.cancel_all()


class ModelsDialog(QDialog):
    changed = Signal()  # the library changed (and was saved)
    useModel = Signal(str)  # "use for this stage": the reference for the selected stage
    sizesChanged = Signal()  # a download size arrived (the Presets menu shows them too)

    def __init__(self, library: ml.ModelLibrary | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(900, 460)
        self.library = library if library is not None else ml.ModelLibrary.load()
        self.entries: list[ml.LibraryEntry] = []

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("models")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(REF, QHeaderView.Stretch)
        self.note = QLabel()
        self.note.setObjectName("model_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setObjectName("models_status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        def button(text: str, tip: str, slot) -> QPushButton:
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda: slot())
            return b

        self.add_hub_button = button("Add Hub id…", "A Hugging Face Hub model (owner/name); downloaded now when "
                                     "it is not in the cache", self.add_hub_id)
        self.add_folder_button = button("Add folder…", "A local diffusers model folder (with model_index.json)",
                                        self.add_folder)
        self.add_file_button = button("Add .safetensors…", "A single-file checkpoint (the kind ComfyUI and "
                                      "Automatic1111 keep)", self.add_file)
        self.comfyui_button = button("Use ComfyUI models folder…", "Scan a ComfyUI models folder (or an Automatic1111 "
                                     "install's models/Stable-diffusion): checkpoints, "
                                     "diffusion_models/unet files and diffusers folders", self.start_comfyui)
        self.cache_button = button("Add cached Hub models", "Every diffusers model already in the Hugging Face "
                                   "cache: they load with no network", self.start_cached)
        self.remove_button = button("Remove", "Remove the selected model from the list (its files stay)",
                                    self.remove_selected)
        self.download_button = button("Download", "Download the selected Hub model now, so it loads offline "
                                      "and the first run does not wait for it", self.download_selected)
        self.use_button = button("Use for this stage", "Make the selected model the selected stage's model "
                                 "(double-click a row does the same)", self.use_selected)
        self.use_button.setObjectName("use_for_stage")
        self.sizes = SizeFetcher(self)
        self.sizes.found.connect(self._size_found)
        self.tasks = Tasks(self, on_error=self.say)  # the library scans
        self.finished.connect(self._closed)
        row = QHBoxLayout()
        for b in (self.add_hub_button, self.add_folder_button, self.add_file_button, self.comfyui_button,
                  self.cache_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.download_button)
        row.addWidget(self.remove_button)
        row.addWidget(self.use_button)
        close = QDialogButtonBox(QDialogButtonBox.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(close)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        self.refresh()

    # ------------------------------------------------------------ questions (tests replace these)

    def ask_hub_id(self) -> str | None:
        text, ok = QInputDialog.getText(self, "Add a Hub model", "Hugging Face Hub id (owner/name):")
        return text.strip() if ok and text.strip() else None

    def choose_folder(self) -> str | None:
        return QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder") or None

    def choose_file(self) -> str | None:
        name, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", "", "Checkpoints (*.safetensors)")
        return name or None

    def choose_comfyui_folder(self) -> str | None:
        return QFileDialog.getExistingDirectory(self, "Choose ComfyUI's models folder (or ComfyUI's own folder)") or None

    def download(self, repo_id: str) -> tuple[Path | None, str | None]:
        """Download with the progress dialog (modal): (folder, None), (None, what went wrong)
        or (None, None) when the user cancelled."""
        from gui.download_dialog import DownloadDialog

        dialog = DownloadDialog(repo_id, self)
        dialog.start()
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        return (dialog.path if accepted else None), dialog.error

    # ------------------------------------------------------------ view

    def refresh(self) -> None:
        self.entries = self.library.all()
        selected = self.selected()
        self.table.setRowCount(len(self.entries))
        for r, e in enumerate(self.entries):
            ready, how = ml.availability(e)
            cells = (e.name, e.family_title, e.positions, ml.SOURCES.get(e.source, e.source),
                     "yes" if ready else "no", size_text(e, ready), e.ref)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tip = e.note or how
                item.setToolTip(how if c == OFFLINE else tip)
                # An adapter is not a stage's model, but nothing is wrong with it: not in red.
                fine = e.usable or e.kind in ml.ADAPTER_FOLDERS
                if not fine or (c == FAMILY and e.family is None and e.note):
                    item.setForeground(QColor("#9a6700" if fine else "#b00020"))
                self.table.setItem(r, c, item)
        if selected is not None:
            self.select(selected.ref)
        self._on_selection()
        self.sizes.ask([e.ref for e in self.entries if e.ref_kind == "hub" and not ml.availability(e)[0]])

    def _size_found(self, repo_id: str, size) -> None:
        row = self.row_of(repo_id)
        if row >= 0:
            e = self.entries[row]
            text = size_text(e, ml.availability(e)[0]) if size is not None else "size unknown (the Hub did not say)"
            self.table.item(row, SIZE).setText(text)
        self.sizesChanged.emit()

    def row_of(self, ref: str) -> int:
        return next((i for i, e in enumerate(self.entries) if e.ref == ref), -1)

    def select(self, ref: str) -> None:
        row = self.row_of(ref)
        if row >= 0:
            self.table.selectRow(row)

    def selected(self) -> ml.LibraryEntry | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or not 0 <= rows[0].row() < len(self.entries):
            return None
        return self.entries[rows[0].row()]

    def _on_selection(self) -> None:
        e = self.selected()
        self.say("")  # the last action's message belongs to the row it was about
        self.remove_button.setEnabled(e is not None and e.source != "builtin")
        self.use_button.setEnabled(e is not None and e.usable)
        ready, how = ml.availability(e) if e is not None else (True, "")
        self.download_button.setEnabled(e is not None and e.ref_kind == "hub" and not ready)
        if e is None:
            self.note.setText("")
            return
        parts = [f"<b>{e.name}</b> — {e.family_title}; can take: {e.positions}; {how}"]
        if e.note:
            parts.append(e.note)
        self.note.setText("<br>".join(parts))

    def say(self, text: str) -> None:
        self.status.setText(text)

    def _changed(self, select: str | None = None) -> None:
        try:
            self.library.save()
        except OSError as exc:
            self.say(f"The model list could not be saved: {exc}")
        from core.model_info import forget

        forget()
        said = self.status.text()  # about this change: kept through the reselection below
        self.refresh()
        if select:
            self.select(select)
        self.say(said)
        self.changed.emit()

    # ------------------------------------------------------------ actions

    def add_hub_id(self, repo_id: str | None = None) -> ml.LibraryEntry | None:
        repo_id = repo_id or self.ask_hub_id()
        if not repo_id:
            return None
        try:
            ref = parse_ref(repo_id)
        except ModelError as exc:
            self.say(str(exc))
            return None
        if ref.kind != "hub":
            return self.add_path(repo_id)
        if ml.cached_snapshot(ref.location) is None:
            if offline():
                self.say(offline_message(ref.location))
                return None
            folder, error = self.download(ref.location)
            if folder is None:
                self.say(f"{ref.location} was not added: {error}" if error else
                         f"{ref.location} was not added: the download was cancelled (what arrived is kept, "
                         "and the next download resumes it)")
                return None
            how = "downloaded"
        else:
            how = "already in the cache: no download needed"
        entry = ml.entry_for(ref.location)
        self.library.add(entry)
        self.say(f"Added {entry.name} ({entry.family_title}, {how}).")
        self._changed(entry.ref)
        return entry

    def download_selected(self) -> ml.LibraryEntry | None:
        """Fetch the selected Hub model into the cache now (the same path as adding it)."""
        e = self.selected()
        if e is None or e.ref_kind != "hub":
            return None
        return self.add_hub_id(e.ref)

    def add_folder(self) -> ml.LibraryEntry | None:
        chosen = self.choose_folder()
        return self.add_path(chosen) if chosen else None

    def add_file(self) -> ml.LibraryEntry | None:
        chosen = self.choose_file()
        return self.add_path(chosen) if chosen else None

    def add_path(self, path: str | Path) -> ml.LibraryEntry | None:
        """A local folder or .safetensors file; one whose family is unknown is still added,
        with the reason, so the user sees why it cannot be used."""
        try:
            entry = ml.entry_for(str(path))
        except ModelError as exc:
            self.say(str(exc))
            return None
        self.library.add(entry)
        if entry.usable:
            self.say(f"Added {entry.name} ({entry.family_title}; can take: {entry.positions}).")
        else:
            self.say(f"Added {entry.name}, which cannot be a stage's model as it is: {entry.note}")
        self._changed(entry.ref)
        return entry

    def _closed(self, _result: int = 0) -> None:
        """Closing the library stops what it was doing: Hub size queries and folder scans
        (a scan's results are not added)."""
        self.sizes.cancel()
        self.tasks.cancel_all()

    def start_comfyui(self) -> asyncio.Task | None:
        """The button: ask for the folder, then scan it as a task of this dialog."""
        folder = self.choose_comfyui_folder()
        if not folder:
            return None
        self.say(f"Scanning {folder}…")
        return self.tasks.start(self.add_comfyui(folder), name=f"scanning {folder}")

    def start_cached(self) -> asyncio.Task:
        self.say("Looking through the Hugging Face cache…")
        return self.tasks.start(self.add_cached(), name="scanning the Hugging Face cache")

    async def add_comfyui(self, folder: str | Path) -> list[ml.LibraryEntry]:
        """Scan a ComfyUI, A1111/Forge or InvokeAI models folder (on a worker thread: a big
        folder's checkpoint headers take seconds to read), then add what it holds."""
        self.say(f"Scanning {folder}…")
        try:
            _tools, found = await asyncio.to_thread(ml.scan_folder, folder)
        except (OSError, ModelError) as exc:
            self.say(f"{folder} could not be scanned: {exc}")
            return []
        added = self.library.add_scanned(folder, found)  # remembered, as `main.py library add` does
        usable = sum(e.usable for e in found)
        adapters = sum(e.kind not in (ml.PIPELINE, ml.DENOISER) for e in found)
        others = len(found) - usable - adapters
        self.say(f"ComfyUI folder {folder}: {len(found)} file(s) found, {added} new: {usable} usable as a stage's "
                 f"model, {adapters} adapter(s) (LoRAs, ControlNets, IP-Adapters) for the stage editor"
                 + (f", {others} that say why not in their tooltip." if others else "."))
        self._changed()
        return found

    async def add_cached(self) -> list[ml.LibraryEntry]:
        """Every diffusers model and adapter the Hugging Face cache holds (the cache is
        walked on a worker thread)."""
        found, adapters = await asyncio.to_thread(lambda: (ml.cached_hub_models(), ml.cached_hub_adapters()))
        entries = [ml.LibraryEntry(c.repo_id, c.repo_id, "hf-cache", c.family, ml.PIPELINE, c.note)
                   for c in found]
        entries = [e for e in entries + adapters
                   if self.library.find(e.ref) is None or self.library.find(e.ref).source == "hf-cache"]
        added = self.library.add_many(entries)
        self.say(f"The Hugging Face cache holds {len(found)} diffusers model(s) and {len(adapters)} adapter(s); "
                 f"{added} added." if found or adapters else "The Hugging Face cache holds no diffusers model yet.")
        self._changed()
        return entries

    def _double_clicked(self, row: int, _column: int) -> None:
        self.table.selectRow(row)
        self.use_selected()

    def use_selected(self) -> bool:
        e = self.selected()
        if e is None or not e.usable:
            return False
        self.useModel.emit(e.ref)
        self.say(f"{e.name} is now the selected stage's model.")
        return True

    def remove_selected(self) -> bool:
        e = self.selected()
        if e is None or e.source == "builtin":
            return False
        self.library.remove(e.ref)
        self.say(f"Removed {e.name} from the list (its files stay where they are).")
        self._changed()
        return True
