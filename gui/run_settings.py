"""Run settings: how the models of a job share memory (Project.memory_policy) and the
precision they run in (Project.dtype). Saved with the project, like every other field."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QWidget

from core.project import DTYPES, MEMORY_POLICIES, Project

MEMORY_LABELS = {"auto": "auto", "sequential": "sequential", "resident": "resident", "offload": "CPU offload"}
MEMORY_HELP = {
    "auto": "auto: keep every model resident if they fit in free VRAM, one at a time if the largest fits, "
            "CPU offload otherwise (without a GPU, system RAM holds them all)",
    "sequential": "sequential: load one stage's model at a time and release it before the next stage loads; "
                  "needs VRAM for the largest model only, but models load again on every run",
    "resident": "resident: keep every model of the chain loaded on the device; the fastest repeat runs, "
                "needs VRAM for all of them at once",
    "offload": "CPU offload: weights stay in system RAM and each component moves to the GPU only while it "
               "runs; the least VRAM, and the slowest",
}
DTYPE_LABELS = {"auto": "auto", "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}
DTYPE_HELP = {
    "auto": "auto: fp32 on a CPU; on a GPU bf16 for flow-matching models (Flux, SD3, Chroma, Z-Image, "
            "FLUX.2, ERNIE, Qwen) and fp16 for Stable Diffusion and SDXL",
    "bf16": "bf16: half the memory of fp32 with fp32's range; needs a GPU that supports it (NVIDIA Ampere "
            "or newer)",
    "fp16": "fp16: half the memory of fp32, fast on every GPU; some flow-matching models (Z-Image) break "
            "in fp16",
    "fp32": "fp32: full precision; twice the memory of bf16/fp16 and slower on a GPU, the reference for "
            "comparisons",
}


def _combo(values, labels: dict[str, str], help: dict[str, str], name: str) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for v in values:
        combo.addItem(labels.get(v, v), v)
        combo.setItemData(combo.count() - 1, help.get(v, ""), Qt.ToolTipRole)
    return combo


class RunSettings(QGroupBox):
    """Edits project.memory_policy and project.dtype in place; `changed` after each edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Run settings", parent)
        self._project: Project | None = None
        self.memory = _combo(MEMORY_POLICIES, MEMORY_LABELS, MEMORY_HELP, "memory_policy")
        self.precision = _combo(DTYPES, DTYPE_LABELS, DTYPE_HELP, "dtype")
        form = QFormLayout(self)
        form.addRow("Memory", self.memory)
        form.addRow("Precision", self.precision)
        self.memory.currentIndexChanged.connect(self._write)
        self.precision.currentIndexChanged.connect(self._write)
        self._tips()

    def load(self, project: Project) -> None:
        self._project = None
        for combo, value in ((self.memory, project.memory_policy), (self.precision, project.dtype)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)
        self._project = project
        self._tips()

    def set_memory_policy(self, value: str) -> None:
        self.memory.setCurrentIndex(self.memory.findData(value))

    def set_dtype(self, value: str) -> None:
        self.precision.setCurrentIndex(self.precision.findData(value))

    def _tips(self) -> None:
        self.memory.setToolTip(MEMORY_HELP.get(self.memory.currentData(), ""))
        self.precision.setToolTip(DTYPE_HELP.get(self.precision.currentData(), ""))

    def _write(self) -> None:
        self._tips()
        if self._project is None:
            return
        self._project.memory_policy = self.memory.currentData()
        self._project.dtype = self.precision.currentData()
        self.changed.emit()
