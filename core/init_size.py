"""Whether an init image's size suits the model that refines it: a model asked to work far
from the area it was trained at (an SDXL model on a 200×150 photo, an SD 1.5 one on a
4000×3000 one) makes mush or repeats itself. The window offers the snapped size beside
the size picker; the command line says it as a note (core.advice)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.project import Project

FAR = 2.0  # more than twice or less than half the native area is far from it


def snapped(width: int, height: int, native: int, multiple: int) -> tuple[int, int]:
    """The size of the same shape with the model's native area, on its pixel multiple."""
    scale = math.sqrt(native * native / max(1, width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def size_to_snap(width: int, height: int, native: int, multiple: int) -> tuple[int, int] | None:
    """The size to snap to, when width×height is far from native² (None: it is fine)."""
    ratio = width * height / float(native * native)
    if 1 / FAR <= ratio <= FAR:
        return None
    good = snapped(width, height, native, multiple)
    return None if good == (width, height) else good


@dataclass(frozen=True)
class InitSizeAdvice:
    size: tuple[int, int]  # the job's size now
    native: int  # the side of the square area the first stage's model was trained at
    good: tuple[int, int]  # the same shape at that area

    def note(self) -> str:
        (w, h), n = self.size, self.native
        return f"{w}×{h} is far from the model's {n}×{n} area: expect mush or repeats"


def for_project(project: "Project") -> InitSizeAdvice | None:
    """The advice for a job that refines an init image (None without one, or when its size
    suits the first enabled stage's model, as far as its files tell without loading it)."""
    from core.model_info import info_for

    enabled = project.enabled_stages()
    if not project.init_image or not enabled:
        return None
    info = info_for(enabled[0][1].model)
    good = size_to_snap(project.width, project.height, info.native, info.multiple)
    return None if good is None else InitSizeAdvice((project.width, project.height), info.native, good)
