"""The ordered stages of a project: a list to add, remove, reorder, duplicate and switch
stages on and off, and an editor for the selected stage."""
from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QLabel, QLineEdit, QListWidget, QListWidgetItem, QSpinBox, QVBoxLayout, QWidget,
)

from core import demo
from core.schedulers import SCHEDULERS, fits
from core.project import HANDOFFS, MAX_SIDE, MAX_UPSCALE, QUANTIZE, Project, Stage
from core.model_info import info_for, position_problem, same_family
from core.model_library import upscalers
from core.planning import chain_position
from core.prompt_tokens import stage_cuts
from gui.adapter_editor import AdapterEditor
from gui.collapsible import Section
from gui.prompt_editor import StagePromptFields
from gui.strength_slider import StrengthSlider
from gui.widgets import SeedBox, tool_button

BUILTIN_MODELS = (demo.BASE, demo.REFINER)
BROWSE_FOLDER = "Browse folder…"
BROWSE_FILE = "Browse .safetensors…"
LANCZOS = "Lanczos"  # the Upscaler combo's first item: no model
HANDOFF_HELP = {
    "auto": "auto: the best handoff the two models allow",
    "pixel": "pixel: decode, then refine the image at a strength",
    "latent": "latent: hand over latents (same VAE only), no decode round trip",
    "ensemble": "ensemble: the previous stage stops part-way, this one finishes the schedule",
}


def new_stage(project: Project) -> Stage:
    """A sensible next stage: a base model for an empty project, a pixel refine after one."""
    if not project.stages:
        return Stage(model=demo.BASE, steps=20, guidance=5.0)
    return Stage(model=demo.REFINER, steps=20, guidance=5.0, handoff="pixel", strength=0.3)


def describe(stage: Stage, index: int, first: bool, has_init: bool) -> str:
    model = stage.model.removeprefix("builtin:") if stage.model else "no model"
    # A first stage refines its init image as pixels, whatever handoff it holds (core.planning).
    handoff = "pixel" if first else stage.handoff
    if first and not has_init:
        how = "generate"
    elif handoff == "ensemble":
        how = f"ensemble @ {stage.switch_at:.2f}"
    else:
        how = f"{handoff} @ {stage.strength:.2f}"
        if stage.upscale != 1:
            how += f" · upscale ×{stage.upscale:g}"
        if stage.refine_tile:
            how += f" · {stage.refine_tile} px tiles"
    return f"{stage.label(index)} · {model} · {stage.steps} steps · {how}"


class ModelCombo(QComboBox):
    """An editable model reference with the builtins, the model library, recent models and
    file browsers."""

    refChanged = Signal(str)

    def __init__(self, recent: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.NoInsert)
        self.setMinimumContentsLength(10)  # long references scroll in the line edit
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self._recent = list(recent or [])
        self._library: list = []  # core.model_library.LibraryEntry, usable ones only
        self._current = ""
        self._fill()
        self.activated.connect(self._on_activated)
        self.lineEdit().editingFinished.connect(lambda: self._commit(self.currentText()))

    def _fill(self) -> None:
        self.blockSignals(True)
        self.clear()
        for ref in BUILTIN_MODELS:
            self.addItem(ref)
        listed = set(BUILTIN_MODELS)
        if self._library:
            self.insertSeparator(self.count())
        for e in self._library:
            if e.ref in listed:
                continue
            listed.add(e.ref)
            self.addItem(e.ref, e.ref)
            self.setItemData(self.count() - 1, f"{e.name} — {e.family_title}; can take: {e.positions}",
                             Qt.ToolTipRole)
        recent = [r for r in self._recent if r not in listed]
        if recent:
            self.insertSeparator(self.count())
        for ref in recent:
            self.addItem(ref)
        self.insertSeparator(self.count())
        self.addItem(BROWSE_FOLDER)
        self.addItem(BROWSE_FILE)
        self.setEditText(self._current)
        self.blockSignals(False)

    def set_recent(self, recent: list[str]) -> None:
        self._recent = list(recent)
        self._fill()

    def set_library(self, entries: list) -> None:
        """Offer the library's models that a stage can take (core.model_library entries)."""
        self._library = [e for e in entries if e.usable]
        self._fill()

    def library_refs(self) -> list[str]:
        return [e.ref for e in self._library]

    def set_ref(self, ref: str) -> None:
        self._current = ref
        self.setEditText(ref)

    def _on_activated(self, index: int) -> None:
        text = self.itemText(index)
        if text == BROWSE_FOLDER:
            chosen = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        elif text == BROWSE_FILE:
            chosen, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint or upscaler", "",
                                                    "Checkpoints and upscalers (*.safetensors *.pth)")
        else:
            chosen = text
        self._commit(chosen or self._current)

    def _commit(self, ref: str) -> None:
        ref = ref.strip()
        self.setEditText(ref)
        if ref != self._current:
            self._current = ref
            self.refChanged.emit(ref)


