"""The adapters of the selected stage: LoRAs with their weights, a ControlNet with its
control image and the map it will see (Canny edges, updated as the thresholds move), and
IP-Adapter reference images with their scales. Edits the Stage in place; what a file is
(and whether it fits the stage's family) is read from its header by core.adapters,
which never imports torch, so this runs on the GUI thread."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QListWidget, QSpinBox, QVBoxLayout, QWidget,
)

from core.errors import ModelError, ProjectError
from core.families import CONTROLNET, IP_ADAPTER, LORA, Family
from core.project import MAX_ADAPTER_WEIGHT, ControlNet, IPAdapter, Lora, Stage
from gui.images import pil_to_qimage
from gui.widgets import tool_button

PREVIEW = 112  # pixels of the control-map preview
REF_HINT = "builtin:demo-lora, owner/repo/file.safetensors or a path"


def _offline_or_pending(ref: str, hub_shaped: bool, resolve) -> str:
    """Resolve a typed reference without the network: '' when it is here, a note when it is
    a Hub reference not yet in the cache (it downloads when the stage first runs); a
    ModelError naming what is wrong otherwise. Never downloads: this runs on the GUI thread."""
    try:
        resolve()
    except ModelError:
        if not hub_shaped:
            raise
        return f"{ref} is not downloaded yet: it downloads when the stage first runs"
    return ""


def _weight_box(low: float, high: float, step: float = 0.05) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    return box


class ImageSlot(QLabel):
    """A thumbnail that takes a dropped image file (or a click on Browse) and says which."""

    dropped = Signal(str)

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setAcceptDrops(True)
        self.setFixedSize(PREVIEW, PREVIEW)
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setFrameShape(QLabel.StyledPanel)
        self.empty_text = text

    def show_path(self, path: str | None) -> None:
        pix = QPixmap(path) if path else QPixmap()
        if pix.isNull():
            self.setPixmap(QPixmap())
            self.setText(self.empty_text if not path else f"cannot show {Path(path).name}")
        else:
            self.setPixmap(pix.scaled(PREVIEW, PREVIEW, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.dropped.emit(urls[0].toLocalFile())


class AdapterEditor(QGroupBox):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Adapters", parent)
        self._stage: Stage | None = None
        self._family: Family | None = None
        self.problem = QLabel()
        self.problem.setObjectName("adapter_problem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.hide()
        self.notice = QLabel()  # what is fine but worth knowing (a Hub adapter not downloaded yet)
        self.notice.setObjectName("adapter_notice")
        self.notice.setWordWrap(True)
        self.notice.hide()

        # LoRAs
        self.lora_note = QLabel()
        self.lora_note.setWordWrap(True)
        self.loras = QListWidget()
        self.loras.setObjectName("loras")
        self.loras.setMaximumHeight(70)
        self.lora_weight = _weight_box(-MAX_ADAPTER_WEIGHT, MAX_ADAPTER_WEIGHT)
        self.lora_weight.setToolTip("The selected LoRA's weight (1 as trained)")
        self.add_lora_button = tool_button("Add LoRA…", "A LoRA .safetensors file (diffusers, kohya or civitai)",
                                           self._browse_lora)
        self.remove_lora_button = tool_button("Remove", "Remove the selected LoRA", self._remove_lora)
        # A LoRA by reference, typed or pasted: the file dialog cannot reach builtin: or Hub ones.
        self.lora_ref = QLineEdit()
        self.lora_ref.setObjectName("lora_ref")
        self.lora_ref.setPlaceholderText(REF_HINT)
        self.lora_ref.setToolTip("A LoRA reference: builtin:demo-lora, a Hub file (owner/repo/file.safetensors), "
                                 "a .safetensors path or a folder holding one; Enter adds it")
        self.add_lora_ref_button = tool_button("Add", "Add the LoRA typed beside", self._add_typed_lora)
        self._library: list = []  # core.model_library entries
        self.library_loras = QComboBox()
        self.library_loras.setObjectName("library_loras")
        self.library_loras.setToolTip("LoRAs in the model library that fit this stage's family")
        self.library_controlnets = QComboBox()
        self.library_controlnets.setObjectName("library_controlnets")
        self.library_controlnets.setToolTip("ControlNets in the model library that fit this stage's family")
        self.library_ip_adapters = QComboBox()
        self.library_ip_adapters.setObjectName("library_ip_adapters")
        self.library_ip_adapters.setToolTip("IP-Adapters in the model library that fit this stage's family")

        # ControlNet
        self.use_controlnet = QCheckBox("ControlNet")
        self.cn_model = QLineEdit()
        self.cn_model.setPlaceholderText("diffusers folder, Hub id or builtin:demo-controlnet")
        self.cn_browse = tool_button("…", "Choose a ControlNet folder", self._browse_controlnet)
        self.control_slot = ImageSlot("drop a control image here")
        self.control_slot.setObjectName("control_slot")
        self.control_browse = tool_button("Image…", "Choose the control image", self._browse_control_image)
        self.control_map = QLabel("the map the ControlNet sees")
        self.control_map.setObjectName("control_map")
        self.control_map.setFixedSize(PREVIEW, PREVIEW)
        self.control_map.setAlignment(Qt.AlignCenter)
        self.control_map.setWordWrap(True)
        self.control_map.setFrameShape(QLabel.StyledPanel)
        self.preprocessor = QComboBox()
        self.preprocessor.addItem("Canny edges", "canny")
        self.preprocessor.addItem("none (a ready edge or depth map)", "none")
        self.low, self.high = QSpinBox(), QSpinBox()
        for box, tip in ((self.low, "Canny's low threshold"), (self.high, "Canny's high threshold")):
            box.setRange(0, 255)
            box.setToolTip(tip)
        self.cn_scale = _weight_box(0.0, 2.0)
        self.cn_start, self.cn_end = _weight_box(0.0, 1.0), _weight_box(0.0, 1.0)

        # IP-Adapter
        self.ip_model = QLineEdit()
        self.ip_model.setPlaceholderText("IP-Adapter .safetensors or owner/repo/file.safetensors "
                                         "(image_encoder/ beside it)")
        self.ip_browse = tool_button("…", "Choose an IP-Adapter file", self._browse_ip_model)
        self.ip_images = QListWidget()
        self.ip_images.setObjectName("ip_images")
        self.ip_images.setMaximumHeight(60)
        self.ip_scale = _weight_box(0.0, MAX_ADAPTER_WEIGHT)
        self.add_ip_button = tool_button("Add image…", "A reference image for the IP-Adapter", self._browse_ip_image)
        self.remove_ip_button = tool_button("Remove", "Remove the selected reference image", self._remove_ip)

        self._build()
        self.library_loras.activated.connect(self._pick_library_lora)
        self.library_controlnets.activated.connect(self._pick_library_controlnet)
        self.library_ip_adapters.activated.connect(self._pick_library_ip_adapter)
        self.lora_ref.returnPressed.connect(self._add_typed_lora)
        self.loras.currentRowChanged.connect(self._show_lora_weight)
        self.lora_weight.valueChanged.connect(self._write_lora_weight)
        self.use_controlnet.toggled.connect(self._write_controlnet)
        self.cn_model.editingFinished.connect(self._typed_controlnet)
        self.control_slot.dropped.connect(self.set_control_image)
        for w in (self.low, self.high):
            w.valueChanged.connect(self._write_controlnet)
        for w in (self.cn_scale, self.cn_start, self.cn_end):
            w.valueChanged.connect(self._write_controlnet)
        self.preprocessor.currentIndexChanged.connect(self._write_controlnet)
        self.ip_model.editingFinished.connect(self._typed_ip_model)
        self.ip_images.currentRowChanged.connect(self._show_ip_scale)
        self.ip_scale.valueChanged.connect(self._write_ip)

    def _build(self) -> None:
        # Combos of long names (library entries, the preprocessor) must not set the stage
        # editor column's width: at 1366×768 it has a third of the screen, never a sideways
        # scroll bar.
        for combo, chars in ((self.library_loras, 8), (self.library_controlnets, 8), (self.preprocessor, 5)):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(chars)
        lora_buttons = QHBoxLayout()
        lora_buttons.addWidget(self.add_lora_button)
        lora_buttons.addWidget(self.remove_lora_button)
        lora_buttons.addWidget(QLabel("weight"))
        lora_buttons.addWidget(self.lora_weight)
        lora_buttons.addStretch(1)
        lora_typed = QHBoxLayout()
        lora_typed.addWidget(self.lora_ref, 1)
        lora_typed.addWidget(self.add_lora_ref_button)

        self.cn_box = QWidget()
        cn_form = QFormLayout(self.cn_box)
        cn_form.setContentsMargins(0, 0, 0, 0)
        model_row = QHBoxLayout()
        model_row.addWidget(self.cn_model, 1)
        model_row.addWidget(self.library_controlnets)
        model_row.addWidget(self.cn_browse)
        cn_form.addRow("Model", model_row)
        images = QHBoxLayout()
        images.addWidget(self.control_slot)
        images.addWidget(self.control_map)
        images.addWidget(self.control_browse, 0, Qt.AlignTop)
        images.addStretch(1)
        cn_form.addRow(images)
        thresholds = QHBoxLayout()
        thresholds.addWidget(self.preprocessor, 1)
        thresholds.addWidget(QLabel("low"))
        thresholds.addWidget(self.low)
        thresholds.addWidget(QLabel("high"))
        thresholds.addWidget(self.high)
        cn_form.addRow("Preprocess", thresholds)
        amounts = QHBoxLayout()
        for label, box in (("scale", self.cn_scale), ("from", self.cn_start), ("to", self.cn_end)):
            amounts.addWidget(QLabel(label))
            amounts.addWidget(box)
        amounts.addStretch(1)
        cn_form.addRow("Strength", amounts)

        self.ip_box = QWidget()
        ip_form = QFormLayout(self.ip_box)
        ip_form.setContentsMargins(0, 0, 0, 0)
        ip_row = QHBoxLayout()
        ip_row.addWidget(self.ip_model, 1)
        ip_row.addWidget(self.library_ip_adapters)
        ip_row.addWidget(self.ip_browse)
        ip_form.addRow("IP-Adapter", ip_row)
        ip_form.addRow(self.ip_images)
        ip_buttons = QHBoxLayout()
        ip_buttons.addWidget(self.add_ip_button)
        ip_buttons.addWidget(self.remove_ip_button)
        ip_buttons.addWidget(QLabel("scale"))
        ip_buttons.addWidget(self.ip_scale)
        ip_buttons.addStretch(1)
        ip_form.addRow(ip_buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(self.problem)
        layout.addWidget(self.notice)
        layout.addWidget(QLabel("LoRAs"))
        layout.addWidget(self.lora_note)
        layout.addWidget(self.loras)
        layout.addWidget(self.library_loras)  # a row of its own: beside the buttons it was cut off
        layout.addLayout(lora_buttons)
        layout.addLayout(lora_typed)
        layout.addWidget(self.use_controlnet)
        layout.addWidget(self.cn_box)
        layout.addWidget(self.ip_box)

    # ------------------------------------------------------------ the library

    def set_library(self, entries: list) -> None:
        self._library = list(entries)

    def _fill_library(self) -> None:
        from core.model_library import CONTROLNET_KIND, IP_ADAPTER_KIND, LORA_KIND, adapters_for, availability

        key = self._family.key if self._family else None
        for combo, kind, empty in ((self.library_loras, LORA_KIND, "LoRA from the library…"),
                                   (self.library_controlnets, CONTROLNET_KIND, "from the library…"),
                                   (self.library_ip_adapters, IP_ADAPTER_KIND, "from the library…")):
            combo.clear()
            fits = adapters_for(self._library, kind, key)
            combo.addItem(empty if fits else "(none in the library fits)", None)
            for e in fits:
                shipped = ", built in" if e.source == "builtin" else ""
                combo.addItem(f"{e.name} ({e.family_title}{shipped})", e.ref)
                combo.setItemData(combo.count() - 1, f"{e.ref}: {availability(e)[1]}", Qt.ToolTipRole)
            combo.setEnabled(bool(fits))

    def _pick_library_lora(self, index: int) -> None:
        ref = self.library_loras.itemData(index)
        if ref:
            self.add_lora(ref)
        self.library_loras.setCurrentIndex(0)

    def _pick_library_controlnet(self, index: int) -> None:
        ref = self.library_controlnets.itemData(index)
        if ref:
            self.cn_model.setText(ref)
            if not self.use_controlnet.isChecked():
                self.use_controlnet.setChecked(True)
            self._typed_controlnet()
        self.library_controlnets.setCurrentIndex(0)

    def _pick_library_ip_adapter(self, index: int) -> None:
        ref = self.library_ip_adapters.itemData(index)
        if ref:
            self.ip_model.setText(ref)
            self._typed_ip_model()
        self.library_ip_adapters.setCurrentIndex(0)

    # ------------------------------------------------------------ loading

    def load(self, stage: Stage | None, family: Family | None, generates: bool) -> None:
        """Show a stage's adapters; `family` None while the model's family is unknown."""
        self._stage = None
        self._family = family
        self._fill_library()
        s = stage or Stage(model="")
        self.loras.clear()
        for lora in s.loras:
            self.loras.addItem(self._lora_text(lora))
        lora_ok = family is None or family.supports(LORA)
        self.lora_note.setText("" if lora_ok else f"diffusers has no LoRA loader for {family.title}")
        self.lora_note.setVisible(not lora_ok)
        for w in (self.loras, self.add_lora_button, self.remove_lora_button, self.lora_weight, self.lora_ref,
                  self.add_lora_ref_button):
            w.setEnabled(lora_ok)
        cn_ok = generates and (family is None or family.supports(CONTROLNET))
        self.use_controlnet.setEnabled(cn_ok)
        self.use_controlnet.setToolTip("" if cn_ok else (
            "a ControlNet conditions the stage that generates" if not generates
            else f"diffusers has no ControlNet pipeline for {family.title}"))
        cn = s.controlnet
        self.use_controlnet.setChecked(cn is not None)
        self.cn_box.setVisible(cn is not None and cn_ok)
        c = cn or ControlNet(model="", image="")
        self.cn_model.setText(c.model)
        self.preprocessor.setCurrentIndex(max(0, self.preprocessor.findData(c.preprocessor)))
        self.low.setValue(c.low)
        self.high.setValue(c.high)
        self.cn_scale.setValue(c.scale)
        self.cn_start.setValue(c.start)
        self.cn_end.setValue(c.end)
        self.control_slot.show_path(c.image or None)
        ip_ok = generates and (family is None or family.supports(IP_ADAPTER))
        self.ip_box.setVisible(ip_ok)
        self.ip_model.setText(s.ip_adapters[0].model if s.ip_adapters else "")
        self.ip_images.clear()
        for ip in s.ip_adapters:
            self.ip_images.addItem(f"{Path(ip.image).name} — {ip.scale:g}")
        self._stage = stage
        self.problem.hide()
        self.notice.hide()
        self.notice = QLabel()  # what is fine but worth knowing (a Hub adapter not downloaded yet)
        self.notice.setObjectName("adapter_notice")
        self.notice.setWordWrap(True)
        self.notice.hide()
        self._show_lora_weight(self.loras.currentRow())
        self._show_ip_scale(self.ip_images.currentRow())
        self.update_map()

    @staticmethod
    def _lora_text(lora: Lora) -> str:
        return f"{Path(lora.ref).name or lora.ref} — {lora.weight:g}"

    def _say(self, text: str, notice: str = "") -> None:
        """A problem (red), or with none a notice; both cleared by ''."""
        self.problem.setText(text)
        self.problem.setVisible(bool(text))
        self.notice.setText(notice)
        self.notice.setVisible(bool(notice) and not text)

    # ------------------------------------------------------------ LoRAs

    def add_lora(self, ref: str, weight: float = 1.0) -> bool:
        """Add a LoRA (a file, a folder holding one, builtin:NAME or a Hub file), after
        checking that it is there and, from its header, that it fits the stage's family.
        A Hub file not yet downloaded is taken on its shape: it downloads when the stage runs."""
        if self._stage is None:
            return False
        ref = ref.strip()
        if not ref:
            self._say(f"type a LoRA reference first ({REF_HINT})")
            return False
        from core.adapters import adapter_file, check_lora, is_hub_file

        def check() -> None:
            if self._family is None:
                adapter_file(ref, "LoRA", fetch=False)
            else:
                check_lora(Lora(ref, weight), self._family, "this stage", fetch=False)

        try:
            pending = _offline_or_pending(ref, is_hub_file(ref), check)
        except (ModelError, ProjectError) as exc:
            self._say(str(exc))
            return False
        self._stage.loras.append(Lora(ref, weight))
        self.loras.addItem(self._lora_text(self._stage.loras[-1]))
        self.loras.setCurrentRow(self.loras.count() - 1)
        self._say("", pending)
        self.changed.emit()
        return True

    def _add_typed_lora(self) -> None:
        if self.add_lora(self.lora_ref.text()):
            self.lora_ref.clear()

    def _browse_lora(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Add a LoRA", "", "LoRA (*.safetensors)")
        if name:
            self.add_lora(name)

    def _remove_lora(self) -> None:
        row = self.loras.currentRow()
        if self._stage is not None and 0 <= row < len(self._stage.loras):
            del self._stage.loras[row]
            self.loras.takeItem(row)
            self.changed.emit()

    def _show_lora_weight(self, row: int) -> None:
        has = self._stage is not None and 0 <= row < len(self._stage.loras)
        self.lora_weight.setEnabled(has)
        if has:
            self.lora_weight.blockSignals(True)
            self.lora_weight.setValue(self._stage.loras[row].weight)
            self.lora_weight.blockSignals(False)

    def _write_lora_weight(self, value: float) -> None:
        row = self.loras.currentRow()
        if self._stage is not None and 0 <= row < len(self._stage.loras):
            self._stage.loras[row].weight = round(value, 2)
            self.loras.item(row).setText(self._lora_text(self._stage.loras[row]))
            self.changed.emit()

    # ------------------------------------------------------------ ControlNet

    def _write_controlnet(self, *_) -> None:
        if self._stage is None:
            return
        on = self.use_controlnet.isChecked()
        self.cn_box.setVisible(on)
        if not on:
            self._stage.controlnet = None
        else:
            if self._stage.controlnet is None:
                self._stage.controlnet = ControlNet(model="", image="")
            cn = self._stage.controlnet  # edited in place: whoever holds it sees the change
            cn.model, cn.preprocessor = self.cn_model.text().strip(), self.preprocessor.currentData()
            cn.low, cn.high = self.low.value(), self.high.value()
            cn.scale, cn.start, cn.end = (round(b.value(), 2) for b in (self.cn_scale, self.cn_start, self.cn_end))
        self.low.setEnabled(self.preprocessor.currentData() == "canny")
        self.high.setEnabled(self.preprocessor.currentData() == "canny")
        self.update_map()
        self.changed.emit()

    def _typed_controlnet(self) -> None:
        """The ControlNet field's reference, written to the stage and checked: there (a
        folder, builtin:NAME, or a Hub id in the cache or not yet downloaded) and made for
        the stage's family; what is wrong is said beside it."""
        self._write_controlnet()
        ref = self.cn_model.text().strip()
        if self._stage is None or not ref or not self.use_controlnet.isChecked():
            return
        from core.adapters import controlnet_config, check_controlnet
        from core.models import HUB_ID

        def check() -> None:
            if self._family is None:
                controlnet_config(ref, fetch=False)
            else:
                check_controlnet(ControlNet(model=ref, image=""), self._family, "this stage", fetch=False)

        hub = bool(HUB_ID.match(ref)) and not ref.startswith((".", "/", "~")) and not Path(ref).expanduser().exists()
        try:
            self._say("", _offline_or_pending(ref, hub, check))
        except (ModelError, ProjectError) as exc:
            text = str(exc)
            self._say(text if "ControlNet" in text else f"ControlNet {ref}: {text}")

    def set_control_image(self, path: str) -> None:
        """The control image (a drop on the slot, or Browse): the ControlNet turns on."""
        if self._stage is None or not self.use_controlnet.isEnabled():
            return
        if not self.use_controlnet.isChecked():
            self.use_controlnet.setChecked(True)  # writes an empty ControlNet first
        self._stage.controlnet.image = str(Path(path).resolve())
        self.control_slot.show_path(self._stage.controlnet.image)
        self.update_map()
        self.changed.emit()

    def update_map(self) -> None:
        """Draw the map the ControlNet will see, from the image and the thresholds now."""
        cn = self._stage.controlnet if self._stage is not None else None
        if cn is None or not cn.image:
            self.control_map.setPixmap(QPixmap())
            self.control_map.setText("the map the ControlNet sees")
            return
        from core.adapters import control_map
        from core.images import open_image

        try:
            w, h = open_image(Path(cn.image), "control image").size
            scale = PREVIEW / max(w, h)
            image = control_map(cn, (max(1, round(w * scale)), max(1, round(h * scale))))
        except (ProjectError, ModelError, OSError) as exc:
            self.control_map.setPixmap(QPixmap())
            self.control_map.setText(str(exc).split(":")[-1].strip()[:80])
            return
        self.control_map.setPixmap(QPixmap.fromImage(pil_to_qimage(image)))

    def _browse_controlnet(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a ControlNet folder")
        if folder:
            self.cn_model.setText(folder)
            if not self.use_controlnet.isChecked():
                self.use_controlnet.setChecked(True)
            self._write_controlnet()

    def _browse_control_image(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Control image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if name:
            self.set_control_image(name)

    # ------------------------------------------------------------ IP-Adapter

    def add_ip_image(self, path: str, scale: float = 0.6) -> None:
        if self._stage is None:
            return
        self._stage.ip_adapters.append(IPAdapter(self.ip_model.text().strip(), str(Path(path).resolve()), scale))
        self.ip_images.addItem(f"{Path(path).name} — {scale:g}")
        self.ip_images.setCurrentRow(self.ip_images.count() - 1)
        self.changed.emit()

    def _browse_ip_image(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Reference image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if name:
            self.add_ip_image(name)

    def _browse_ip_model(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "IP-Adapter", "", "IP-Adapter (*.safetensors)")
        if name:
            self.ip_model.setText(name)
            self._typed_ip_model()

    def _typed_ip_model(self) -> None:
        """The IP-Adapter field's reference, written to the stage's references and checked:
        its weights there (or a Hub file not yet downloaded) with an image encoder beside them."""
        self._write_ip()
        ref = self.ip_model.text().strip()
        if self._stage is None or not ref:
            return
        from core.adapters import ip_adapter_files, is_hub_file

        try:
            self._say("", _offline_or_pending(ref, is_hub_file(ref),
                                              lambda: ip_adapter_files(IPAdapter(ref, ""), fetch=False)))
        except (ModelError, ProjectError) as exc:
            self._say(str(exc))

    def _remove_ip(self) -> None:
        row = self.ip_images.currentRow()
        if self._stage is not None and 0 <= row < len(self._stage.ip_adapters):
            del self._stage.ip_adapters[row]
            self.ip_images.takeItem(row)
            self.changed.emit()

    def _show_ip_scale(self, row: int) -> None:
        has = self._stage is not None and 0 <= row < len(self._stage.ip_adapters)
        self.ip_scale.setEnabled(has)
        if has:
            self.ip_scale.blockSignals(True)
            self.ip_scale.setValue(self._stage.ip_adapters[row].scale)
            self.ip_scale.blockSignals(False)

    def _write_ip(self, *_) -> None:
        if self._stage is None:
            return
        model = self.ip_model.text().strip()
        row = self.ip_images.currentRow()
        for n, ip in enumerate(self._stage.ip_adapters):
            ip.model = model
            if n == row:
                ip.scale = round(self.ip_scale.value(), 2)
                self.ip_images.item(n).setText(f"{Path(ip.image).name} — {ip.scale:g}")
        self.changed.emit()
