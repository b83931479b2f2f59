"""InvokeAI's metadata, all three generations: `invokeai_metadata` (3.x and later: a flat
JSON of the generation's settings), `sd-metadata` (2.x: the model, and an `image` object)
and `Dream` (1.x/2.x: the prompt in quotes, then the command line's switches, such as
`"a cat" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms`). InvokeAI 2.x writes the negative
prompt inside the prompt, in square brackets."""
from __future__ import annotations

import json
import re
from typing import Any

from core.families.sdxl import REFINER_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE
from core.interop import samplers
from core.interop.reading import Imported, Where, library_loras, size_of
from core.project import Project, Stage

TOOL = "InvokeAI"
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def split_negative(prompt: str) -> tuple[str, str]:
    """('a boat', 'storm, text') from InvokeAI 2's 'a boat [storm] [text]'."""
    negatives = [m.strip(" ,") for m in _BRACKETS.findall(prompt) if m.strip(" ,")]
    positive = _BRACKETS.sub(" ", prompt)
    positive = re.sub(r"\s+", " ", positive).strip(" ,")
    return positive, ", ".join(negatives)


def _json(text: str, where: Where) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise where.error("the JSON", f"cannot be parsed ({exc})") from exc
    return where.table(data, "the JSON")


def _model_name(value: Any, where: Where, what: str) -> tuple[str | None, str | None]:
    """(name, hash) of an InvokeAI model field: {"model_name"} (3.x), {"name", "hash"} (4.x+)."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    value = where.table(value, what)
    name = value.get("model_name", value.get("name"))
    digest = value.get("hash")
    return (name if isinstance(name, str) else None), (digest if isinstance(digest, str) else None)


# ---------------------------------------------------------------- invokeai_metadata (3.x+)

_META_MAPPED = {
    "positive_prompt", "negative_prompt", "width", "height", "seed", "cfg_scale", "steps", "scheduler", "model",
    "refiner_model", "refiner_start", "refiner_steps", "refiner_cfg_scale", "refiner_scheduler", "generation_mode",
    "strength", "app_version", "rand_device", "guidance", "positive_style_prompt", "negative_style_prompt",
    "refiner_positive_aesthetic_score", "refiner_negative_aesthetic_score", "loras", "hrf_enabled", "hrf_method",
    "hrf_strength",
}
# InvokeAI's hires fix generates first at the area of its model's native size (the UI's
# `optimalDimension`: 512 for SD 1.x, 768 for SD 2.x, 1024 otherwise), then upscales to
# the metadata's width and height; "ESRGAN" upscales with this model.
_HRF_NATIVE = {"sd-1": 512, "sd-2": 768}
_HRF_ESRGAN = "RealESRGAN_x2plus"
_EMPTY_OK = {"loras", "controlnets", "ipAdapters", "t2iAdapters", "ref_images", "regions", "controlLayers"}


def read_metadata(text: str, where: Where, lookup) -> Imported:
    d = _json(text, where)
    unmapped: list[str] = []
    notes: list[str] = []
    prompt = where.text(d.get("positive_prompt", ""), "positive_prompt")
    negative = where.text(d.get("negative_prompt", "") or "", "negative_prompt")
    width, height = size_of(where, d.get("width", 1024), d.get("height", 1024))
    seed = where.seed(d.get("seed", 0), "seed", notes)
    guidance = where.number(d.get("cfg_scale", 7.5), "cfg_scale")
    if "guidance" in d:  # FLUX: the distilled guidance is the one Handoff takes
        guidance = where.number(d["guidance"], "guidance")
    scheduler, notice = samplers.from_alias(d.get("scheduler"), TOOL)
    if notice:
        notes.append(f"stage 1: {notice}")
    name, digest = _model_name(d.get("model"), where, "model")
    stage = Stage(model=lookup.resolve(name, digest, "stage 1", notes), steps=where.whole(d.get("steps", 30), "steps"),
                  guidance=guidance, scheduler=scheduler)
    stages = [stage]
    mode = d.get("generation_mode", "txt2img")
    if isinstance(mode, str) and not mode.endswith("txt2img"):
        strength = d.get("strength")
        notes.append(f"generation mode {mode!r}" + (f" at strength {strength}" if strength is not None else "")
                     + ": its init image is not in the file, so the first stage generates")
    stage.loras = library_loras(_loras(d.get("loras"), where), lookup, unmapped)
    hires = _hires_fix(d, where, lookup, stage, notes) if d.get("hrf_enabled") else []
    if hires:
        width, height = _hrf_first_size(d, width, height)
    if d.get("refiner_model"):
        r_name, r_hash = _model_name(d["refiner_model"], where, "refiner_model")
        start = where.number(d.get("refiner_start", 0.8), "refiner_start")
        r_scheduler, notice = samplers.from_alias(d.get("refiner_scheduler"), TOOL)
        if notice:
            notes.append(f"stage 2 (refiner): {notice}")
        refiner = Stage(model=lookup.resolve(r_name, r_hash, "stage 2 (refiner)", notes), steps=stage.steps,
                        guidance=where.number(d.get("refiner_cfg_scale", guidance), "refiner_cfg_scale"),
                        scheduler=r_scheduler or scheduler, handoff="ensemble", switch_at=start, name="refiner")
        r_steps = d.get("refiner_steps")
        if r_steps is not None and where.whole(r_steps, "refiner_steps") != stage.steps:
            notes.append(f"stage 2 (refiner): InvokeAI ran it for {r_steps} steps of its own; Handoff's ensemble "
                         f"finishes the base's {stage.steps}-step schedule from {start:g}")
        stages.append(refiner)
        unmapped += _aesthetic_scores(d, where)
    style = d.get("positive_style_prompt")
    if isinstance(style, str) and style.strip() and style != prompt:
        unmapped.append(f"positive_style_prompt {style[:60]!r}: Handoff encodes the one prompt with both encoders")
    if d.get("rand_device") not in (None, "cpu"):
        notes.append(f"rand_device {d['rand_device']}: Handoff draws noise on the CPU, so the same seed gives other noise")
    for key, value in d.items():
        if key in _META_MAPPED or value in (None, "", [], {}, False, 0):
            continue
        if key in _EMPTY_OK and isinstance(value, list):
            unmapped.append(f"{key}: {len(value)} item(s) ({_names(value)}): its adapters are not mapped from this file yet, "
                            "not applied")
            continue
        shown = json.dumps(value) if not isinstance(value, str) else value
        unmapped.append(f"{key}: {shown[:70]}{'…' if len(shown) > 70 else ''} (not applied)")
    stages += hires  # after a refiner: InvokeAI's hires fix is its last pass
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=stages)
    return Imported(project, TOOL, "the `invokeai_metadata` chunk", unmapped, notes)


def _loras(items: Any, where: Where) -> dict[str, Any]:
    """name → weight of `loras`: [{"lora": {"model_name"}, "weight"}] (3.x) or
    [{"model": {"name", ...}, "weight"}] (4.x+)."""
    out: dict[str, Any] = {}
    for n, item in enumerate(items or []):
        item = where.table(item, f"loras[{n + 1}]")
        name, _ = _model_name(item.get("lora", item.get("model")), where, f"loras[{n + 1}]")
        if name:
            out[name] = item.get("weight", 1.0)
    return out


def _hrf_first_size(d: dict, width: int, height: int) -> tuple[int, int]:
    """The size InvokeAI's hires fix generates at first: the model's native area at the
    final aspect, in multiples of 8 (its calculateHrfRes)."""
    base = d.get("model", {}).get("base", d.get("model", {}).get("base_model")) if isinstance(d.get("model"), dict) else None
    native = _HRF_NATIVE.get(base, 1024)
    if width * height <= native * native:
        return width, height
    aspect = width / height
    w = (native * native * aspect) ** 0.5
    return max(8, round(w / 8) * 8), max(8, round(w / aspect / 8) * 8)


def _hires_fix(d: dict, where: Where, lookup, base: Stage, notes: list[str]) -> list[Stage]:
    """The hires fix's second pass: a pixel stage from the first pass's size to the final one."""
    width, height = size_of(where, d.get("width", 1024), d.get("height", 1024))
    first = _hrf_first_size(d, width, height)
    if first == (width, height):
        notes.append(f"hires fix: {width}x{height} is no larger than the model's native size, so InvokeAI ran one pass")
        return []
    strength = where.number(d.get("hrf_strength", 0.45), "hrf_strength")
    stage = Stage(model=base.model, steps=base.steps, guidance=base.guidance, scheduler=base.scheduler, handoff="pixel",
                  strength=min(max(strength, 0.01), 1.0), upscale=round(width / first[0], 4), name="hires fix",
                  loras=list(base.loras))
    method = d.get("hrf_method", "ESRGAN")
    if method == "ESRGAN":
        stage.upscaler = lookup.find_adapter(_HRF_ESRGAN, "upscaler")
        if stage.upscaler is None:
            notes.append(f"hires fix: InvokeAI upscaled with {_HRF_ESRGAN}, which is not in your model library: "
                         "resized with Lanczos (add it to set the stage's upscaler)")
    elif method != "lanczos":
        notes.append(f"hires fix: InvokeAI resized with {method!r}; Handoff resizes with Lanczos")
    notes.append(f"hires fix: the first pass is {first[0]}x{first[1]} (InvokeAI's size for the model), upscaled "
                 f"×{stage.upscale:g} to {width}x{height}")
    return [stage]


def _aesthetic_scores(d: dict, where: Where) -> list[str]:
    """The refiner's aesthetic scores where they differ from the ones Handoff's refiner
    runs with (diffusers' defaults, which InvokeAI's defaults equal)."""
    out: list[str] = []
    for key, used in (("refiner_positive_aesthetic_score", REFINER_AESTHETIC_SCORE),
                      ("refiner_negative_aesthetic_score", REFINER_NEGATIVE_AESTHETIC_SCORE)):
        if d.get(key) is not None:
            value = where.number(d[key], key)
            if value != used:
                out.append(f"{key} {value:g}: Handoff's refiner uses {used:g}")
    return out


def _names(items: list) -> str:
    out = []
    for item in items[:3]:
        if isinstance(item, dict):
            for key in ("lora", "model", "control_model", "ip_adapter_model", "t2i_adapter_model"):
                sub = item.get(key)
                if isinstance(sub, dict):
                    name = sub.get("model_name", sub.get("name"))
                    if isinstance(name, str):
                        out.append(name)
                        break
    return ", ".join(out) or "unnamed"


# ---------------------------------------------------------------- sd-metadata (2.x)


def read_sd_metadata(text: str, where: Where, lookup) -> Imported:
    d = _json(text, where)
    image = d.get("image")
    if image is None and isinstance(d.get("images"), list) and d["images"]:
        image = d["images"][0]  # the 2.0 layout kept a list
    image = where.table(image, "'image'")
    iw = where.at("image")
    unmapped: list[str] = []
    notes: list[str] = []
    raw = image.get("prompt", "")
    if isinstance(raw, list):
        parts = []
        for i, p in enumerate(raw):
            p = iw.table(p, f"prompt {i + 1}")
            parts.append(iw.text(p.get("prompt", ""), f"prompt {i + 1}"))
            weight = p.get("weight", 1)
            if weight not in (1, 1.0) and len(raw) > 1:
                unmapped.append(f"prompt {i + 1} weight {weight}: weighted sub-prompts are joined, unweighted")
        raw = " ".join(x.strip() for x in parts)
    prompt, negative = split_negative(iw.text(raw, "prompt"))
    width, height = size_of(iw, image.get("width", 512), image.get("height", 512))
    scheduler, notice = samplers.from_alias(image.get("sampler"), TOOL)
    if notice:
        notes.append(f"stage 1: {notice}")
    model_name = d.get("model_weights") if isinstance(d.get("model_weights"), str) else None
    model_hash = d.get("model_hash") if isinstance(d.get("model_hash"), str) else None
    stage = Stage(model=lookup.resolve(model_name, model_hash, "stage 1", notes),
                  steps=iw.whole(image.get("steps", 50), "steps"), guidance=iw.number(image.get("cfg_scale", 7.5),
                                                                                      "cfg_scale"),
                  scheduler=scheduler)
    if image.get("type") not in (None, "txt2img"):
        notes.append(f"made by {image['type']} from an init image that is not in the file: the first stage generates")
    for key in ("postprocessing", "variations"):
        if image.get(key):
            unmapped.append(f"{key}: {json.dumps(image[key])[:70]} (not applied)")
    for key in ("hires_fix", "seamless"):
        if image.get(key):
            unmapped.append(f"{key}: on (not applied)")
    for key in ("threshold", "perlin"):
        if image.get(key) not in (None, 0, 0.0):
            unmapped.append(f"{key}: {image[key]} (not applied)")
    seed = iw.seed(image.get("seed", 0), "seed", notes)
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=[stage])
    return Imported(project, TOOL, "the `sd-metadata` chunk", unmapped, notes)


# ---------------------------------------------------------------- Dream (1.x/2.x)

_FLAGS = ("--hires_fix", "--seamless", "--embiggen", "--fit", "-ft", "-cf", "-s", "-S", "-W", "-H", "-C", "-A", "-f",
          "-I", "-G", "-U", "-n", "-g", "-v", "-V", "-M", "-F", "-t", "-x")
_VALUE = re.compile(r"^-?\d+(\.\d+)?$|^[^-]")


def parse_dream(text: str, where: Where) -> tuple[str, dict[str, list[str]]]:
    """The prompt and switches of a Dream line; a switch's value may follow it with or
    without a space (`-s50`, `-s 50`)."""
    text = text.strip()
    m = re.match(r'^"(.*)"(.*)$', text, re.DOTALL) or re.match(r"^!fix\s+\"(.*)\"(.*)$", text, re.DOTALL)
    if m is None:
        raise where.error("the Dream line", "does not start with a quoted prompt")
    prompt, rest = m.group(1), m.group(2)
    switches: dict[str, list[str]] = {}
    tokens = rest.split()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        # Longer switches come first in _FLAGS, so '-ft' is not read as '-f' with a value 't'.
        flag = next((f for f in _FLAGS if token == f or (len(f) == 2 and token.startswith(f) and len(token) > 2)), None)
        if flag is None:
            raise where.error("the Dream line", f"has {token!r}, not a switch InvokeAI writes")
        values = [token[len(flag):]] if token != flag else []
        i += 1
        while not values and i < len(tokens) and _VALUE.match(tokens[i]):
            values.append(tokens[i])
            i += 1
        while values and i < len(tokens) and flag in ("-U", "--embiggen") and _VALUE.match(tokens[i]):
            values.append(tokens[i])
            i += 1
        switches[flag] = values
    return prompt, switches


def read_dream(text: str, where: Where, lookup) -> Imported:
    prompt_text, sw = parse_dream(text, where)
    notes: list[str] = []
    unmapped: list[str] = []

    def one(flag: str, default):
        values = sw.get(flag)
        return values[0] if values else default

    prompt, negative = split_negative(prompt_text)
    width, height = size_of(where, one("-W", 512), one("-H", 512), "the Dream size")
    scheduler, notice = samplers.from_alias(one("-A", "k_lms"), TOOL)
    if notice:
        notes.append(f"stage 1: {notice}")
    stage = Stage(model="", steps=where.whole(one("-s", 50), "the Dream steps (-s)"),
                  guidance=where.number(one("-C", 7.5), "the Dream CFG scale (-C)"), scheduler=scheduler)
    notes.append("stage 1: the Dream line does not name its model: set the stage's model")
    missing = [what for flag, what in (("-s", "steps"), ("-W", "width"), ("-H", "height"), ("-C", "CFG scale"),
                                       ("-A", "sampler")) if not sw.get(flag)]
    if missing:
        notes.append(f"the Dream line leaves out {', '.join(missing)}: InvokeAI's defaults (50 steps, 512x512, "
                     "CFG 7.5, k_lms) assumed")
    seed_text = one("-S", None)
    seed = where.seed(seed_text, "the Dream seed (-S)", notes) if seed_text else 0
    for flag, values in sw.items():
        if flag in ("-W", "-H", "-A", "-s", "-C", "-S"):
            continue
        if flag == "-I":
            notes.append(f"made from the init image {values[0] if values else ''!r} (-I), which is not in the file: "
                         "the first stage generates")
            continue
        unmapped.append(f"{flag} {' '.join(values)}".strip() + " (not applied)")
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=[stage])
    return Imported(project, TOOL, "the `Dream` chunk", unmapped, notes)
