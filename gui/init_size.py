"""Whether an init image's size suits the model that refines it: a model asked to work far
from the area it was trained at (an SDXL model on a 200×150 photo, an SD 1.5 one on a
4000×3000 one) makes mush or repeats itself. Plain arithmetic, no Qt."""
from __future__ import annotations

import math

FAR = 2.0  # more than twice or less than half the native area is far from it


def snapped(width: int, height: int, native: int, multiple: int) -> tuple[int, int]:
    """The size of the same shape with the model's native area, on its pixel multiple."""
    scale = math.sqrt(native * native / max(1, width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def advice(width: int, height: int, native: int, multiple: int) -> tuple[int, int] | None:
    """The size to snap to, when width×height is far from native² (None: it is fine)."""
    ratio = width * height / float(native * native)
    if 1 / FAR <= ratio <= FAR:
        return None
    good = snapped(width, height, native, multiple)
    return None if good == (width, height) else good
