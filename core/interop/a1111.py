"""Automatic1111 and Forge `parameters` ("infotext"), read and written.

The text is the prompt, a `Negative prompt:` line, and a last line of `Key: value` fields
(a value with a comma, colon or newline is JSON-quoted). The reader follows A1111's own
parse_generation_parameters (modules/infotext_utils.py), then maps the fields to stages:
the base pass; `Refiner` and `Refiner switch at` as an ensemble stage; the Hires fields
as a pixel stage that resizes the image first (a latent upscaler becomes a latent handoff
at ×1, a pixel upscale otherwise: Handoff resizes pixels, never latents). `<lora:…>`
tags are removed from the prompt and listed as not applied (adapters come later), and so
is every extension's field (ADetailer, ControlNet, FreeU…).

The writer describes the whole job: the base stage's steps, sampler, seed and model; an
ensemble as `Refiner`; a pixel or latent refine or upscale as the Hires fields; and, for
any chain of two or more stages, all of them in a `Handoff stages` field.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.interop import samplers
from core.interop.chain import JobStage, display_name, job
from core.interop.reading import Imported, Where, size_of
from core.project import MAX_UPSCALE, Lora, Project, Stage
from core.ran import StageRan

# A1111's own field pattern: a key of word characters, spaces, '-' and '/', then a quoted
# or a plain value up to the next comma.
_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_ADAPTER_TAG = re.compile(r"(,\s*)?<(lora|lyco|hypernet):([^:>]+)(?::([^:>]*))?[^>]*>", re.IGNORECASE)
# Fields that describe the job and are mapped (or deliberately implied) by read_parameters().
_MAPPED = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash", "Denoising strength",
    "Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires checkpoint", "Hires sampler",
    "Hires schedule type", "Hires CFG Scale", "Hires prompt", "Hires negative prompt", "Refiner", "Refiner switch at",
    "Version", "Distilled CFG Scale", "Handoff stage", "Handoff stages", "Hashes", "Lora hashes", "Lora weights",
}
# Extensions whose many fields are reported as one line each.
_EXTENSIONS = ("ADetailer", "ControlNet", "FreeU", "Dynamic thresholding", "Regional Prompter", "Tiled Diffusion",
               "Tiled VAE", "MultiDiffusion", "Kohya Hires.fix", "Mimic", "Threshold percentile", "SAG", "PAG")


@dataclass
class Infotext:
    prompt: str
    negative: str
    fields: dict[str, str] = field(default_factory=dict)


def parse_infotext(text: str) -> Infotext:
    """Prompt, negative prompt and fields, as A1111's parse_generation_parameters reads them:
    the last line holds the fields when at least three match; quoted values are unquoted."""
    *lines, last = text.strip().split("\n")
    if len(_FIELD.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(last):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass  # A1111 keeps such a value as written
        fields[key.strip()] = value if isinstance(value, str) else str(value)
    return Infotext("\n".join(prompt), "\n".join(negative), fields)


def looks_like_infotext(text: str) -> bool:
    return bool(text.strip()) and len(_FIELD.findall(text.strip().split("\n")[-1])) >= 3


# ---------------------------------------------------------------- reading


def read_parameters(text: str, where: Where, lookup, tool: str | None = None) -> Imported:
    """A project from A1111/Forge `parameters` text."""
    info = parse_infotext(text)
    f = info.fields
    version = f.get("Version", "")
    tool = tool or ("Forge" if version.startswith("f") else "Automatic1111")
    unmapped: list[str] = []
    notes: list[str] = []
    loras: list[Lora] = []
    prompt = strip_adapter_tags(info.prompt, "prompt", unmapped, loras)
    negative = strip_adapter_tags(info.negative, "negative prompt", unmapped)
    if "Size" in f:
        m = _SIZE.match(f["Size"].strip())
        if not m:
            raise where.error("field 'Size'", f"is {f['Size']!r}, not WIDTHxHEIGHT")
        width, height = size_of(where, m.group(1), m.group(2), "field 'Size'")
    else:
        width, height = 512, 512
        notes.append("no Size field: 512x512 assumed (A1111's default)")
    steps = where.whole(f.get("Steps", 20), "field 'Steps'")
    seed = where.seed(f.get("Seed", 0), "field 'Seed'", notes)
    guidance = where.number(f.get("CFG scale", 7.0), "field 'CFG scale'")
    if "Distilled CFG Scale" in f:
        distilled = where.number(f["Distilled CFG Scale"], "field 'Distilled CFG Scale'")
        if guidance != 1:
            notes.append(f"CFG scale {guidance:g} not used: Handoff's guidance for a distilled model (Flux) is the "
                         f"Distilled CFG Scale, {distilled:g}")
        guidance = distilled
    scheduler, notice = samplers.from_a1111(f.get("Sampler"), f.get("Schedule type"), tool)
    _note(notes, notice, "stage 1")
    model_hash = f.get("Model hash") or _hash_from_hashes(f.get("Hashes"))
    model = lookup.resolve(f.get("Model"), model_hash, "stage 1", notes)
    base = Stage(model=model, steps=steps, guidance=guidance, scheduler=scheduler)
    stages = [base]
    hires = any(k in f for k in ("Hires upscale", "Hires resize", "Hires upscaler"))
    if "Denoising strength" in f and not hires:
        base.strength = _strength(where, f["Denoising strength"], "field 'Denoising strength'", notes)
        notes.append(f"made from an init image (img2img at denoising strength {base.strength:g}), which the file "
                     "does not hold: the first stage generates; open that image to refine it instead")
    if f.get("Refiner"):
        stages.append(Stage(
            model=lookup.resolve(f["Refiner"], None, "stage 2 (refiner)", notes), steps=steps, guidance=guidance,
            scheduler=scheduler, handoff="ensemble", name="refiner",
            switch_at=_fraction(where, f.get("Refiner switch at", 0.8), "field 'Refiner switch at'")))
        if "Refiner switch at" not in f:
            notes.append("no Refiner switch at field: 0.8 assumed")
    if hires:
        stages.append(_hires_stage(f, where, lookup, base, (width, height), len(stages) + 1, notes))
    if f.get("Handoff stages"):
        notes.append("made by a Handoff chain (" + f["Handoff stages"] + "); its `handoff` chunk is missing, so "
                     "the chain was rebuilt from the A1111 fields, which hold at most a refiner and a hires pass")
    if f.get("RNG") and f["RNG"].upper() != "CPU":
        notes.append(f"RNG {f['RNG']}: Handoff draws noise on the CPU, so the same seed gives other noise")
    _lora_fields(f, unmapped)
    unmapped += _unmapped_fields(f)
    stages[0].loras = loras  # A1111 applies prompt LoRAs to the whole job: here, the stage that composes
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=stages)
    return Imported(project, tool, "the `parameters` text", unmapped, notes)


def _hires_stage(f: dict[str, str], where: Where, lookup, base: Stage, size: tuple[int, int], number: int,
                 notes: list[str]) -> Stage:
    label = f"stage {number} (hires fix)"
    factor = 1.0
    if "Hires upscale" in f:
        factor = where.number(f["Hires upscale"], "field 'Hires upscale'")
    elif "Hires resize" in f:
        m = _SIZE.match(f["Hires resize"].strip())
        if not m:
            raise where.error("field 'Hires resize'", f"is {f['Hires resize']!r}, not WIDTHxHEIGHT")
        w, h = size_of(where, m.group(1), m.group(2), "field 'Hires resize'")
        factor = round(max(w / size[0], h / size[1]), 4)
        if abs(w / size[0] - h / size[1]) > 0.02:
            notes.append(f"{label}: Hires resize {w}x{h} changes the aspect ratio; Handoff scales both sides ×{factor:g}")
    if factor > MAX_UPSCALE or factor < 1:
        clamped = min(max(factor, 1.0), MAX_UPSCALE)
        notes.append(f"{label}: Hires upscale ×{factor:g} is outside Handoff's 1..{MAX_UPSCALE:g}: ×{clamped:g} used")
        factor = clamped
    upscaler = f.get("Hires upscaler", "Latent").strip()
    handoff = "pixel"
    if upscaler.lower().startswith("latent"):
        if factor == 1:
            handoff = "latent"
        else:
            notes.append(f"{label}: A1111 upscaled the latents ({upscaler}); Handoff upscales pixels only, so the "
                         f"decoded image is resized ×{factor:g} (Lanczos) and refined at the new size")
    elif upscaler.lower() not in ("lanczos", "none", "nearest"):
        notes.append(f"{label}: upscaler model '{upscaler}' not applied: the image is resized with Lanczos "
                     "and refined")
    steps = where.whole(f.get("Hires steps", 0), "field 'Hires steps'") or base.steps
    if "Denoising strength" in f:
        strength = _strength(where, f["Denoising strength"], "field 'Denoising strength'", notes)
    else:
        strength = 0.7
        notes.append(f"{label}: no Denoising strength field: 0.7 assumed (A1111's default)")
    model = base.model
    checkpoint = f.get("Hires checkpoint", "")
    if checkpoint and checkpoint != "Use same checkpoint":
        model = lookup.resolve(checkpoint, None, label, notes)
    scheduler = base.scheduler
    if f.get("Hires sampler") and f["Hires sampler"] != "Use same sampler":
        scheduler, notice = samplers.from_a1111(f["Hires sampler"], f.get("Hires schedule type"))
        _note(notes, notice, label)
    guidance = where.number(f["Hires CFG Scale"], "field 'Hires CFG Scale'") if "Hires CFG Scale" in f else base.guidance
    stage = Stage(model=model, steps=steps, guidance=guidance, scheduler=scheduler, handoff=handoff,
                  strength=strength, upscale=factor, name="hires fix")
    if f.get("Hires prompt"):
        stage.prompt = f["Hires prompt"]
    if f.get("Hires negative prompt"):
        stage.negative_prompt = f["Hires negative prompt"]
    return stage


def _strength(where: Where, value, what: str, notes: list[str]) -> float:
    strength = where.number(value, what)
    if not 0 < strength <= 1:
        notes.append(f"{what} {strength:g} cannot run in Handoff (strength must be in (0, 1]): set the stage's strength")
    return strength


def _fraction(where: Where, value, what: str) -> float:
    x = where.number(value, what)
    if not 0 <= x <= 1:
        raise where.error(what, f"is {x:g}, not a fraction between 0 and 1")
    return x


def _note(notes: list[str], notice: str, label: str) -> None:
    if notice:
        notes.append(f"{label}: {notice}")


def _hash_from_hashes(text: str | None) -> str | None:
    """The model's hash from A1111's `Hashes: {"model": "…"}` field."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    model = value.get("model") if isinstance(value, dict) else None
    return model if isinstance(model, str) else None


