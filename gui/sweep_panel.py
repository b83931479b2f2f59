"""The sweep panel: choose a stage parameter and its values for X (and optionally Y), run
the sweep on the engine thread, see the labelled grid; a cell opens in the before/after
viewer. With a scorer in "Pick with", the engine thread scores the cells after the sweep
and picks the best within the drift limit (core.sweep_pick, as `sweep --pick` does): the
grid marks it, the panel says what was passed over, and `picked` hands it to the window,
which applies it to the open project as an undoable edit. Specs, runs and the pick rule
are core's; this panel only builds the spec text."""
from __future__ import annotations

import math
from typing import Callable

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QPushButton, QScrollArea, QSizePolicy, QToolTip,
                               QVBoxLayout, QWidget)

from core.errors import ProjectError
from core.project import Project
from core.sweep import PROJECT_PARAMS, cell_at, cell_caption, cells, grid_layout, parse_axis, stage_params
from core.sweep_pick import Pick, PickRequest
from gui.widgets import NoteLabel
from gui.worker import PickProblem

NONE = "(none)"
# The narrowest a grid's cell is drawn when the grid is shrunk to the tab's width: a
# thumbnail still tells cells apart; a grid wider than that scrolls.
MIN_CELL = 48


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


class GridPicture(QWidget):
    """The grid, top-left aligned and drawn as wide as the tab (never larger than
    grid.png, nor with cells narrower than MIN_CELL): a 6 x 6 sweep fits beside the
    prompt column instead of scrolling sideways. Points it reports are grid.png's."""

    doubleClicked = Signal(QPointF)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap = QPixmap()
        self._min_scale = 1.0
        self.describe: Callable[[QPointF], str | None] = lambda point: None  # the tooltip at a point
        policy = QSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)  # the scroll area gives it the height its width draws
        self.setSizePolicy(policy)
        self.setToolTip("Double-click a cell to open it in the before/after viewer")

    def set_grid(self, pixmap: QPixmap, cell_width: int) -> None:
        self._pixmap = pixmap
        self._min_scale = min(1.0, MIN_CELL / cell_width) if cell_width else 1.0
        self.updateGeometry()
        self.update()

    def pixmap(self) -> QPixmap:
        return self._pixmap

    def _scale_at(self, width: int) -> float:
        if self._pixmap.isNull():
            return 1.0
        return max(self._min_scale, min(1.0, width / self._pixmap.width()))

    def shown_scale(self) -> float:
        """How large grid.png is drawn now (1: as written)."""
        return self._scale_at(self.width())

    def painted_width(self) -> int:
        return math.ceil(self._pixmap.width() * self.shown_scale())

    def sizeHint(self) -> QSize:
        return self._pixmap.size() if not self._pixmap.isNull() else QSize(0, 0)

    def minimumSizeHint(self) -> QSize:
        if self._pixmap.isNull():
            return QSize(0, 0)
        return QSize(math.ceil(self._pixmap.width() * self._min_scale), math.ceil(self._pixmap.height() * self._min_scale))

    def hasHeightForWidth(self) -> bool:
        return not self._pixmap.isNull()

    def heightForWidth(self, width: int) -> int:
        return math.ceil(self._pixmap.height() * self._scale_at(width)) if not self._pixmap.isNull() else 0

    def paintEvent(self, event) -> None:
        if self._pixmap.isNull():
            return
        scale = self.shown_scale()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.SmoothPixmapTransform)
        painter.drawPixmap(QRectF(0, 0, self._pixmap.width() * scale, self._pixmap.height() * scale), self._pixmap,
                           QRectF(self._pixmap.rect()))

    def to_grid(self, point: QPointF) -> QPointF:
        """A point of this widget as the point of grid.png drawn there."""
        return point / self.shown_scale()

    def event(self, event) -> bool:
        if event.type() == QEvent.ToolTip:
            # Shrunk, the grid's own labels are small: the cell under the mouse says its values.
            text = self.describe(self.to_grid(QPointF(event.pos())))
            QToolTip.showText(event.globalPos(), text or self.toolTip(), self)
            return True
        return super().event(event)

    def mouseDoubleClickEvent(self, event) -> None:
        self.doubleClicked.emit(self.to_grid(event.position()))


def cell_title(cell) -> str:
    """What the viewer calls a cell's images, e.g. "sweep 2.strength=0.5, seed=3"."""
    return "sweep " + ", ".join(cell.labels)


