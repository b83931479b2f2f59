"""Output size: presets for the base model's native size, custom sizes snapped to the
multiple the model needs, a W/H swap and "match init image"."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QToolButton, QVBoxLayout, QWidget

from core.project import Project, snap, stage_sizes
from core.model_info import ModelInfo

# SDXL-class aspect buckets; other native sizes scale them.
ASPECTS_1024 = ((1024, 1024), (1152, 896), (896, 1152), (1024, 1536), (1536, 1024))
CUSTOM = "Custom"


def presets(info: ModelInfo) -> list[tuple[int, int]]:
    """Sizes to offer for a model: its aspect buckets, or for a small model (the 64 px
    demo) multiples of its native size, where aspect buckets would be a few pixels apart."""
    if info.native >= 512:
        scale = info.native / 1024
        out = [(snap(round(w * scale), info.multiple), snap(round(h * scale), info.multiple)) for w, h in ASPECTS_1024]
    else:
        n = info.native
        out = [(n * k, n * k) for k in (1, 2, 4)] + [(n * 2, n), (n, n * 2)]
    seen: list[tuple[int, int]] = []
    for size in out:
        if size not in seen:
            seen.append(size)
    return seen


class ResolutionPicker(QWidget):
    changed = Signal()
    matchInitRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self._info = ModelInfo(1024, 8, None)
        self.preset = QComboBox()
        self.preset.setObjectName("size_preset")
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for spin in (self.width_spin, self.height_spin):
            spin.setRange(8, 8192)
            spin.setKeyboardTracking(False)  # snap once the user is done typing
        self.swap = QToolButton()
        self.swap.setText("⇄")
        self.swap.setToolTip("Swap width and height")
        self.match_init = QToolButton()
        self.match_init.setText("Match init")
        self.match_init.setToolTip("Use the init image's size, snapped to the model's multiple")
        self.note = QLabel()
        self.note.setObjectName("size_note")
        row = QHBoxLayout()
        row.addWidget(self.preset, 1)
        row.addWidget(self.width_spin)
        row.addWidget(QLabel("×"))
        row.addWidget(self.height_spin)
        row.addWidget(self.swap)
        row.addWidget(self.match_init)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Size"))
        layout.addLayout(row)
        layout.addWidget(self.note)
        self.preset.activated.connect(self._on_preset)
        self.width_spin.valueChanged.connect(self._on_spin)
        self.height_spin.valueChanged.connect(self._on_spin)
        self.swap.clicked.connect(self.swap_sides)
        self.match_init.clicked.connect(self.matchInitRequested)

    def load(self, project: Project, info: ModelInfo) -> None:
        self._project = None
        self._info = info
        self.preset.clear()
        for w, h in presets(info):
            self.preset.addItem(f"{w} × {h}", f"{w}x{h}")
        self.preset.addItem(CUSTOM, "")
        for spin in (self.width_spin, self.height_spin):
            spin.setSingleStep(info.multiple)
        self.width_spin.setValue(project.width)
        self.height_spin.setValue(project.height)
        self.match_init.setEnabled(project.init_image is not None)
        self._project = project
        self._sync_preset()

    def set_size(self, width: int, height: int) -> None:
        """Set a size, snapped to the model's multiple."""
        m = self._info.multiple
        w, h = snap(width, m), snap(height, m)
        project, self._project = self._project, None
        self.width_spin.setValue(w)
        self.height_spin.setValue(h)
        self._project = project
        self._write()

    def swap_sides(self) -> None:
        self.set_size(self.height_spin.value(), self.width_spin.value())

    def _on_preset(self, index: int) -> None:
        size = self.preset.itemData(index)
        if size:
            w, h = size.split("x")
            self.set_size(int(w), int(h))

    def _on_spin(self) -> None:
        if self._project is None:
            return
        self.set_size(self.width_spin.value(), self.height_spin.value())

    def _write(self) -> None:
        if self._project is None:
            return
        w, h = self.width_spin.value(), self.height_spin.value()
        if (w, h) != (self._project.width, self._project.height):
            self._project.width, self._project.height = w, h
            self.changed.emit()
        self._sync_preset()

    def _sync_preset(self) -> None:
        size = (self.width_spin.value(), self.height_spin.value())
        index = self.preset.findData(f"{size[0]}x{size[1]}")
        self.preset.setCurrentIndex(index if index >= 0 else self.preset.count() - 1)
        native = self._info.native
        megapixels = size[0] * size[1] / (native * native)
        note = f"native {native} px, multiple of {self._info.multiple}; {megapixels:.2g}× native area"
        if self._project is not None:
            sizes = stage_sizes(self._project)
            final = sizes[max(sizes)] if sizes else size
            if final != size:  # a stage upscales: say where the chain ends
                note += f"; output {final[0]}×{final[1]}"
        self.note.setText(note)
