"""What a model reference is, before anything loads: its family (and so the chain
positions it can take), its native size and pixel multiple, and whether it is a whole
pipeline or a transformer/UNet alone. Read from model_index.json, a checkpoint's
safetensors header, the Hugging Face cache or the presets, never by loading weights, and
neither torch nor diffusers is imported, so the window asks on its own thread.

The window, the model library and the command line all ask here. `forget()` after the
library or the cache changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core import families
from core.checkpoints import DENOISER, PIPELINE, describe_file
from core.errors import ModelError, ReadError
from core.families import Family, UnknownFamily, family_from_model_index
from core.model_configs import native_size, read_config, read_model_index

DEFAULT_NATIVE = 1024
DEFAULT_MULTIPLE = 16  # the strictest multiple any family needs: safe when the family is unknown


@dataclass(frozen=True)
class ModelInfo:
    native: int
    multiple: int
    family: str | None  # a core.families key, None when not known yet
    kind: str = PIPELINE  # PIPELINE, or DENOISER: a transformer/UNet file without VAE and text encoders
    note: str = ""  # why the family is unknown, or what the model needs before it can be used

    @property
    def denoiser_only(self) -> bool:
        return self.kind == DENOISER

    @property
    def fam(self) -> Family | None:
        return families.get(self.family)

    def positions(self) -> str:
        """'base and refine', 'base', 'refine', or why none."""
        if self.denoiser_only:
            return "none on its own (needs a base pipeline)"
        return self.fam.positions() if self.fam else "unknown"


UNKNOWN = ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None)


def _of_family(fam: Family | None, kind: str = PIPELINE, note: str = "", native: int | None = None) -> ModelInfo:
    if fam is None:
        return ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None, kind, note)
    return ModelInfo(native or fam.native, fam.multiple, fam.key, kind, note)


def describe_folder(folder: Path) -> ModelInfo:
    index_file = Path(folder) / "model_index.json"
    if not index_file.is_file():
        return ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None, PIPELINE,
                         f"{folder} is not a diffusers model folder (it has no model_index.json)")
    try:
        fam = family_from_model_index(read_model_index(Path(folder)))
    except (ReadError, UnknownFamily) as exc:
        return ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None, PIPELINE, str(exc))
    return _of_family(fam, native=native_size(Path(folder), fam))


def describe_checkpoint(path: Path) -> ModelInfo:
    family, kind, note = describe_file(Path(path))
    return _of_family(families.get(family), kind, note)


def hub_family(repo_id: str) -> tuple[str | None, str]:
    """A Hub model's family key: from its cached model_index.json, else from the presets."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:  # a malformed id, an unreadable cache: not cached
        found = None
    if isinstance(found, str):
        info = describe_folder(Path(found).parent)
        return info.family, info.note
    from core.presets import preset_families

    if repo_id in preset_families():
        return preset_families()[repo_id], ""
    return None, "not downloaded yet: its family is known once model_index.json is in the cache"


@lru_cache(maxsize=256)
def info_for(ref: str) -> ModelInfo:
    """What a reference is; UNKNOWN (with a note) when it names nothing that can be told."""
    from core.models import parse_ref

    text = (ref or "").strip()
    try:
        parsed = parse_ref(text)
    except ModelError as exc:
        return ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None, PIPELINE, str(exc))
    if parsed.kind == "builtin":
        from core import demo

        try:
            fam = family_from_model_index(demo.declared_index(parsed.location))
        except (ModelError, UnknownFamily) as exc:
            return ModelInfo(DEFAULT_NATIVE, DEFAULT_MULTIPLE, None, PIPELINE, str(exc))
        return _of_family(fam, native=demo.NATIVE_SIZE, note="a built-in model: runs offline")
    if parsed.kind == "folder":
        return describe_folder(Path(parsed.location))
    if parsed.kind == "file":
        return describe_checkpoint(Path(parsed.location))
    family, note = hub_family(parsed.location)
    return _of_family(families.get(family), PIPELINE, note)


@lru_cache(maxsize=256)
def scheduler_config(ref: str) -> dict | None:
    """The scheduler config a model ships with (scheduler/scheduler_config.json of its
    diffusers folder, of its cached Hub snapshot, of the built-in demo, or of the configs
    Handoff keeps for a single-file checkpoint's family), read without loading anything;
    None when there is none to read."""
    from core.models import parse_ref

    try:
        parsed = parse_ref(ref or "")
    except ModelError:
        return None
    found: Path | None = None
    if parsed.kind == "builtin":
        from core import demo

        found = demo.DEMO_DIR / parsed.location / "scheduler" / "scheduler_config.json"
    elif parsed.kind == "folder":
        found = Path(parsed.location) / "scheduler" / "scheduler_config.json"
    elif parsed.kind == "file":
        from core.models import config_folder

        fam = info_for(ref).fam
        found = config_folder(fam) / "scheduler" / "scheduler_config.json" if fam else None
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(parsed.location, "scheduler/scheduler_config.json")
        except Exception:  # a malformed id, an unreadable cache: nothing to read
            cached = None
        found = Path(cached) if isinstance(cached, str) else None
    try:
        return read_config(found) if found is not None else None
    except ReadError:
        return None


def forget() -> None:
    """Drop what is remembered about references (after a download or a library change)."""
    info_for.cache_clear()
    scheduler_config.cache_clear()


def position_problem(ref: str, position: str) -> str | None:
    """Why the model cannot take a chain position, or None when it can or when its family is
    not known yet (core.planning.family_position_problem, the one rule, asked with what is known)."""
    from core.planning import family_position_problem

    info = info_for(ref)
    return family_position_problem(info.fam, position, info.denoiser_only, Path(ref).name)


def chain_problems(project) -> list[str]:
    """Each enabled stage whose model cannot take its place in the chain (a refiner-only
    model first, a transformer-only file anywhere), known before any download."""
    from core.planning import chain_position

    out = []
    for pos, (i, stage) in enumerate(project.enabled_stages()):
        if not stage.model.strip():
            continue
        problem = position_problem(stage.model, chain_position(pos, project.init_image is not None))
        if problem:
            out.append(f"stage {i + 1} ({stage.model}): {problem}")
    return out


def same_family(a: str, b: str) -> bool | None:
    """Whether two models share a family or an ensemble group (None when either is unknown),
    for the strength advice: 0.10-0.25 within a family, 0.4-0.6 across families."""
    fa, fb = info_for(a).fam, info_for(b).fam
    if fa is None or fb is None:
        return None
    return fa == fb or fa.ensembles_with(fb)