def strip_adapter_tags(text: str, what: str, unmapped: list[str], loras: list[Lora] | None = None) -> str:
    """The prompt without its `<lora:name:weight>` (and lyco, hypernet) tags: diffusers would
    read them as words. With `loras`, each LoRA whose file the model library knows (by
    name) goes there; the others, and hypernetworks, are listed as not applied."""
    def listed(m: re.Match) -> str:
        kind, name, weight = m.group(2).lower(), m.group(3), m.group(4)
        found = find_lora(name) if loras is not None and kind != "hypernet" else None
        w = _weight(weight)
        if found is not None and w is not None:
            loras.append(Lora(found, w))
            return ""
        why = ("no file of that name in the model library (add your loras/ folder, or point the stage at it)"
               if kind != "hypernet" and loras is not None else "Handoff does not apply it")
        unmapped.append(f"{'LoRA' if kind != 'hypernet' else 'hypernetwork'} '{name}'"
                        + (f" at weight {weight}" if weight else "")
                        + f" (a <{kind}:…> tag in the {what}): {why}; the tag was removed")
        return ""
    cleaned = _ADAPTER_TAG.sub(listed, text)
    if cleaned == text:
        return text
    return "\n".join(line.strip().lstrip(",").strip() for line in cleaned.split("\n")).strip()


