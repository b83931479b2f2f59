"""The project document: prompts, size and an ordered list of stages.

A project is plain data. It is validated with messages a user can act on, serialised
to a versioned dict, and upgraded on load when the schema moves on.
"""
from __future__ import annotations

import copy
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any

from core import checked
from core.errors import ProjectError, ReadError
from core.strength import effective_steps, steps_needed

SCHEMA_VERSION = 2  # 2: stages carry adapters (loras, controlnet, ip_adapters)

HANDOFFS = ("auto", "pixel", "latent", "ensemble")
MEMORY_POLICIES = ("auto", "sequential", "resident", "offload")
DTYPES = ("auto", "bf16", "fp16", "fp32")
# How a stage's transformer/UNet is kept: as loaded, fp8 storage (upcast per layer),
# torchao int8 weight-only, or bitsandbytes 4-bit NF4 (core.denoisers).
QUANTIZE = ("none", "fp8", "int8", "nf4")
# Seeds are 64-bit, as ComfyUI's (0..0xffffffffffffffff) and A1111's are, and a recipe
# keeps its seed exactly. The noise is torch.Generator("cpu").manual_seed(seed)'s, on every
# device: that generator (mt19937) takes only the seed's low 32 bits, so two seeds that
# differ only above bit 32 draw the same noise (tests/test_seeds.py), as in ComfyUI, whose
# noise is CPU noise from the same call. The seed is still kept whole, not reduced: it is
# what the other tool wrote, and what a re-export writes back.
MAX_SEED = 2**64 - 1
MAX_UPSCALE = 4.0
PREPROCESSORS = ("canny", "none")  # "none": the control image is a ready edge or depth map
MAX_ADAPTER_WEIGHT = 4.0  # LoRA weights and IP-Adapter scales beyond this only break images
# Bounds checked before any work starts: a typo (steps 1e9, a 100000 px side) is refused
# with a message instead of allocating for minutes and dying of MemoryError.
MAX_STEPS = 1000
MAX_SIDE = 8192  # pixels, per side, at every stage (upscales included)
# A stage may work at up to this many times the area its model was made for (8x per side);
# beyond it the image is a tiling of the training size, and the memory grows with it.
AREA_FACTOR = 64
MAX_STAGES = 32
MIN_TILE = 64  # pixels: an upscaler tile smaller than this is mostly overlap
# The most tokens any text encoder here reads (diffusers' longest max_sequence_length is
# 4096; CLIP reads 77), times 8 characters a token: a margin for long words and any script.
# A longer prompt is no prompt: a 40 MB one made the tokenizer take 5 GB and abort.
MAX_PROMPT_TOKENS = 4096
MAX_PROMPT_CHARS = MAX_PROMPT_TOKENS * 8
MAX_CANDIDATES = 64  # first-stage candidates a job scores (core.candidates)


@dataclass
class Lora:
    """A LoRA on a stage: a .safetensors file (diffusers/PEFT, kohya or civitai layout), a
    folder holding one, or a Hub id (optionally owner/repo/file.safetensors)."""

    ref: str
    weight: float = 1.0


@dataclass
class ControlNet:
    """A ControlNet conditioning a generate stage on a control image."""

    model: str  # a diffusers ControlNet folder, a Hub id, or a .safetensors file
    image: str  # the control image (a photo to take Canny edges of, or a ready map)
    preprocessor: str = "canny"
    low: int = 100  # Canny hysteresis thresholds, 0..255
    high: int = 200
    scale: float = 0.8  # controlnet_conditioning_scale
    start: float = 0.0  # control_guidance_start / _end: the share of the schedule it acts on
    end: float = 1.0


@dataclass
class IPAdapter:
    """An IP-Adapter reference image on a generate stage. `model` is the adapter's weights:
    a local .safetensors file (its image encoder in an image_encoder/ folder beside it, or
    given as `image_encoder`), or on the Hub owner/repo/subfolder/file.safetensors."""

    model: str
    image: str
    scale: float = 0.6
    image_encoder: str | None = None


