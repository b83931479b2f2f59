"""Before/after viewer: two images of a run, compared by a wipe or side by side, with
zoom and pan shared by both (so they always stay in step), a 1:1 pixel zoom, a strip of
past runs, and save/copy of the image shown."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QGuiApplication, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSizePolicy, QSlider,
    QVBoxLayout, QWidget,
)

from core.document import Run
from gui.images import qimage_of
from gui.widgets import ElidedLabel, tool_button

WIPE, SIDE = "Wipe", "Side by side"


class CompareCanvas(QWidget):
    """Paints `left` and `right` with one transform: `zoom` (None: fit) and `center`, the
    image point shown at the middle of each pane."""

    viewChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.left: QImage | None = None
        self.right: QImage | None = None
        self.mode = WIPE
        self.wipe = 0.5
        self.zoom: float | None = None  # None: fit to the pane
        self.center = QPointF(0, 0)
        self._drag: QPointF | None = None
        self.setMinimumSize(240, 200)
        self.setMouseTracking(False)
        self.setCursor(Qt.OpenHandCursor)
        self._pix: dict[int, QPixmap] = {}
        # The reference image's rectangle as last painted (device-independent pixels): what
        # the zoom label must agree with.
        self.painted: QRectF | None = None

    # ---------------------------------------------------------------- state

    def set_images(self, left: QImage | None, right: QImage | None) -> None:
        before = self._reference()
        first = before is None
        self.left, self.right = left, right
        self._pix.clear()  # QPixmaps are made here, on the GUI thread, and cached per image
        ref = self._reference()
        if ref is not None and not first and ref.size() != before.size() and self.zoom is not None:
            # A new size (another run, an init image): a zoom chosen for the old one means
            # nothing here (a 200x150 image stayed at 606%, cropped), so fit it again.
            self.set_zoom(None)
            return
        if ref is not None and (first or not self._center_inside(ref)):
            self.center = QPointF(ref.width() / 2, ref.height() / 2)
        self.update()
        self.viewChanged.emit()  # a fit zoom depends on the image's size

    def _center_inside(self, img: QImage) -> bool:
        return 0 <= self.center.x() <= img.width() and 0 <= self.center.y() <= img.height()

    def _reference(self) -> QImage | None:
        return self.right if self.right is not None else self.left

    def panes(self) -> list[QRectF]:
        r = QRectF(self.rect())
        if self.mode == SIDE:
            half = r.width() / 2
            return [QRectF(r.left(), r.top(), half - 1, r.height()), QRectF(r.left() + half + 1, r.top(), half - 1, r.height())]
        return [r]

    def effective_zoom(self) -> float:
        if self.zoom is not None:
            return self.zoom
        ref = self._reference()
        if ref is None or ref.isNull():
            return 1.0
        pane = self.panes()[0]
        return max(0.01, min(pane.width() / ref.width(), pane.height() / ref.height()))

    def set_zoom(self, zoom: float | None) -> None:
        self.zoom = None if zoom is None else max(0.05, min(64.0, zoom))
        if zoom is None and self._reference() is not None:
            ref = self._reference()
            self.center = QPointF(ref.width() / 2, ref.height() / 2)
        self.update()
        self.viewChanged.emit()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.update()
        self.viewChanged.emit()  # side by side halves the pane: a fit zoom changes

    def resizeEvent(self, event) -> None:
        # The canvas is resized by its layout without the viewer being resized (the strip
        # or a dock shown, a splitter moved): a fit zoom changes with it, and the label
        # said "fit 100%" for an image drawn at 139%.
        super().resizeEvent(event)
        self.viewChanged.emit()

    def drawn_scale(self) -> float:
        """Screen (device-independent) pixels per pixel of the reference image, as painted
        now: the image is drawn into a rectangle in device-independent pixels whatever the
        screen's devicePixelRatio, so this is the zoom a label may state."""
        ref = self._reference()
        if ref is None or ref.isNull():
            return self.effective_zoom()
        return self._target(ref, self.panes()[0]).width() / ref.width()

    def set_wipe(self, fraction: float) -> None:
        self.wipe = min(1.0, max(0.0, fraction))
        self.update()

    # ---------------------------------------------------------------- painting

    def _pixmap(self, img: QImage) -> QPixmap:
        key = img.cacheKey()
        if key not in self._pix:
            self._pix[key] = QPixmap.fromImage(img)
        return self._pix[key]

    def _target(self, img: QImage, pane: QRectF) -> QRectF:
        z = self.effective_zoom()
        # Every image is laid out in the reference image's coordinates, so a smaller input
        # (a stage that upscaled) still lines up with its output.
        ref = self._reference()
        sx = ref.width() / img.width() if ref else 1.0
        sy = ref.height() / img.height() if ref else 1.0
        w, h = img.width() * sx * z, img.height() * sy * z
        x = pane.center().x() - self.center.x() * z
        y = pane.center().y() - self.center.y() * z
        return QRectF(round(x), round(y), w, h)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().window().color().darker(115))
        # Nearest-neighbour at or above 1:1, so pixels are seen as they are.
        p.setRenderHint(QPainter.SmoothPixmapTransform, self.effective_zoom() < 1.0)
        if self.left is None and self.right is None:
            p.setPen(self.palette().text().color())
            p.drawText(self.rect(), Qt.AlignCenter, "Generate, or drop an image here")
            return
        panes = self.panes()
        ref = self._reference()
        self.painted = self._target(ref, panes[0]) if ref is not None else None
        if self.mode == SIDE:
            for img, pane in zip((self.left, self.right), panes):
                if img is not None:
                    p.save()
                    p.setClipRect(pane)
                    p.drawPixmap(self._target(img, pane), self._pixmap(img), QRectF(img.rect()))
                    p.restore()
            p.setPen(QPen(self.palette().mid().color(), 2))
            p.drawLine(panes[1].topLeft(), panes[1].bottomLeft())
            return
        pane = panes[0]
        if self.right is not None:
            p.drawPixmap(self._target(self.right, pane), self._pixmap(self.right), QRectF(self.right.rect()))
        x = pane.left() + pane.width() * self.wipe
        if self.left is not None:
            p.save()
            p.setClipRect(QRectF(pane.left(), pane.top(), x - pane.left(), pane.height()))
            p.drawPixmap(self._target(self.left, pane), self._pixmap(self.left), QRectF(self.left.rect()))
            p.restore()
        if self.left is not None and self.right is not None:  # one image (a live preview): no line
            p.setPen(QPen(Qt.white, 2))
            p.drawLine(QPointF(x, pane.top()), QPointF(x, pane.bottom()))

    # ---------------------------------------------------------------- zoom and pan

    def wheelEvent(self, event) -> None:
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.set_zoom(self.effective_zoom() * factor)

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            self._drag = event.position()
            self.setCursor(Qt.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:
        if self._drag is None:
            return
        delta = event.position() - self._drag
        self._drag = event.position()
        self.pan(delta.x(), delta.y())

    def pan(self, dx: float, dy: float) -> None:
        """Move the view by screen pixels; both panes follow (they share the centre)."""
        if self.zoom is None:
            self.zoom = self.effective_zoom()
        z = self.effective_zoom()
        self.center = QPointF(self.center.x() - dx / z, self.center.y() - dy / z)
        self.update()
        self.viewChanged.emit()

    def mouseReleaseEvent(self, _event) -> None:
        self._drag = None
        self.setCursor(Qt.OpenHandCursor)

    def mouseDoubleClickEvent(self, _event) -> None:
        self.set_zoom(None if self.zoom is not None else 1.0)


class CompareView(QWidget):
    """The canvas with its pickers and tools, and the strip of past runs."""

    runSelected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[Run] = []
        self.run: Run | None = None
        self._live: QImage | None = None
        # Where the save dialog opens and whom it tells where it was left (the window's settings).
        self.dialog_dir: Callable[[], str] = lambda: str(Path.home())
        self.dialog_used: Callable[[str], None] = lambda path: None
        self.canvas = CompareCanvas()
        self.left_pick = QComboBox()
        self.left_pick.setObjectName("compare_left")
        self.right_pick = QComboBox()
        self.right_pick.setObjectName("compare_right")
        for pick in (self.left_pick, self.right_pick):
            # Long source names must not set the viewer's minimum width (a laptop's is small).
            pick.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            pick.setMinimumContentsLength(8)
        self.mode = QComboBox()
        self.mode.addItems([WIPE, SIDE])
        self.fit_button = tool_button("Fit", "Fit the image to the view", lambda: self.canvas.set_zoom(None))
        self.one_button = tool_button("1:1", "One image pixel per screen pixel (device-independent: two device pixels on a 200% display)", lambda: self.canvas.set_zoom(1.0))
        self.zoom_label = QLabel()
        self.live_label = ElidedLabel()
        self.live_label.setObjectName("live_label")
        self.live_label.setStyleSheet("color: #b00020; font-weight: bold;")
        # One width, kept while hidden: the caption changes every step and comes and goes
        # with each run, and nothing beside it (or the column's divider) may move with it.
        bold = QFont(self.live_label.font())
        bold.setBold(True)
        self.live_label.setFixedWidth(QFontMetrics(bold).horizontalAdvance("● live: refiner, step 188") + 4)
        self.zoom_label.setFixedWidth(self.zoom_label.fontMetrics().horizontalAdvance("fit 6400%") + 4)
        policy = QSizePolicy(QSizePolicy.Fixed, QSizePolicy.Preferred)
        policy.setRetainSizeWhenHidden(True)
        self.live_label.setSizePolicy(policy)
        self.live_label.hide()
        self.save_button = tool_button("Save…", "Save the image shown on the right", self.save_shown)
        self.copy_button = tool_button("Copy", "Copy the image shown on the right", self.copy_shown)
        self.wipe_slider = QSlider(Qt.Horizontal)
        self.wipe_slider.setRange(0, 1000)
        self.wipe_slider.setValue(500)
        self.wipe_slider.setToolTip("Wipe: left of the line is the 'before' image")
        self.strip = QListWidget()
        self.strip.setObjectName("run_strip")
        self.strip.setViewMode(QListWidget.IconMode)
        self.strip.setFlow(QListWidget.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(48, 48))
        self.strip.setFixedHeight(76)
        self.strip.setMovement(QListWidget.Static)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Before"))
        bar.addWidget(self.left_pick, 1)
        bar.addWidget(QLabel("After"))
        bar.addWidget(self.right_pick, 1)
        bar.addWidget(self.mode)
        # The view tools share the wipe slider's row: one toolbar would make the viewer's
        # minimum width more than a laptop's third column has.
        tools = QHBoxLayout()
        tools.addWidget(self.wipe_slider, 1)
        tools.addStretch(0)
        tools.addWidget(self.live_label)  # here, not above: the pickers' row has no room left
        tools.addWidget(self.fit_button)
        tools.addWidget(self.one_button)
        tools.addWidget(self.zoom_label)
        tools.addWidget(self.save_button)
        tools.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(tools)
        layout.addWidget(self.strip)

        self.left_pick.currentIndexChanged.connect(self._show_picked)
        self.right_pick.currentIndexChanged.connect(self._show_picked)
        self.mode.currentTextChanged.connect(self._set_mode)
        self.wipe_slider.valueChanged.connect(lambda v: self.canvas.set_wipe(v / 1000))
        self.canvas.viewChanged.connect(self._show_zoom)
        self.strip.currentRowChanged.connect(self._on_strip)
        self._show_zoom()


    def _set_mode(self, mode: str) -> None:
        self.canvas.set_mode(mode)
        self.wipe_slider.setVisible(mode == WIPE)

    def _show_zoom(self) -> None:
        z = self.canvas.drawn_scale()
        self.zoom_label.setText(("fit " if self.canvas.zoom is None else "") + f"{z * 100:.0f}%")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._show_zoom()

    # ---------------------------------------------------------------- runs

    def set_runs(self, runs: list[Run]) -> None:
        """Replace the strip (a project was opened); shows the newest run."""
        self.runs = list(runs)
        self.strip.blockSignals(True)
        self.strip.clear()
        for run in self.runs:
            self._add_strip_item(run)
        self.strip.blockSignals(False)
        if self.runs:
            self.strip.setCurrentRow(len(self.runs) - 1)
            self.show_run(self.runs[-1])
        else:
            self.run = None
            self._fill_pickers()
            self.canvas.set_images(None, None)

    def _add_strip_item(self, run: Run) -> None:
        item = QListWidgetItem(run.label)
        if run.stages:
            item.setIcon(QIcon(QPixmap.fromImage(qimage_of(run.stages[-1].image))))
        item.setToolTip(f"{run.label}: {run.outcome}, {run.seconds:.1f} s, {run.started}")
        self.strip.addItem(item)

    def begin_run(self, run: Run) -> None:
        self.runs.append(run)
        self.strip.blockSignals(True)
        self._add_strip_item(run)
        self.strip.setCurrentRow(len(self.runs) - 1)
        self.strip.blockSignals(False)
        self.run = run
        self._fill_pickers()

    def stage_added(self, run: Run) -> None:
        """A stage of `run` finished: show it against what it refined."""
        row = self.runs.index(run) if run in self.runs else -1
        if row >= 0 and run.stages:
            self.strip.item(row).setIcon(QIcon(QPixmap.fromImage(qimage_of(run.stages[-1].image))))
            self.strip.item(row).setToolTip(f"{run.label}: {run.outcome}, {run.seconds:.1f} s")
        if run is self.run:
            self._fill_pickers()

    def stage_updated(self, run: Run) -> None:
        """A stage of `run` got its decode in place of a preview: the same picks, new pixels."""
        row = self.runs.index(run) if run in self.runs else -1
        if row >= 0 and run.stages:
            self.strip.item(row).setIcon(QIcon(QPixmap.fromImage(qimage_of(run.stages[-1].image))))
        if run is self.run and self._live is None:
            self._show_picked()

    def show_run(self, run: Run) -> None:
        self.run = run
        self._fill_pickers()

    def _on_strip(self, row: int) -> None:
        if 0 <= row < len(self.runs):
            self.show_run(self.runs[row])
            self.runSelected.emit(row)

    def all_sources(self) -> list[tuple[str, object]]:
        """What the pickers offer: the shown run's images by their own names first, then every
        other run's as "run N · name", so Before/After can compare two runs."""
        sources = list(self.run.sources()) if self.run else []
        for run in reversed(self.runs):
            if run is not self.run:
                sources += [(f"{run.label} · {name}", image) for name, image in run.sources()]
        return sources

    def _fill_pickers(self) -> None:
        sources = self.run.sources() if self.run else []
        every = self.all_sources()
        for pick in (self.left_pick, self.right_pick):
            pick.blockSignals(True)
            pick.clear()
            for name, _ in every:
                pick.addItem(name)
            if len(sources) < len(every):
                pick.insertSeparator(len(sources))
            pick.blockSignals(False)
        if sources:
            # Default: the last stage's output against what it started from.
            right = len(sources) - 1
            left = max(0, right - 1)
            self.left_pick.setCurrentIndex(left)
            self.right_pick.setCurrentIndex(right)
        self._show_picked()

    def compare(self, left_name: str, right_name: str) -> None:
        """Pick the two images by name (as listed in the pickers)."""
        self.left_pick.setCurrentText(left_name)
        self.right_pick.setCurrentText(right_name)

    def compare_stage(self, label: str) -> None:
        """A stage's input against its output."""
        self.compare(f"{label} input", f"{label} output")

    def _show_picked(self) -> None:
        self._live = None
        self.live_label.hide()
        sources = dict(self.all_sources())
        self.canvas.set_images(qimage_of(sources.get(self.left_pick.currentText())),
                               qimage_of(sources.get(self.right_pick.currentText())))
        self._show_zoom()

    def show_live(self, image: QImage, caption: str = "") -> None:
        """A live preview of the stage running now, until the stage's own image arrives;
        the pickers go blank meanwhile, since what shows is neither of their images."""
        self._live = image
        for pick in (self.left_pick, self.right_pick):
            pick.blockSignals(True)
            pick.setCurrentIndex(-1)
            pick.blockSignals(False)
        self.live_label.setText(f"● live: {caption}" if caption else "● live")
        self.live_label.show()
        self.canvas.set_images(None, image)
        self._show_zoom()

    def show_pair(self, before, after, labels: tuple[str, str]) -> None:
        """Two images from outside the runs (a sweep cell): the strip's highlight goes, since
        no run is shown, and the pickers name what is shown (labels[0] for the left)."""
        self.run = None
        self._live = None
        self.live_label.hide()
        self.strip.blockSignals(True)
        self.strip.setCurrentRow(-1)
        self.strip.clearSelection()
        self.strip.blockSignals(False)
        for pick, label, image in ((self.left_pick, labels[0], before), (self.right_pick, labels[1], after)):
            pick.blockSignals(True)
            pick.clear()
            if image is not None:
                pick.addItem(label)
            pick.blockSignals(False)
        self.canvas.set_images(qimage_of(before) if before is not None else None,
                               qimage_of(after) if after is not None else None)
        self._show_zoom()

    def show_single(self, image: QImage | None) -> None:
        """One image with nothing to compare (an init image dropped before any run)."""
        self.run = None
        self.live_label.hide()
        for pick in (self.left_pick, self.right_pick):
            pick.blockSignals(True)
            pick.clear()
            pick.blockSignals(False)
        self.canvas.set_images(None, image)

    # ---------------------------------------------------------------- save and copy

    def shown_image(self) -> QImage | None:
        return self.canvas.right or self.canvas.left

    def save_shown(self, path: str | None = None) -> bool:
        image = self.shown_image()
        if image is None:
            return False
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save image", str(Path(self.dialog_dir()) / "image.png"),
                                                  "PNG (*.png)")
            if path:
                self.dialog_used(path)
        if not path:
            return False
        from core.atomic import write_bytes
        from gui.images import qimage_to_png

        write_bytes(path, qimage_to_png(image))
        return True

    def copy_shown(self) -> None:
        image = self.shown_image()
        if image is not None:
            QGuiApplication.clipboard().setImage(image)