class PickRow(QWidget):
    """"Pick with": a scorer reference (empty: no pick) and the least SSIM a picked cell
    keeps to its input (its lowest value: no limit)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scorer = QLineEdit()
        self.scorer.setPlaceholderText("optional scorer: builtin:demo-scorer, clip:<folder or Hub id>, "
                                       "aesthetic:<file>")
        self.scorer.setToolTip("Score each cell's final image and apply the best one to the project (Ctrl+Z undoes)")
        self.max_drift = QDoubleSpinBox()
        self.max_drift.setRange(0.0, 1.0)
        self.max_drift.setSingleStep(0.05)
        self.max_drift.setDecimals(2)
        self.max_drift.setSpecialValueText("any drift")  # 0: no limit
        self.max_drift.setToolTip("Max drift: only cells whose SSIM to their input is at least this are picked")
        self.max_drift.setEnabled(False)
        self.scorer.textChanged.connect(lambda text: self.max_drift.setEnabled(bool(text.strip())))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.scorer, 1)
        row.addWidget(QLabel("SSIM ≥"))
        row.addWidget(self.max_drift)

    def request(self) -> PickRequest | None:
        ref = self.scorer.text().strip()
        if not ref:
            return None
        limit = self.max_drift.value()
        return PickRequest(ref, limit if limit > self.max_drift.minimum() else None)


class SweepPanel(QWidget):
    # (input image or None, output image, the cell's title) for the before/after viewer
    openCell = Signal(object, object, str)
    # (project, x axis, y axis or None, core.sweep_pick.PickRequest or None)
    startSweep = Signal(object, object, object, object)
    picked = Signal(object, object, object)  # (the picked cell, x axis, y axis or None)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.result = None
        self.chosen: Pick | None = None
        self._shown = False  # whether this sweep's result has come
        self.x, self.y = AxisRow(False), AxisRow(True)
        self.pick = PickRow()
        self.run = QPushButton("Run sweep")
        self.problem = NoteLabel()
        self.progress = NoteLabel()
        self.pick_note = NoteLabel()  # what was picked, and what was passed over
        self.grid = GridPicture()
        scroll = QScrollArea()
        scroll.setWidget(self.grid)
        scroll.setWidgetResizable(True)
        scroll.setMinimumHeight(130)  # a row of cells readable at a glance; the tab scrolls rather than squash it
        self.cells = QListWidget()
        # A few rows: the grid above is what the tab is for; the list names the cells and scrolls.
        self.cells.setMaximumHeight(self.cells.fontMetrics().lineSpacing() * 3 + 2 * self.cells.frameWidth() + 4)
        form = QFormLayout()
        form.addRow("X", self.x)
        form.addRow("Y", self.y)
        form.addRow("Pick with", self.pick)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run)
        layout.addWidget(self.problem)
        layout.addWidget(self.progress)
        layout.addWidget(self.pick_note)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.cells)
        self.run.clicked.connect(self.start)
        self.cells.itemActivated.connect(self._open)
        self.grid.doubleClicked.connect(self.open_at)
        self.grid.describe = self._describe_at

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
        self.pick_note.clear()
        self.chosen, self._shown = None, False
        self.cells.clear()
        self.progress.setText(f"running {len(x.values) * (len(y.values) if y else 1)} cells…")
        self.startSweep.emit(self.project, x, y, self.pick.request())
        return True

    def on_sweep_event(self, item) -> None:
        if isinstance(item, tuple):
            cell, _ = item
            self.progress.setText(f"cell {', '.join(cell.labels)}…")
        elif isinstance(item, PickProblem):
            self.problem.setText(item.message)
            if not self._shown:  # refused before the first cell
                self.progress.setText("no cell ran")
        elif isinstance(item, Pick):
            self.show_pick(item)
        else:
            self.show_result(item)

    def show_pick(self, chosen: Pick) -> None:
        """The pick in words and in the list (the grid came marked); the window applies it."""
        self.chosen = chosen
        passed = f" Passed over: {chosen.why}." if chosen.why else ""
        if chosen.cell is None:
            self.pick_note.setText(f"No cell to pick.{passed}")
            return
        cell = chosen.cell
        self.pick_note.setText(f"Picked {', '.join(cell.labels)} (score {cell.score:.4f}), framed in green.{passed}")
        index = next((n for n, c in enumerate(self.result.cells) if c is cell), None)
        if index is not None and index < self.cells.count():
            self.cells.item(index).setText("✓ picked — " + self.cells.item(index).text())
        self.picked.emit(cell, self.result.x, self.result.y)

    def show_result(self, result) -> None:
        self.result, self.chosen, self._shown = result, None, True
        self.progress.setText(f"{len(result.cells)} cells in {result.seconds:.1f} s")
        if result.grid is not None:
            self.grid.set_grid(QPixmap(str(result.grid)), grid_layout(result.cells, result.x, result.y)[2])
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

    def _describe_at(self, point: QPointF) -> str | None:
        cell = cell_at(self.result, point.x(), point.y()) if self.result is not None else None
        if cell is None:
            return None
        caption = cell_caption(cell) or cell.error
        return ", ".join(cell.labels) + (f" — {caption}" if caption else "") + "\nDouble-click to open it in the viewer"

    def open_at(self, point: QPointF) -> bool:
        """Open the cell under `point` of the grid picture (its pixels are grid.png's)."""
        cell = cell_at(self.result, point.x(), point.y()) if self.result is not None else None
        if cell is None:
            return False
        self.open_cell(cell)
        return True