@dataclass
class Stage:
    """One diffusion pass. The first enabled stage of a job generates (or refines the
    init image); each later one takes the previous stage's work through `handoff`."""

    model: str
    steps: int = 30
    guidance: float = 5.0
    seed: int | None = None  # None: inherit the project's seed
    scheduler: str | None = None  # a diffusers scheduler class name; None keeps the model's
    prompt: str | None = None  # replaces the project prompt when set
    prompt_suffix: str = ""  # appended to the project prompt (detail terms for a refiner)
    negative_prompt: str | None = None  # replaces the project negative prompt when set
    handoff: str = "auto"  # how this stage takes the previous stage's work
    strength: float = 0.3  # pixel/latent: how much of the schedule is re-run
    switch_at: float = 0.8  # ensemble: fraction of the schedule the previous stage runs
    # pixel: the image taken in is resized by this factor (Lanczos) before it is refined,
    # A1111's "hires fix" and ComfyUI's upscale-then-KSampler; 1 keeps the size
    upscale: float = 1.0
    # pixel: an upscaler model file (.pth/.safetensors, core.upscalers) that does the
    # `upscale` resize instead of Lanczos: a hires fix with ESRGAN and the like
    upscaler: str | None = None
    # an upscaler's tile side in input pixels; 0/None: from the free memory
    tile: int | None = None
    # pixel: refine in overlapping tiles of this side (in the stage's own pixels), blended
    # with feathered seams (core.tiled_refine), so a 2x-4x polish needs one tile's memory;
    # 0: the whole image at once
    refine_tile: int = 0
    # the transformer/UNet from this one file (GGUF, fp8 or bf16/fp16 .safetensors, the
    # original or ComfyUI layout) instead of the model's own; the rest comes from `model`
    transformer: str | None = None
    quantize: str = "none"  # one of QUANTIZE
    enabled: bool = True
    name: str = ""
    loras: list[Lora] = field(default_factory=list)
    controlnet: ControlNet | None = None
    ip_adapters: list[IPAdapter] = field(default_factory=list)

    def effective_prompt(self, project_prompt: str) -> str:
        if self.prompt is not None and self.prompt.strip():
            base = self.prompt
        else:
            base = project_prompt
        suffix = self.prompt_suffix.strip()
        if not suffix:
            return base
        return f"{base.rstrip().rstrip(',')}, {suffix}" if base.strip() else suffix

    def effective_negative(self, project_negative: str) -> str:
        return self.negative_prompt if self.negative_prompt is not None else project_negative

    def effective_seed(self, project_seed: int) -> int:
        return project_seed if self.seed is None else self.seed

    def label(self, index: int) -> str:
        return self.name or f"stage {index + 1}"


@dataclass
class Project:
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    seed: int = 0
    stages: list[Stage] = field(default_factory=list)
    init_image: str | None = None  # a path; makes the first stage a refine of this image
    memory_policy: str = "auto"
    vram_budget: str = ""  # plan memory for this much VRAM ("12G"), not the free VRAM (core.memory_plan)
    dtype: str = "auto"
    # The first stage runs with `candidates` seeds (seed, seed+1, ...), `scorer` (a
    # core.scorer_refs reference) scores each, and the best `keep` continue (core.candidates).
    candidates: int = 1
    scorer: str | None = None
    keep: int = 1

    def enabled_stages(self) -> list[tuple[int, Stage]]:
        return [(i, s) for i, s in enumerate(self.stages) if s.enabled]

    def copy(self) -> "Project":
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "Project":
        """A project from its dict (a project file's, a PNG chunk's), every field's type
        checked against its annotation, adapters included: raises ReadError naming each
        field that is wrong, all at once."""
        data = migrate(dict(checked.table(data, "the project")))
        data.pop("schema_version")
        problems: list[str] = []
        project = _read(Project, data, "", problems)
        if problems:
            raise ReadError("; ".join(problems))
        return project


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# The annotations are strings (PEP 563) that get_type_hints compiles and evaluates: do that
# here, at import, so that reading a user's file runs no compile (tests/test_security.py
# audits the first open of each file).
for _cls in (Lora, ControlNet, IPAdapter, Stage, Project):
    _hints(_cls)


_SCALARS = {int: checked.integer, float: checked.number, str: checked.text, bool: checked.boolean}


