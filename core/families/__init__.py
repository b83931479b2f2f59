"""Model families, one module each in this package, told apart by the pipeline class a
model declares (model_index.json) or by the tensor names of a single-file checkpoint.

A module adds its families by defining FAMILY (or FAMILIES, a tuple); adding a family is
one new module here. Neither torch nor diffusers is imported, so the window can ask.
"""
from __future__ import annotations

import importlib
import pkgutil

from core.families.base import (  # noqa: F401  (the package's public names)
    CONTROLNET, IP_ADAPTER, LATENTS_AS_IMAGE, LATENTS_VIA_PREPARE, LATENTS_VIA_TAIL, LORA, POSITIONS, Family,
    LoraView,
)


class UnknownFamily(ValueError):
    pass


def _discover() -> dict[str, Family]:
    found: list[Family] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "FAMILIES", ()) or ([module.FAMILY] if hasattr(module, "FAMILY") else []))
    keys = [f.key for f in found]
    duplicated = {k for k in keys if keys.count(k) > 1}
    if duplicated:
        raise RuntimeError(f"family keys defined twice: {', '.join(sorted(duplicated))}")
    return {f.key: f for f in sorted(found, key=lambda f: (f.order, f.key))}


FAMILIES: dict[str, Family] = _discover()


def get(key: str | None) -> Family | None:
    """The family of a key (as stored in a library entry or a preset), None if unknown."""
    return FAMILIES.get(key) if isinstance(key, str) else None


def family_of_class(pipeline_class: str) -> Family | None:
    """The family whose models may declare this diffusers pipeline class, None when Handoff
    does not know it. (SDXL and its refiner share classes: this gives the first.)"""
    return next((f for f in FAMILIES.values() if pipeline_class in f.pipeline_classes), None)


def family_from_model_index(index: dict) -> Family:
    """Tell the family from a diffusers model_index.json."""
    if not isinstance(index, dict):
        raise UnknownFamily("model_index.json is not a table")
    for fam in FAMILIES.values():
        if fam.claims(index):
            return fam
    cls = index.get("_class_name")
    known = ", ".join(f.title for f in FAMILIES.values())
    raise UnknownFamily(f"pipeline '{cls if isinstance(cls, str) and cls else 'unnamed'}' is not a family "
                        f"Handoff knows ({known})")


def family_from_checkpoint_keys(keys: set[str]) -> Family:
    """Tell the family of a single-file checkpoint (the kind ComfyUI and A1111 keep)."""

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    for fam in sorted(FAMILIES.values(), key=lambda f: f.checkpoint_rank):
        if fam.checkpoint_rule is not None and fam.checkpoint_rule(has):
            return fam
    raise UnknownFamily("the checkpoint's tensors match no family Handoff knows")


def family_of_lora(view: LoraView) -> Family | None:
    """The family a LoRA was made for: named in its metadata, else told by its tensor names
    and shapes; None when neither tells."""
    ordered = sorted(FAMILIES.values(), key=lambda f: f.lora_rank)
    text = view.meta_text()
    for fam in ordered:
        if any(token in text for token in fam.lora_meta):
            return fam
    for fam in ordered:
        if fam.lora_rule is not None and fam.lora_rule(view):
            return fam
    return None


def family_of_controlnet(config: dict) -> Family | None:
    """The family a ControlNet's config.json says it conditions."""
    return next((f for f in FAMILIES.values() if f.claims_controlnet(config)), None)
