"""What the window needs to know about a model reference before it is loaded: its native
size and the pixel multiple it needs. Read from model_index.json through core.families,
never by loading weights (which would import torch on the GUI thread)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core import families, models

DEFAULT_NATIVE = 1024
DEFAULT_MULTIPLE = 16  # the strictest multiple any family needs: safe when the family is unknown


@dataclass(frozen=True)
class ModelInfo:
    native: int
    multiple: int
    family: str | None  # a core.families key, None when not known yet


UNKNOWN = ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None)


def _from_folder(folder: Path) -> ModelInfo | None:
    try:
        index = json.loads((folder / "model_index.json").read_text())
        fam = families.family_from_model_index(index)
    except (OSError, ValueError, families.UnknownFamily):
        return None
    return ModelInfo(fam.native, fam.multiple, fam.key)


@lru_cache(maxsize=64)
def info_for(ref: str) -> ModelInfo:
    text = (ref or "").strip()
    if text.startswith("builtin:"):
        from core import demo

        # The demo family is SDXL's architecture at toy size; its files may not be built yet.
        return ModelInfo(demo.NATIVE_SIZE, 8, "sdxl-refiner" if text == demo.REFINER else "sdxl")
    try:
        parsed = models.parse_ref(text)
    except models.ModelError:
        return UNKNOWN
    if parsed.kind == "folder":
        return _from_folder(Path(parsed.location)) or UNKNOWN
    return UNKNOWN


def same_family(a: str, b: str) -> bool | None:
    """Whether two models share a family (None when either is unknown)."""
    fa, fb = info_for(a).family, info_for(b).family
    if fa is None or fb is None:
        return None
    group = {k: families.FAMILIES[k].ensemble_group or k for k in (fa, fb)}
    return group[fa] == group[fb]