class StageEditor(QGroupBox):
    """Edits one Stage in place and says so through `changed`."""

    changed = Signal()
    manageModels = Signal()  # the user asked for the model library

    def __init__(self, recent_models: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Stage", parent)
        self._stage: Stage | None = None
        self._previous_model: str | None = None
        self._scheduler_model: str | None = None  # the model the scheduler list was made for
        self.name = QLineEdit()
        self.name.setPlaceholderText("(stage N)")
        self.model = ModelCombo(recent_models)
        self.models_button = tool_button("Models…", "The model library: add Hub models, local folders and files, "
                                         "or a ComfyUI models folder", self.manageModels.emit)
        self.position_note = QLabel()
        self.position_note.setObjectName("position_note")
        self.position_note.setWordWrap(True)
        self.position_note.setStyleSheet("color: #b00020;")
        self.position_note.hide()
        # The words of the stage's prompt its text encoder cuts (core.prompt_tokens.stage_cuts).
        self.prompt_fit = QLabel()
        self.prompt_fit.setObjectName("prompt_fit")
        self.prompt_fit.setWordWrap(True)
        self.prompt_fit.setStyleSheet("color: #a05a00;")
        self.prompt_fit.hide()
        self.steps = QSpinBox()
        self.steps.setRange(1, 500)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.own_seed = QCheckBox("own seed")
        self.seed = SeedBox()
        self.scheduler = QComboBox()
        self.scheduler.setObjectName("scheduler")
        self.scheduler.setToolTip("The sampler: the model's own unless you choose one (A1111 names)")
        # A big model's denoiser from one file (GGUF, fp8/bf16 safetensors), and how it is kept.
        self.transformer = QLineEdit()
        self.transformer.setObjectName("transformer")
        self.transformer.setPlaceholderText("the model's own")
        self.transformer.setToolTip("The transformer/UNet from this file (.gguf, or a .safetensors in the original or "
                                    "ComfyUI layout) instead of the model's; its text encoders and VAE stay")
        self.quantize = QComboBox()
        self.quantize.setObjectName("quantize")
        for q in QUANTIZE:
            self.quantize.addItem(q, q)
        self.quantize.setToolTip("The denoiser's weights: as loaded; fp8 storage (any device); int8 (torchao); "
                                 "nf4 (bitsandbytes, CUDA)")
        self.handoff = QComboBox()
        for h in HANDOFFS:
            self.handoff.addItem(h, h)
            self.handoff.setItemData(self.handoff.count() - 1, HANDOFF_HELP[h], Qt.ToolTipRole)
        self.switch_at = QDoubleSpinBox()
        self.switch_at.setRange(0.05, 1.0)
        self.switch_at.setSingleStep(0.05)
        self.switch_label = QLabel("Switch at")
        self.strength = StrengthSlider()
        self.strength_label = QLabel("Strength")
        self.upscale = QDoubleSpinBox()
        self.upscale.setObjectName("upscale")
        self.upscale.setRange(1.0, MAX_UPSCALE)
        self.upscale.setSingleStep(0.25)
        self.upscale.setPrefix("×")
        self.upscale.setToolTip("Resize the image this stage takes in (Lanczos) before refining it: A1111's "
                                "hires fix. 1.5–2× at strength 0.3–0.5 adds real detail; the size snaps to "
                                "the model's multiple")
        self.upscale_label = QLabel("Upscale")
        # The resize's method: Lanczos, or an upscaler model (the library's, or a typed path).
        self.upscaler = QComboBox()
        self.upscaler.setObjectName("upscaler")
        self.upscaler.setEditable(True)
        self.upscaler.setInsertPolicy(QComboBox.NoInsert)
        self.upscaler.setToolTip("What resizes the image: Lanczos, or an upscaler model (.pth or .safetensors: "
                                 "ESRGAN, Real-ESRGAN, SwinIR, DAT...) from ComfyUI's upscale_models or A1111's "
                                 "ESRGAN folders, or a file path")
        self.upscaler_label = QLabel("Upscaler")
        self.refine_tile = QSpinBox()
        self.refine_tile.setObjectName("refine_tile")
        self.refine_tile.setRange(0, MAX_SIDE)
        self.refine_tile.setSingleStep(64)
        self.refine_tile.setSuffix(" px")
        self.refine_tile.setSpecialValueText("off")
        self.refine_tile.setToolTip("Refine in overlapping tiles of this side, blended at the seams (Ultimate SD "
                                    "Upscale, MultiDiffusion): a 2–4× polish in one tile's memory. Off: the "
                                    "whole image at once")
        self.refine_tile_label = QLabel("Refine tile")
        self._upscalers: list[str] = []
        self._fill_upscalers(None)
        self.handoff_note = QLabel()
        self.handoff_note.setWordWrap(True)
        self.handoff_note.setStyleSheet("color: palette(mid);")
        self.prompts = StagePromptFields()
        self.adapters = AdapterEditor()
        self.adapters.setObjectName("adapters")

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.own_seed)
        seed_row.addWidget(self.seed, 1)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.models_button)
        basics = QFormLayout()
        basics.addRow("Name", self.name)
        basics.addRow("Model", model_row)
        basics.addRow("", self.position_note)
        basics.addRow("", self.prompt_fit)
        basics.addRow("Steps", self.steps)
        basics.addRow("Guidance", self.guidance)
        basics.addRow("Seed", seed_row)
        basics.addRow("Scheduler", self.scheduler)
        basics.addRow("Transformer", self.transformer)
        basics.addRow("Quantize", self.quantize)
        handoff = QFormLayout()
        handoff.addRow("Handoff", self.handoff)
        handoff.addRow("", self.handoff_note)
        handoff.addRow(self.switch_label, self.switch_at)
        handoff.addRow(self.strength_label, self.strength)
        handoff.addRow(self.upscale_label, self.upscale)
        handoff.addRow(self.upscaler_label, self.upscaler)
        handoff.addRow(self.refine_tile_label, self.refine_tile)
        prompts = QVBoxLayout()
        prompts.setContentsMargins(0, 0, 0, 0)
        prompts.addWidget(self.prompts)
        adapters = QVBoxLayout()
        adapters.setContentsMargins(0, 0, 0, 0)
        adapters.addWidget(self.adapters)
        # Basics and Handoff (strength / switch point) are what a chain is tuned with, so
        # they start open; per-stage prompts and adapters are rarer and start folded.
        self.basics_section = Section("Basics", basics, expanded=True)
        self.handoff_section = Section("Handoff", handoff, expanded=True)
        self.prompts_section = Section("Prompts", prompts, expanded=False)
        self.adapters_section = Section("Adapters", adapters, expanded=False)
        self.sections = (self.basics_section, self.handoff_section, self.prompts_section, self.adapters_section)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 4, 6, 4)
        column.setSpacing(2)
        for section in self.sections:
            column.addWidget(section)
        column.addStretch(1)  # folded sections stay together at the top, not spread out

        self.name.textEdited.connect(self._write)
        self.model.refChanged.connect(self._write)
        self.steps.valueChanged.connect(self._write)
        self.guidance.valueChanged.connect(self._write)
        self.own_seed.toggled.connect(self._write)
        self.seed.valueChanged.connect(self._write)
        self.scheduler.currentIndexChanged.connect(self._write)
        self.transformer.editingFinished.connect(self._write)
        self.quantize.currentIndexChanged.connect(self._write)
        self.handoff.currentIndexChanged.connect(self._write)
        self.switch_at.valueChanged.connect(self._write)
        self.strength.valueChanged.connect(self._write)
        self.upscale.valueChanged.connect(self._write)
        self.refine_tile.valueChanged.connect(self._write)
        self.upscaler.activated.connect(lambda _i: self._write())
        self.upscaler.lineEdit().editingFinished.connect(self._write)
        self.prompts.changed.connect(self._part_changed)
        self.adapters.changed.connect(self._part_changed)
        self.load(None, None, True, False)

    def load(self, stage: Stage | None, index: int | None, first: bool, has_init: bool,
             previous_model: str | None = None) -> None:
        self._stage = None
        self._first, self._has_init = first, has_init
        self._previous_model = previous_model
        self.setEnabled(stage is not None)
        self.setTitle(stage.label(index) if stage is not None and index is not None else "Stage")
        s = stage or Stage(model="")
        self.name.setText(s.name)
        self.model.set_ref(s.model)
        self.steps.setValue(s.steps)
        self.guidance.setValue(s.guidance)
        self.own_seed.setChecked(s.seed is not None)
        self.seed.setValue(s.seed or 0)
        self._fill_schedulers(s.model, s.scheduler)
        self.transformer.setText(s.transformer or "")
        self.quantize.setCurrentIndex(max(0, self.quantize.findData(s.quantize)))
        self.handoff.setCurrentIndex(max(0, self.handoff.findData(s.handoff)))
        self.switch_at.setValue(s.switch_at)
        self.strength.setValue(s.strength)
        self.upscale.setValue(s.upscale)
        self.refine_tile.setValue(s.refine_tile)
        self._fill_upscalers(s.upscaler)
        self.prompts.load(stage)
        self._stage = stage
        self._load_adapters()
        self._refresh()

    def _part_changed(self) -> None:
        self._summarise(self._stage, self._first and not self._has_init)
        self.changed.emit()

    def _load_adapters(self) -> None:
        s = self._stage
        family = info_for(s.model).fam if s is not None and s.model.strip() else None
        self.adapters.load(s, family, generates=self._first and not self._has_init)

    def _write(self) -> None:
        if self._stage is None:
            return
        s = self._stage
        s.name = self.name.text().strip()
        s.model = self.model.currentText().strip()
        s.steps = self.steps.value()
        s.guidance = round(self.guidance.value(), 2)
        s.seed = self.seed.value() if self.own_seed.isChecked() else None
        if s.model != self._scheduler_model:
            # A new model may be of another kind (flow matching or not): offer what fits it.
            self._fill_schedulers(s.model, s.scheduler if self._fits(s.scheduler, s.model) else None)
            self._load_adapters()  # and the adapters its family takes
        s.scheduler = self.scheduler.currentData()
        s.transformer = self.transformer.text().strip() or None
        s.quantize = self.quantize.currentData()
        s.handoff = self.handoff.currentData()
        s.switch_at = round(self.switch_at.value(), 2)
        s.strength = self.strength.value()
        if self._switches() and self.upscale.value() != 1:
            # An ensemble cannot change the size, and a hidden control must not hold a value.
            self.upscale.blockSignals(True)
            self.upscale.setValue(1.0)
            self.upscale.blockSignals(False)
        if (self._switches() or self._first and not self._has_init) and self.refine_tile.value():
            self.refine_tile.blockSignals(True)  # hidden there: a generating or ensemble stage is not tiled
            self.refine_tile.setValue(0)
            self.refine_tile.blockSignals(False)
        s.upscale = round(self.upscale.value(), 2)
        s.refine_tile = self.refine_tile.value()
        s.upscaler = None if self._switches() else self._chosen_upscaler()
        self._refresh()
        self.changed.emit()

    def set_upscalers(self, refs: list[str]) -> None:
        """Offer these upscaler files (the library's) in the Upscaler combo."""
        self._upscalers = list(refs)
        self._fill_upscalers(self._stage.upscaler if self._stage is not None else None)

    def _fill_upscalers(self, current: str | None) -> None:
        self.upscaler.blockSignals(True)
        self.upscaler.clear()
        self.upscaler.addItem(LANCZOS, None)
        for ref in self._upscalers:
            self.upscaler.addItem(Path(ref).stem, ref)
            self.upscaler.setItemData(self.upscaler.count() - 1, ref, Qt.ToolTipRole)
        if current and self.upscaler.findData(current) < 0:
            self.upscaler.addItem(Path(current).stem, current)  # a project's own file stays listed
        self.upscaler.setCurrentIndex(max(0, self.upscaler.findData(current)) if current else 0)
        self.upscaler.blockSignals(False)

    def _chosen_upscaler(self) -> str | None:
        text = self.upscaler.currentText().strip()
        index = self.upscaler.findText(text)
        if index >= 0:  # a listed one (Lanczos is None)
            return self.upscaler.itemData(index)
        return text or None  # a typed path

    @staticmethod
    def _flow(ref: str) -> bool | None:
        fam = info_for(ref).fam if ref else None
        return fam.flow if fam else None

    def _fits(self, name: str | None, ref: str) -> bool:
        flow = self._flow(ref)
        return name is None or flow is None or fits(name, flow)

    def _fill_schedulers(self, ref: str, current: str | None) -> None:
        """The schedulers that can drive the model's family (all of them while it is unknown);
        a stored choice that does not fit stays listed so loading a project loses nothing."""
        self._scheduler_model = ref
        self.scheduler.blockSignals(True)
        self.scheduler.clear()
        self.scheduler.addItem("model default", None)
        for name in SCHEDULERS:
            if self._fits(name, ref) or name == current:
                self.scheduler.addItem(name, name)
        if current is not None and self.scheduler.findData(current) < 0:
            self.scheduler.addItem(current, current)
        self.scheduler.setCurrentIndex(max(0, self.scheduler.findData(current)))
        self.scheduler.blockSignals(False)

    def _refresh(self) -> None:
        s = self._stage
        generates = self._first and not self._has_init
        ensemble = self._switches()
        self.seed.setEnabled(self.own_seed.isChecked())
        # The first stage has nothing to hand over from: it generates, or refines its init
        # image as pixels whatever handoff it holds (core.planning decides, and notes it).
        self.handoff.setEnabled(not self._first)
        self.switch_at.setVisible(not generates and ensemble)
        self.switch_label.setVisible(not generates and ensemble)
        self.strength.setVisible(not generates and not ensemble)
        self.strength_label.setVisible(not generates and not ensemble)
        self.upscale.setVisible(not generates and not ensemble)
        self.upscale_label.setVisible(not generates and not ensemble)
        self.upscaler.setVisible(not generates and not ensemble)
        self.upscaler_label.setVisible(not generates and not ensemble)
        self.refine_tile.setVisible(not generates and not ensemble)
        self.refine_tile_label.setVisible(not generates and not ensemble)
        if generates:
            note = "First stage: generates the image from the prompt."
        elif self._first:
            note = "First stage: refines the init image."
        else:
            note = HANDOFF_HELP.get(self.handoff.currentData(), "")
        self.handoff_note.setText(note)
        problem = self.position_problem()
        self.position_note.setText(problem or "")
        self.position_note.setVisible(bool(problem))
        if s is not None:
            same = same_family(self._previous_model, s.model) if self._previous_model else None
            self.strength.set_context(s.steps, same)
        self._summarise(s, generates)

    def _summarise(self, s: Stage | None, generates: bool) -> None:
        """Each section's title says what it holds, so a folded one hides nothing that is set."""
        if s is None:
            return
        if generates:
            self.handoff_section.set_summary("generates")
        elif self._switches():
            self.handoff_section.set_summary(f"ensemble, switch at {s.switch_at:.2f}")
        else:
            up = f", ×{s.upscale:g}" if s.upscale != 1 else ""
            up += f", {s.refine_tile} px tiles" if s.refine_tile else ""
            self.handoff_section.set_summary(f"{'pixel' if self._first else s.handoff}, strength {s.strength:.2f}{up}")
        own = [n for n, v in (("prompt", s.prompt), ("detail terms", s.prompt_suffix),
                              ("negative", s.negative_prompt)) if v]
        self.prompts_section.set_summary(", ".join(own) if own else "the project's")
        n = len(s.loras) + len(s.ip_adapters) + (s.controlnet is not None)
        self.adapters_section.set_summary(f"{n} set" if n else "none")

    def show_prompt_fit(self, project: Project | None) -> None:
        """Say which words of the stage's effective prompt (the project's or its own, plus
        its detail terms) its model's text encoder cuts; hidden when they all fit."""
        s = self._stage
        cuts = stage_cuts(project, s) if project is not None and s is not None and s.enabled else []
        self.prompt_fit.setText("\n".join(c.notice() for c in cuts))
        self.prompt_fit.setToolTip("Words past the text encoder's limit do nothing: shorten the prompt, or put "
                                   "what matters first" if cuts else "")
        self.prompt_fit.setVisible(bool(cuts))

    def _switches(self) -> bool:
        """An ensemble: the stage finishes the previous one's schedule from a switch point
        (a first stage never does: it has no previous one)."""
        return not self._first and self.handoff.currentData() == "ensemble"

    def position(self) -> str:
        """'base' when this stage starts the chain, 'refine' when it refines an image."""
        return chain_position(0 if self._first else 1, self._has_init)

    def position_problem(self) -> str | None:
        """Why the stage's model cannot take its position (None: it can, or it is not known)."""
        s = self._stage
        if s is None or not s.enabled or not s.model.strip():
            return None
        return position_problem(s.model, self.position())


