"""The sweep panel: choose a stage parameter and its values for X (and optionally Y), run
the sweep on the engine thread, see the labelled grid; a cell opens in the before/after
viewer. Specs and runs are core.sweep's; this panel only builds the spec text."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from core.errors import ProjectError
from core.project import Project
from core.sweep import PROJECT_PARAMS, cell_at, cell_caption, cells, parse_axis, stage_params

NONE = "(none)"


def params_for(project: Project) -> list[str]:
    """Every sweepable parameter of the project, as spec prefixes ('2.strength', 'seed')."""
    out = list(PROJECT_PARAMS)
    for i, stage in project.enabled_stages():
        out += [f"{i + 1}.{p}" for p in stage_params(project, i) if p != "lora_weight"]
        out += [f"{i + 1}.lora{n + 1}.weight" for n in range(len(stage.loras))]
    return out


class AxisRow(QWidget):
    def __init__(self, optional: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.optional = optional
        self.param = QComboBox()
        self.values = QLineEdit()
        self.values.setPlaceholderText("values: 0.1, 0.2, 0.3   (| between values that hold commas)")
        # A narrow dock squeezed the field to ",0.6": room for a few values at least.
        self.values.setMinimumWidth(self.values.fontMetrics().horizontalAdvance("0.25, 0.5, 0.75, 1.0") + 16)
        self.param.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.param)
        row.addWidget(self.values, 1)

    def set_params(self, names: list[str]) -> None:
        current = self.param.currentText()
        self.param.clear()
        self.param.addItems(([NONE] if self.optional else []) + names)
        if current:
            self.param.setCurrentText(current)

    def spec(self) -> str | None:
        if self.param.currentText() in ("", NONE):
            return None
        return f"{self.param.currentText()}={self.values.text()}"


class GridPicture(QLabel):
    """The grid, top-left aligned so a point on it is a point of grid.png."""

    doubleClicked = Signal(QPointF)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.setToolTip("Double-click a cell to open it in the before/after viewer")

    def mouseDoubleClickEvent(self, event) -> None:
        self.doubleClicked.emit(event.position())


def cell_title(cell) -> str:
    """What the viewer calls a cell's images, e.g. "sweep 2.strength=0.5, seed=3"."""
    return "sweep " + ", ".join(cell.labels)


class SweepPanel(QWidget):
    # (input image or None, output image, the cell's title) for the before/after viewer
    openCell = Signal(object, object, str)
    startSweep = Signal(object, object, object)  # (project, x axis, y axis or None)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.result = None
        self.x, self.y = AxisRow(False), AxisRow(True)
        self.run = QPushButton("Run sweep")
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.progress = QLabel()
        self.grid = GridPicture()
        scroll = QScrollArea()
        scroll.setWidget(self.grid)
        scroll.setWidgetResizable(True)
        self.cells = QListWidget()
        form = QFormLayout()
        form.addRow("X", self.x)
        form.addRow("Y", self.y)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run)
        layout.addWidget(self.problem)
        layout.addWidget(self.progress)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.cells)
        self.run.clicked.connect(self.start)
        self.cells.itemActivated.connect(self._open)
        self.grid.doubleClicked.connect(self.open_at)

    def set_project(self, project: Project) -> None:
        self.project = project
        names = params_for(project)
        self.x.set_params(names)
        self.y.set_params(names)

    def axes(self):
        """(x, y) from the rows, or raises ProjectError with the reason."""
        x_spec, y_spec = self.x.spec(), self.y.spec()
        if x_spec is None:
            raise ProjectError(["choose a parameter for X"])
        x = parse_axis(x_spec, self.project)
        y = parse_axis(y_spec, self.project) if y_spec else None
        cells(self.project, x, y)  # every cell checked before anything runs
        return x, y

    def start(self) -> bool:
        try:
            x, y = self.axes()
        except ProjectError as exc:
            self.problem.setText(str(exc))
            return False
        self.problem.clear()
        self.cells.clear()
        self.progress.setText(f"running {len(x.values) * (len(y.values) if y else 1)} cells…")
        self.startSweep.emit(self.project, x, y)
        return True

    def on_sweep_event(self, item) -> None:
        if isinstance(item, tuple):
            cell, _ = item
            self.progress.setText(f"cell {', '.join(cell.labels)}…")
            return
        self.show_result(item)

    def show_result(self, result) -> None:
        self.result = result
        self.progress.setText(f"{len(result.cells)} cells in {result.seconds:.1f} s")
        if result.grid is not None:
            self.grid.setPixmap(QPixmap(str(result.grid)))
        self.cells.clear()
        for n, cell in enumerate(result.cells):
            item = QListWidgetItem(f"{', '.join(cell.labels)} — {cell_caption(cell) or cell.error}")
            item.setData(256, n)
            self.cells.addItem(item)

    def _open(self, item: QListWidgetItem) -> None:
        self.open_cell(self.result.cells[item.data(256)])

    def open_cell(self, cell) -> None:
        if cell.image is not None:
            self.openCell.emit(cell.input_image, cell.image, cell_title(cell))

    def open_at(self, point: QPointF) -> bool:
        """Open the cell under `point` of the grid picture (its pixels are grid.png's)."""
        cell = cell_at(self.result, point.x(), point.y()) if self.result is not None else None
        if cell is None:
            return False
        self.open_cell(cell)
        return True
