"""Runs the window remembers: each stage's output (and the image it refined) with its
timings, kept as QImages for display and turned into PNG bytes for the project file."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtGui import QImage

from gui.images import pil_to_qimage, png_to_qimage, qimage_to_png

TIMING_FIELDS = ("load_seconds", "denoise_seconds", "decode_seconds", "total_seconds")


@dataclass
class StageRecord:
    index: int
    label: str
    handoff: str
    steps_run: int
    load_seconds: float
    denoise_seconds: float
    decode_seconds: float
    total_seconds: float
    peak_memory: int
    memory_kind: str
    path: str
    image: QImage
    input_image: QImage | None = None

    @classmethod
    def from_event(cls, ev) -> "StageRecord":
        """From a StageFinished; converts PIL to QImage, so call it on the GUI thread."""
        return cls(
            ev.index, ev.label, ev.handoff, ev.steps_run, ev.load_seconds, ev.denoise_seconds,
            ev.decode_seconds, ev.total_seconds, ev.peak_memory, ev.memory_kind, str(ev.path),
            pil_to_qimage(ev.image), pil_to_qimage(ev.input_image) if ev.input_image is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the images as PNG bytes (for core.project_file)."""
        d = {k: getattr(self, k) for k in (
            "index", "label", "handoff", "steps_run", *TIMING_FIELDS, "peak_memory", "memory_kind", "path")}
        d["image"] = qimage_to_png(self.image)
        d["input_image"] = qimage_to_png(self.input_image) if self.input_image is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageRecord":
        keys = ("index", "label", "handoff", "steps_run", *TIMING_FIELDS, "peak_memory", "memory_kind", "path")
        kwargs = {k: d.get(k) for k in keys}
        kwargs["image"] = png_to_qimage(d["image"])
        kwargs["input_image"] = png_to_qimage(d["input_image"]) if d.get("input_image") else None
        return cls(**kwargs)


@dataclass
class RunRecord:
    number: int  # 1-based, in this project
    started: str  # ISO time
    seconds: float = 0.0
    recipe: dict[str, Any] = field(default_factory=dict)  # Project.to_dict() at the time of the run
    stages: list[StageRecord] = field(default_factory=list)
    outcome: str = "running"  # running, finished, cancelled, failed

    @property
    def label(self) -> str:
        return f"run {self.number}"

    def sources(self) -> list[tuple[str, QImage]]:
        """Every image of the run, named for a picker: each stage's input and output."""
        out: list[tuple[str, QImage]] = []
        for s in self.stages:
            if s.input_image is not None:
                out.append((f"{s.label} input", s.input_image))
            out.append((f"{s.label} output", s.image))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "started": self.started, "seconds": self.seconds, "recipe": self.recipe,
            "outcome": self.outcome, "stages": [s.to_dict() for s in self.stages],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        return cls(d.get("number", 0), d.get("started", ""), d.get("seconds", 0.0), d.get("recipe", {}),
                   [StageRecord.from_dict(s) for s in d.get("stages", [])], d.get("outcome", "finished"))