class StageList(QWidget):
    """The stage list and the editor of the selected stage. Edits `project.stages` in place."""

    changed = Signal()
    modelChosen = Signal(str)
    manageModels = Signal()

    def __init__(self, recent_models: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self.list = QListWidget()
        self.list.setObjectName("stages")
        self.list.setMaximumHeight(90)
        self.editor = StageEditor(recent_models)
        buttons = QHBoxLayout()
        self.add_button = tool_button("Add", "Add a stage after the selected one", self.add_stage)
        self.dup_button = tool_button("Duplicate", "Duplicate the selected stage", self.duplicate_stage)
        self.remove_button = tool_button("Remove", "Remove the selected stage", self.remove_stage)
        self.up_button = tool_button("▲", "Move the selected stage earlier", lambda: self.move_stage(-1))
        self.down_button = tool_button("▼", "Move the selected stage later", lambda: self.move_stage(1))
        for b in (self.add_button, self.dup_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        header = QLabel("Stages  (tick to enable)")
        layout.addWidget(header)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self._layout = layout
        layout.addWidget(self.editor)
        self.list.currentRowChanged.connect(self._select)
        self.list.itemChanged.connect(self._on_item_changed)
        self.editor.changed.connect(self._on_edit)
        self.editor.model.refChanged.connect(self.modelChosen)
        self.editor.manageModels.connect(self.manageModels)

    def take_editor(self) -> StageEditor:
        """The editor, out of this widget's column, for a window that shows it beside the
        list (the chain on one side, the selected stage's controls on the other)."""
        self._layout.removeWidget(self.editor)
        return self.editor

    def set_library(self, entries: list) -> None:
        self.editor.model.set_library(entries)
        self.editor.adapters.set_library(entries)
        self.editor.set_upscalers([e.ref for e in upscalers(entries)])
        self.editor._load_adapters()


    # ---------------------------------------------------------------- model -> view

    def load(self, project: Project, select: int = 0) -> None:
        self._project = project
        self._rebuild(select)

    def _rebuild(self, select: int) -> None:
        p = self._project
        self.list.blockSignals(True)
        self.list.clear()
        for i, stage in enumerate(p.stages):
            item = QListWidgetItem()
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if stage.enabled else Qt.Unchecked)
            self.list.addItem(item)
        self._relabel()
        self.list.blockSignals(False)
        row = min(max(select, 0), len(p.stages) - 1)
        self.list.setCurrentRow(row)
        self._select(row)

    def _first_enabled(self) -> int | None:
        enabled = self._project.enabled_stages()
        return enabled[0][0] if enabled else None

    def _previous_enabled_model(self, index: int) -> str | None:
        before = [s for i, s in self._project.enabled_stages() if i < index]
        return before[-1].model if before else None

    def _relabel(self) -> None:
        p = self._project
        first = self._first_enabled()
        self.list.blockSignals(True)
        for i, stage in enumerate(p.stages):
            item = self.list.item(i)
            item.setText(describe(stage, i, i == first, p.init_image is not None))
            item.setForeground(self.palette().text() if stage.enabled else self.palette().mid())
        self.list.blockSignals(False)

    def _select(self, row: int) -> None:
        p = self._project
        if p is None or not 0 <= row < len(p.stages):
            self.editor.load(None, None, True, False)
        else:
            self.editor.load(p.stages[row], row, row == self._first_enabled() or self._first_enabled() is None,
                             p.init_image is not None, self._previous_enabled_model(row))
        self._update_buttons()

    def refresh(self) -> None:
        """Re-read the project (after an outside change such as an init image)."""
        self._relabel()
        self._select(self.list.currentRow())

    def _update_buttons(self) -> None:
        n = len(self._project.stages) if self._project else 0
        row = self.list.currentRow()
        self.dup_button.setEnabled(0 <= row < n)
        self.remove_button.setEnabled(0 <= row < n)
        self.up_button.setEnabled(row > 0)
        self.down_button.setEnabled(0 <= row < n - 1)

    # ---------------------------------------------------------------- view -> model

    def current_index(self) -> int:
        return self.list.currentRow()

    def add_stage(self) -> None:
        row = self.list.currentRow()
        at = row + 1 if row >= 0 else len(self._project.stages)
        self._project.stages.insert(at, new_stage(self._project))
        self._rebuild(at)
        self.changed.emit()

    def duplicate_stage(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self._project.stages):
            return
        clone = copy.deepcopy(self._project.stages[row])
        clone.name = f"{clone.name} copy" if clone.name else ""
        self._project.stages.insert(row + 1, clone)
        self._rebuild(row + 1)
        self.changed.emit()

    def remove_stage(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self._project.stages):
            return
        del self._project.stages[row]
        self._rebuild(row)
        self.changed.emit()

    def move_stage(self, delta: int) -> None:
        row = self.list.currentRow()
        to = row + delta
        stages = self._project.stages
        if not (0 <= row < len(stages) and 0 <= to < len(stages)):
            return
        stages[row], stages[to] = stages[to], stages[row]
        self._rebuild(to)
        self.changed.emit()

    def set_enabled(self, row: int, enabled: bool) -> None:
        self.list.item(row).setCheckState(Qt.Checked if enabled else Qt.Unchecked)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        stage = self._project.stages[row]
        enabled = item.checkState() == Qt.Checked
        if enabled != stage.enabled:
            stage.enabled = enabled
            self.refresh()
            self.changed.emit()

    def _on_edit(self) -> None:
        self._relabel()
        self.changed.emit()