def _weight(text: str | None) -> float | None:
    try:
        return 1.0 if not text else float(text)
    except ValueError:
        return None


def find_lora(name: str) -> str | None:
    """The file of a LoRA named as A1111 names it (the file's stem), from the model library."""
    from core.model_library import LORA_KIND, ModelLibrary

    wanted = name.strip().lower()
    for e in ModelLibrary.load().all():
        if e.kind == LORA_KIND and Path(e.ref).stem.lower() == wanted and Path(e.ref).is_file():
            return e.ref
    return None


def _lora_fields(f: dict[str, str], unmapped: list[str]) -> None:
    # Fooocus's A1111 scheme names its LoRAs in a field rather than in prompt tags.
    weights = f.get("Lora weights")
    if weights:
        for item in weights.split(", "):
            name, _, weight = item.partition(": ")
            unmapped.append(f"LoRA '{name.strip()}' at weight {weight.strip() or '?'}: its LoRA list is not mapped from this file yet")


def _unmapped_fields(f: dict[str, str]) -> list[str]:
    out: list[str] = []
    grouped: dict[str, list[str]] = {}
    for key, value in f.items():
        if key in _MAPPED:
            continue
        if key == "Clip skip" and value.strip() in ("1", ""):
            continue
        if key in ("RNG",) or key.startswith("Schedule ") and value.strip() in ("0", ""):
            continue
        ext = next((e for e in _EXTENSIONS if key.startswith(e)), None)
        if ext:
            grouped.setdefault(ext, []).append(key)
            continue
        shown = value if len(value) <= 80 else value[:77] + "…"
        out.append(f"{key}: {shown} (not applied)")
    for ext, keys in grouped.items():
        out.append(f"{ext} ({len(keys)} field{'s' if len(keys) > 1 else ''}: {', '.join(keys[:4])}"
                   f"{'…' if len(keys) > 4 else ''}): an extension Handoff does not run, not applied")
    return out


