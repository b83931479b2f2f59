"""What the window needs to know about a model reference before it is loaded: its native
size, the pixel multiple it needs, its family and so the chain positions it can take.
Read from model_index.json, a checkpoint's safetensors header, the Hugging Face cache or
the presets (core.model_library), never by loading weights (which would import torch on
the GUI thread). `forget()` after the library or the cache changed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core import checkpoints, families, model_library, models
from core.presets import can_take

DEFAULT_NATIVE = 1024
DEFAULT_MULTIPLE = 16  # the strictest multiple any family needs: safe when the family is unknown


@dataclass(frozen=True)
class ModelInfo:
    native: int
    multiple: int
    family: str | None  # a core.families key, None when not known yet
    denoiser_only: bool = False  # a transformer/UNet file without VAE and text encoders


UNKNOWN = ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None)


def _of_family(key: str | None, denoiser_only: bool = False) -> ModelInfo:
    if key not in families.FAMILIES:
        return UNKNOWN
    fam = families.FAMILIES[key]
    return ModelInfo(fam.native, fam.multiple, fam.key, denoiser_only)


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
    if parsed.kind == "file":
        family, kind, _ = checkpoints.describe_file(Path(parsed.location))
        return _of_family(family, kind == checkpoints.DENOISER)
    if parsed.kind == "hub":
        return _of_family(model_library.hub_family(parsed.location)[0])
    return UNKNOWN


def forget() -> None:
    """Drop what is remembered about references (after a download or a library change)."""
    info_for.cache_clear()


def position_problem(ref: str, position: str) -> str | None:
    """Why the model cannot take a chain position ("base": it starts the chain, "refine":
    it refines the previous stage's image or the init image), or None when it can or when
    its family is not known yet."""
    info = info_for(ref)
    if info.denoiser_only:
        return (f"{Path(ref).name} holds only a transformer/UNet: it needs a base pipeline (VAE and text encoders) "
                "and cannot be a stage's model on its own")
    if info.family is None or can_take(info.family, position):
        return None
    fam = families.FAMILIES[info.family]
    if position == "base":
        return (f"{fam.title} models cannot start a chain (they can take: {fam.positions()}): put a base model "
                "before this stage, or open an init image for it to refine")
    return (f"{fam.title} models cannot refine an image at a strength (they can take: {fam.positions()}): "
            "use it as the first stage, or choose a model that can refine")


def same_family(a: str, b: str) -> bool | None:
    """Whether two models share a family (None when either is unknown)."""
    fa, fb = info_for(a).family, info_for(b).family
    if fa is None or fb is None:
        return None
    group = {k: families.FAMILIES[k].ensemble_group or k for k in (fa, fb)}
    return group[fa] == group[fb]