def _read(kind: Any, value: Any, where: str, problems: list[str]) -> Any:
    """`value` as the annotated type `kind`: a dataclass from a table, a list of them,
    X | None, or a scalar. Each thing wrong is added to `problems` (named by `where`), and
    None stands in for the part that was wrong."""
    if is_dataclass(kind):
        return _read_dataclass(kind, value, where, problems)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None and type(None) in typing.get_args(kind):
            return None
        (kind,) = [k for k in typing.get_args(kind) if k is not type(None)]
        return _read(kind, value, where, problems)
    try:
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            name = "stage {n}" if item is Stage else f"{where}[{{n}}]"  # "stage 2", "stage 1: loras[1]"
            return [_read(item, v, name.format(n=n + 1), problems) for n, v in enumerate(checked.listing(value, where))]
        return _SCALARS[kind](value, where)
    except ReadError as exc:
        problems.extend(exc.problems)
        return None


def _read_dataclass(cls: type, value: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table of fields, not {checked.shown(value)}")
        return None
    declared = {f.name: f for f in fields(cls)}
    prefix = f"{where}: " if where else ""
    unknown = set(value) - set(declared)
    if unknown:
        problems.append(f"{prefix}unknown field(s): {checked.names(unknown)}" if where
                        else f"unknown project field(s): {checked.names(unknown)}")
        return None
    missing = [n for n, f in declared.items() if n not in value and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        problems.append(f"{prefix}no {', '.join(missing)} given")
        return None
    before = len(problems)
    values = {name: _read(_hints(cls)[name], v, f"{prefix}{name}", problems) for name, v in value.items()}
    return cls(**values) if len(problems) == before else None


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade an older project dict to SCHEMA_VERSION, one version at a time."""
    version = checked.integer(data.get("schema_version", SCHEMA_VERSION), "schema_version")
    if version > SCHEMA_VERSION:
        raise ReadError(f"this project was saved by a newer Handoff (schema {version}, this one reads up to {SCHEMA_VERSION})")
    if version < 1:
        raise ReadError(f"schema_version {version} is not one Handoff ever wrote (1..{SCHEMA_VERSION})")
    if version < 2:
        # 1 -> 2: stages gained adapters; a version 1 stage has none.
        for stage in data.get("stages", []) if isinstance(data.get("stages"), list) else []:
            if isinstance(stage, dict):
                stage.setdefault("loras", [])
                stage.setdefault("controlnet", None)
                stage.setdefault("ip_adapters", [])
    data["schema_version"] = SCHEMA_VERSION
    return data


def validate(project: Project, size_multiple: int = 8, stage_multiples: dict[int, int] | None = None,
             stage_natives: dict[int, int] | None = None) -> None:
    """Raise ProjectError listing every problem that would stop the job.

    `stage_multiples` maps a stage index to the pixel multiple its model needs, when the
    models are known; `size_multiple` is used for the rest. `stage_natives` maps a stage
    index to the (square) size its model was made for, which bounds the area it may
    work at (AREA_FACTOR); stages without one are bounded by MAX_SIDE alone.
    """
    problems: list[str] = []
    if len(project.stages) > MAX_STAGES:
        problems.append(f"{len(project.stages)} stages are more than {MAX_STAGES}")
    if not project.prompt.strip() and not any(s.prompt for _, s in project.enabled_stages()):
        problems.append("the prompt is empty")
    problems += _prompt_problems(project)
    if project.width <= 0 or project.height <= 0:
        problems.append(f"size {project.width}x{project.height} must be positive")
    elif max(project.width, project.height) > MAX_SIDE:
        problems.append(f"size {project.width}x{project.height} is too large: each side must be at most {MAX_SIDE} px")
    if not 0 <= project.seed <= MAX_SEED:
        problems.append(f"seed {project.seed} is outside 0..{MAX_SEED}")
    if project.vram_budget:
        from core.memory_plan import parse_budget

        try:
            parse_budget(project.vram_budget)
        except ProjectError as exc:
            problems.extend(exc.problems)
    if project.memory_policy not in MEMORY_POLICIES:
        problems.append(f"memory policy '{project.memory_policy}' is not one of {', '.join(MEMORY_POLICIES)}")
    if project.dtype not in DTYPES:
        problems.append(f"precision '{project.dtype}' is not one of {', '.join(DTYPES)}")
    problems += candidate_problems(project)
    enabled = project.enabled_stages()
    needs_multiple: dict[int, list[str]] = {}
    if not enabled:
        problems.append("no enabled stage: add a stage with a model")
    for pos, (i, stage) in enumerate(enabled):
        where = f"stage {i + 1} ({stage.model or 'no model'})"
        multiple = (stage_multiples or {}).get(i, size_multiple)
        if project.width % multiple or project.height % multiple:
            needs_multiple.setdefault(multiple, []).append(f"stage {i + 1}")
        if not stage.model.strip():
            problems.append(f"stage {i + 1} has no model")
        if stage.steps < 1:
            problems.append(f"{where}: steps must be at least 1, not {stage.steps}")
        elif stage.steps > MAX_STEPS:
            problems.append(f"{where}: {stage.steps} steps are more than {MAX_STEPS}")
        if not math.isfinite(stage.guidance) or stage.guidance < 0:
            problems.append(f"{where}: guidance must be a number of 0 or more, not {stage.guidance}")
        if stage.seed is not None and not 0 <= stage.seed <= MAX_SEED:
            problems.append(f"{where}: seed {stage.seed} is outside 0..{MAX_SEED}")
        problems += adapter_problems(stage, where, generates=pos == 0 and project.init_image is None)
        problems += upscaler_problems(stage, where, switches=pos > 0 and stage.handoff == "ensemble")
        problems += refine_tile_problems(stage, where, multiple, generates=pos == 0 and project.init_image is None)
        problems += denoiser_problems(stage, where)
        if stage.handoff not in HANDOFFS:
            problems.append(f"{where}: handoff '{stage.handoff}' is not one of {', '.join(HANDOFFS)}")
            continue
        if not 1 <= stage.upscale <= MAX_UPSCALE:
            problems.append(f"{where}: upscale {stage.upscale:g} is outside 1..{MAX_UPSCALE:g}")
        if pos == 0 and project.init_image is None:
            if stage.handoff != "auto":
                problems.append(
                    f"{where} takes a '{stage.handoff}' handoff but has nothing to refine: "
                    "add a stage before it, or an init image"
                )
            if stage.upscale != 1:
                problems.append(f"{where} generates at the project size: upscale applies to a stage that "
                                "refines an image (add one after it, or set the size)")
            continue
        # The first stage takes an init image as pixels whatever handoff it asks for
        # (core.planning decides it, and notes a latent or ensemble asked in vain).
        handoff = "pixel" if pos == 0 else stage.handoff
        if handoff == "ensemble" and stage.upscale != 1:
            problems.append(f"{where}: an ensemble finishes the same noisy latents, so it cannot change "
                            "the size; use a pixel handoff to upscale")
        if handoff == "ensemble":
            if not 0 < stage.switch_at <= 1:
                problems.append(f"{where}: switch point {stage.switch_at} is outside (0, 1]")
        elif not 0 < stage.strength <= 1:
            problems.append(f"{where}: strength {stage.strength} is outside (0, 1]")
        elif 1 <= stage.steps <= MAX_STEPS and effective_steps(stage.steps, stage.strength) < 1:
            need = steps_needed(stage.strength)
            problems.append(
                f"{where}: {stage.steps} steps at strength {stage.strength} run no denoising step "
                f"(steps x strength < 1); use at least {need} steps"
            )
    if 0 < project.width <= MAX_SIDE and 0 < project.height <= MAX_SIDE and all(
            1 <= s.upscale <= MAX_UPSCALE for _, s in enabled):
        problems += _size_problems(project, stage_multiples or {}, stage_natives or {}, size_multiple)
    for multiple, where in sorted(needs_multiple.items(), reverse=True)[:1]:
        # The largest multiple any stage needs is the one to meet; one message says it.
        problems.insert(0,
            f"size {project.width}x{project.height} is not a multiple of {multiple}, which {', '.join(where)} "
            f"need{'s' if len(where) == 1 else ''} (try {snap(project.width, multiple)}x{snap(project.height, multiple)})"
        )
    if problems:
        raise ProjectError(problems)


def candidate_problems(project: Project) -> list[str]:
    """What is wrong with the candidate fields, found before anything loads."""
    out: list[str] = []
    if not 1 <= project.candidates <= MAX_CANDIDATES:
        out.append(f"candidates {project.candidates} is outside 1..{MAX_CANDIDATES}")
    elif not 1 <= project.keep <= project.candidates:
        out.append(f"keep {project.keep} is outside 1..{project.candidates} (the candidates)")
    if project.candidates > 1 and not (project.scorer or "").strip():
        out.append(f"{project.candidates} candidates need a scorer to choose between them "
                   "(clip:<CLIP model> or aesthetic:<file>)")
    return out


def upscaler_problems(stage: Stage, where: str, switches: bool) -> list[str]:
    """What is wrong with a stage's upscaler fields, found before anything loads; switches:
    the stage is an ensemble's second half (a first stage never is: it refines its init
    image as pixels whatever it asks)."""
    out: list[str] = []
    if stage.tile and not MIN_TILE <= stage.tile <= MAX_SIDE:
        out.append(f"{where}: tile {stage.tile} px is outside {MIN_TILE}..{MAX_SIDE} (0: from the free memory)")
    if stage.upscaler is not None:
        if stage.upscaler.strip().startswith("builtin:"):
            from core import demo
            from core.errors import ModelError

            try:
                demo.upscaler_path(stage.upscaler)
            except ModelError as exc:
                out.append(f"{where}: upscaler {exc}")
        elif (problem := file_field_problem(stage.upscaler, "upscaler", where)):
            out.append(problem)
        elif switches:
            out.append(f"{where}: an ensemble cannot change the size, so it takes no upscaler; use a pixel handoff")
    return out


def _prompt_problems(project: Project) -> list[str]:
    """Prompts longer than any text encoder could read, many times over (MAX_PROMPT_CHARS)."""
    texts = [("the prompt", project.prompt), ("the negative prompt", project.negative_prompt)]
    for i, stage in enumerate(project.stages):
        texts += [(f"stage {i + 1}'s prompt", stage.prompt or ""), (f"stage {i + 1}'s prompt suffix", stage.prompt_suffix),
                  (f"stage {i + 1}'s negative prompt", stage.negative_prompt or "")]
    return [f"{name} is {len(text):,} characters: at most {MAX_PROMPT_CHARS:,} are taken (a text encoder reads "
            f"at most {MAX_PROMPT_TOKENS:,} tokens)" for name, text in texts if len(text) > MAX_PROMPT_CHARS]


def refine_tile_problems(stage: Stage, where: str, multiple: int, generates: bool) -> list[str]:
    """What is wrong with a stage's refine_tile, found before anything loads."""
    tile = stage.refine_tile
    if not tile:
        return []
    if generates:
        return [f"{where}: a tiled refine refines an image; this stage generates (set refine_tile on a later "
                "stage, or open an init image)"]
    if not MIN_TILE <= tile <= MAX_SIDE:
        return [f"{where}: refine tile {tile} px is outside {MIN_TILE}..{MAX_SIDE} (0: no tiling)"]
    if tile % multiple:
        return [f"{where}: refine tile {tile} px is not a multiple of {multiple}, which its model needs "
                f"(try {snap(tile, multiple)})"]
    return []


def denoiser_problems(stage: Stage, where: str) -> list[str]:
    """What is wrong with a stage's transformer file and quantize setting, found before
    anything loads (what the file holds is checked once the stage's model is known)."""
    out: list[str] = []
    if stage.quantize not in QUANTIZE:
        out.append(f"{where}: quantize '{stage.quantize}' is not one of {', '.join(QUANTIZE)}")
    if stage.transformer is not None and (problem := file_field_problem(stage.transformer, "transformer", where)):
        out.append(problem)
    return out


def file_field_problem(value: str, what: str, where: str) -> str | None:
    """Why a stage field that names one file (an upscaler, a transformer) names none here."""
    from pathlib import Path

    if not value.strip():
        return f"{where}: the {what} names no file"
    if not Path(value).expanduser().is_file():
        return f"{where}: {what} file not found: {value}"
    return None


def adapter_problems(stage: Stage, where: str, generates: bool) -> list[str]:
    """What is wrong with a stage's adapters, found before anything loads."""
    from pathlib import Path

    out: list[str] = []
    for n, lora in enumerate(stage.loras):
        if not lora.ref.strip():
            out.append(f"{where}: LoRA {n + 1} names no file")
        if not -MAX_ADAPTER_WEIGHT <= lora.weight <= MAX_ADAPTER_WEIGHT:
            out.append(f"{where}: LoRA weight {lora.weight:g} is outside -{MAX_ADAPTER_WEIGHT:g}..{MAX_ADAPTER_WEIGHT:g}")
    cn = stage.controlnet
    if cn is not None:
        if not generates:
            out.append(f"{where}: a ControlNet conditions a stage that generates; this one refines")
        if not cn.model.strip():
            out.append(f"{where}: the ControlNet names no model")
        if not cn.image or not Path(cn.image).is_file():
            out.append(f"{where}: control image not found: {cn.image or '(none given)'}")
        if cn.preprocessor not in PREPROCESSORS:
            out.append(f"{where}: preprocessor '{cn.preprocessor}' is not one of {', '.join(PREPROCESSORS)}")
        if not (0 <= cn.low <= 255 and 0 <= cn.high <= 255 and cn.low <= cn.high):
            out.append(f"{where}: Canny thresholds {cn.low},{cn.high} must be 0..255 with low <= high")
        if not 0 <= cn.scale <= 2:
            out.append(f"{where}: ControlNet scale {cn.scale:g} is outside 0..2")
        if not 0 <= cn.start < cn.end <= 1:
            out.append(f"{where}: ControlNet start {cn.start:g} and end {cn.end:g} must satisfy 0 <= start < end <= 1")
    for n, ip in enumerate(stage.ip_adapters):
        if not generates:
            out.append(f"{where}: an IP-Adapter conditions a stage that generates; this one refines")
            break
        if not ip.image or not Path(ip.image).is_file():
            out.append(f"{where}: IP-Adapter reference image {n + 1} not found: {ip.image or '(none given)'}")
        if not 0 <= ip.scale <= MAX_ADAPTER_WEIGHT:
            out.append(f"{where}: IP-Adapter scale {ip.scale:g} is outside 0..{MAX_ADAPTER_WEIGHT:g}")
    return out


def _size_problems(project: Project, multiples: dict[int, int], natives: dict[int, int],
                   default_multiple: int) -> list[str]:
    """Stages whose working size (upscales included) is past MAX_SIDE, or past AREA_FACTOR
    times the area their model was made for."""
    problems = []
    for i, (width, height) in stage_sizes(project, multiples, default_multiple).items():
        where = f"stage {i + 1} ({project.stages[i].model})"
        native = natives.get(i)
        if max(width, height) > MAX_SIDE:
            if (width, height) == (project.width, project.height):
                continue  # said once, for the project's size
            problems.append(f"{where} would work at {width}x{height}: each side must be at most {MAX_SIDE} px "
                            "(lower the size or the upscale)")
        elif native and _worked_area(project.stages[i], width, height) > AREA_FACTOR * native * native:
            problems.append(f"{where} would work at {width}x{height} ({width * height / 1e6:.1f} MP), more than "
                            f"{AREA_FACTOR} times the area its model was made for ({native}x{native}): lower "
                            "the size or the upscale, or refine in tiles (refine_tile)")
    return problems


def _worked_area(stage: Stage, width: int, height: int) -> int:
    """The area the model works at in one call: a tiled refine's tile (core.tiled_refine),
    else the whole image."""
    tile = stage.refine_tile
    return min(tile, width) * min(tile, height) if tile else width * height


def stage_sizes(project: Project, multiples: dict[int, int] | None = None,
                default_multiple: int = 8) -> dict[int, tuple[int, int]]:
    """(width, height) each enabled stage works at: the project size (or the init image's,
    which the project takes), times every upscale so far, snapped to the stage's multiple."""
    width, height = project.width, project.height
    sizes = {}
    for i, stage in project.enabled_stages():
        m = (multiples or {}).get(i, default_multiple)
        if stage.upscale != 1 or width % m or height % m:
            # (an upscaler stage, multiple 1, leaves a size the next model may need snapped)
            width, height = snap(round(width * stage.upscale), m), snap(round(height * stage.upscale), m)
        sizes[i] = (width, height)
    return sizes


def snap(value: int, multiple: int) -> int:
    """The nearest positive multiple of `multiple`."""
    return max(multiple, int(round(value / multiple)) * multiple)