# ---------------------------------------------------------------- writing


def quote(value) -> str:
    """A field value as A1111 writes it: JSON-quoted when it holds a comma, colon or newline
    (and, unlike A1111, when it starts with a quote, which a reader would take for quoting)."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _num(x: float) -> str:
    """7 for 7.0, 0.15 for 0.15, and every digit of a value %g would round (12.345678)."""
    short = f"{x:g}"
    return short if float(short) == float(x) else repr(float(x))


def _model_field(ref: str) -> tuple[str, str | None]:
    """(name, AutoV2 hash or None): the hash only when it is already known, since a writer
    must not stall on hashing a multi-gigabyte file."""
    name = display_name(ref)
    if not ref.lower().endswith(".safetensors"):
        return name, None
    from core.models import Digests

    digest = Digests().cached(Path(ref).expanduser())
    return name, digest[:10] if digest else None


def write(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> str:
    """The `parameters` text describing the job (up to and including stage `upto`): with
    `ran` (the run's records by stage index), the handoffs and strengths that ran."""
    stages = job(project, upto, ran)
    if not stages:
        return f"{project.prompt}\nNegative prompt: {project.negative_prompt}"
    base = stages[0]
    lines = [base.prompt + _lora_tags(base.stage.loras), f"Negative prompt: {base.negative}"]
    name, _ = base.sampler()
    sampler, schedule = samplers.to_a1111(name, base.flow)
    model, model_hash = _model_field(base.stage.model)
    fields: list[tuple[str, object]] = [
        ("Steps", base.stage.steps), ("Sampler", sampler), ("Schedule type", schedule),
        ("CFG scale", _num(base.stage.guidance)), ("Seed", base.seed), ("Size", f"{base.size[0]}x{base.size[1]}"),
    ]
    if model_hash:
        fields.append(("Model hash", model_hash))
    fields.append(("Model", model))
    if base.handoff == "pixel":  # an init image refined: A1111's img2img
        fields.append(("Denoising strength", _num(base.strength)))
    refiner = next((s for s in stages[1:] if s.handoff == "ensemble"), None)
    hires = next((s for s in stages[1:] if s.handoff in ("pixel", "latent")), None)
    if refiner is not None:
        name_r, hash_r = _model_field(refiner.stage.model)
        fields += [("Refiner", f"{name_r} [{hash_r}]" if hash_r else name_r),
                   ("Refiner switch at", _num(refiner.stage.switch_at))]
    if hires is not None:
        fields += _hires_fields(base, hires)
    fields += _adapter_fields(base.stage)
    if len(stages) > 1:
        fields.append(("Handoff stages", "; ".join(_describe(s, n + 1) for n, s in enumerate(stages))))
    last = stages[-1]
    fields.append(("Handoff stage", f"{last.index + 1}/{len(project.stages)}"))
    fields.append(("Version", "Handoff"))
    lines.append(", ".join(f"{k}: {quote(v)}" for k, v in fields))
    return "\n".join(lines)


def _lora_tags(loras: list[Lora]) -> str:
    """A1111's `<lora:name:weight>` tags (the file's stem), as it writes them into the prompt."""
    return "".join(f" <lora:{display_name(lo.ref)}:{_num(lo.weight)}>" for lo in loras)


def _adapter_fields(stage: Stage) -> list[tuple[str, object]]:
    """`Lora hashes` (where a file's hash is already known) and sd-webui-controlnet's
    `ControlNet 0` entry, as those write them."""
    out: list[tuple[str, object]] = []
    hashes = [(n, h) for n, h in (_model_field(lo.ref) for lo in stage.loras) if h]
    if hashes:
        out.append(("Lora hashes", ", ".join(f"{n}: {h}" for n, h in hashes)))
    cn = stage.controlnet
    if cn is not None:
        module = "canny" if cn.preprocessor == "canny" else "none"
        out.append(("ControlNet 0", ", ".join([
            f"Module: {module}", f"Model: {display_name(cn.model)}", f"Weight: {_num(cn.scale)}",
            "Resize Mode: Crop and Resize", "Low Vram: False", "Processor Res: 512",
            f"Threshold A: {cn.low}", f"Threshold B: {cn.high}", f"Guidance Start: {_num(cn.start)}",
            f"Guidance End: {_num(cn.end)}", "Pixel Perfect: False", "Control Mode: Balanced"])))
    return out


def _hires_fields(base: JobStage, hires: JobStage) -> list[tuple[str, object]]:
    s = hires.stage
    out: list[tuple[str, object]] = [
        ("Denoising strength", _num(hires.strength)), ("Hires upscale", _num(s.upscale)), ("Hires steps", s.steps),
        ("Hires upscaler", "Latent" if hires.handoff == "latent" else
         Path(s.upscaler).stem if s.upscaler else "Lanczos"),  # a model upscaler by its name, as A1111 lists it
    ]
    if s.model != base.stage.model:
        out.append(("Hires checkpoint", display_name(s.model)))
    name, _ = hires.sampler()
    base_name, _ = base.sampler()
    if name != base_name or hires.flow != base.flow:
        sampler, schedule = samplers.to_a1111(name, hires.flow)
        out += [("Hires sampler", sampler), ("Hires schedule type", schedule)]
    if s.guidance != base.stage.guidance:
        out.append(("Hires CFG Scale", _num(s.guidance)))
    if hires.prompt != base.prompt:
        out.append(("Hires prompt", hires.prompt))
    if hires.negative != base.negative:
        out.append(("Hires negative prompt", hires.negative))
    return out


def _describe(s: JobStage, n: int) -> str:
    how = {"generate": "generate", "ensemble": f"ensemble from {_num(s.stage.switch_at)}",
           "pixel": f"pixel at {_num(s.strength)}", "latent": f"latent at {_num(s.strength)}"}[s.handoff]
    if s.stage.upscale != 1:
        how += f" x{_num(s.stage.upscale)}"
    if s.ran is not None and s.ran.asked not in (s.ran.ran, "auto"):
        how += f" (asked {s.ran.asked})"
    name, _ = s.sampler()
    parts = [f"{n} {how}", display_name(s.stage.model), f"{s.stage.steps} steps", f"CFG {_num(s.stage.guidance)}", name]
    if s.stage.seed is not None:
        parts.append(f"seed {s.seed}")
    return " | ".join(parts)
