"""Fooocus's metadata. Fooocus writes its `parameters` in one of two schemes, named by a
`fooocus_scheme` chunk (EXIF MakerNote in a JPEG or WebP): `fooocus`, a JSON object of its
settings (2.2+; 2.1's log kept the same in "Title Case" keys), or `a1111`, A1111's text
with Fooocus's own fields added. The JSON keeps the user's prompt and, in `full_prompt`,
what was encoded after the styles and the Fooocus V2 expansion: that is the prompt
restored (Fooocus's own A1111 scheme writes it so too), and the styles are reported."""
from __future__ import annotations

import ast
import json
import re
from typing import Any

from core.interop import a1111, samplers
from core.interop.reading import Imported, Where, library_loras, size_of
from core.project import Project, Stage

TOOL = "Fooocus"
_MAPPED = {
    "prompt", "negative_prompt", "full_prompt", "full_negative_prompt", "steps", "guidance_scale", "sampler",
    "scheduler", "resolution", "seed", "base_model", "base_model_hash", "refiner_model", "refiner_model_hash",
    "refiner_switch", "loras", "version", "metadata_scheme", "styles", "prompt_expansion", "fooocus_v2_expansion",
    "vae", "created_by", "performance",
}
_RESOLUTION = re.compile(r"^\(\s*'?(\d+)'?\s*,\s*'?(\d+)'?\s*\)$")


def looks_like_fooocus(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    keys = {_key(k) for k in data}
    return bool(keys & {"full_prompt", "base_model", "guidance_scale", "performance", "fooocus_v2_expansion"})


def _key(k: Any) -> str:
    return re.sub(r"\s+", "_", str(k).strip().lower())


def read_fooocus(text: str, scheme: str | None, where: Where, lookup) -> Imported:
    """Either scheme; a text that is not JSON is read as the `a1111` scheme."""
    stripped = text.strip()
    if scheme == "a1111" or not stripped.startswith("{"):
        imported = a1111.read_parameters(text, where, lookup, tool=TOOL)
        imported.source = "the `parameters` text (Fooocus's A1111 scheme)"
        return imported
    try:
        data = json.loads(stripped)
    except ValueError as exc:
        raise where.error("the JSON", f"cannot be parsed ({exc})") from exc
    return read_json(where.table(data, "the JSON"), where, lookup)


def read_json(raw: dict, where: Where, lookup) -> Imported:
    d = {_key(k): v for k, v in raw.items()}
    unmapped: list[str] = []
    notes: list[str] = []
    prompt = _joined(d.get("full_prompt"), where, "full_prompt")
    if prompt is None:
        prompt = where.text(d.get("prompt", ""), "prompt")
        expansion = d.get("fooocus_v2_expansion") or d.get("prompt_expansion")
        if isinstance(expansion, str) and expansion.strip():
            prompt = expansion  # the expanded prompt Fooocus encoded
    negative = _joined(d.get("full_negative_prompt"), where, "full_negative_prompt")
    if negative is None:
        negative = where.text(d.get("negative_prompt", "") or "", "negative_prompt")
    styles = d.get("styles")
    if styles:
        shown = styles if isinstance(styles, str) else json.dumps(styles)
        notes.append(f"styles {shown} (and any Fooocus V2 expansion) are in the prompt text as Fooocus encoded it")
    width, height = _resolution(d.get("resolution", "(1024, 1024)"), where)
    steps = where.whole(d.get("steps", 30), "steps")
    guidance = where.number(d.get("guidance_scale", 4.0), "guidance_scale")
    scheduler, notice = samplers.from_comfy(d.get("sampler"), d.get("scheduler"), TOOL)
    if notice:
        notes.append(f"stage 1: {notice}")
    base = Stage(model=lookup.resolve(_model(d.get("base_model")), _text_or_none(d.get("base_model_hash")), "stage 1",
                                      notes), steps=steps, guidance=guidance, scheduler=scheduler)
    stages = [base]
    refiner = _model(d.get("refiner_model"))
    if refiner and refiner != "None":
        switch = where.number(d.get("refiner_switch", 0.8), "refiner_switch")
        stages.append(Stage(model=lookup.resolve(refiner, _text_or_none(d.get("refiner_model_hash")),
                                                 "stage 2 (refiner)", notes),
                            steps=steps, guidance=guidance, scheduler=scheduler, handoff="ensemble",
                            switch_at=min(max(switch, 0.0), 1.0), name="refiner"))
        notes.append("stage 2 (refiner): Fooocus swaps to its refiner mid-schedule; Handoff runs it as an ensemble "
                     f"from {switch:g}")
    seed = where.seed(d.get("seed", 0), "seed", notes)
    loras: dict[str, str] = {}  # name -> weight, from `loras` and the per-slot fields alike
    for item in d.get("loras") or []:
        if isinstance(item, list) and item and isinstance(item[0], str):
            loras.setdefault(item[0], str(item[1]) if len(item) > 1 else "?")
    for key, value in d.items():
        if key.startswith("lora_combined_") or re.fullmatch(r"lora_\d+", key):
            if isinstance(value, str):
                parts = value.split(" : ")
                name = parts[-2] if len(parts) >= 2 else parts[0]
                if name and name != "None" and parts[0] != "False":
                    loras.setdefault(name.rsplit(".", 1)[0] if name.endswith(".safetensors") else name, parts[-1])
            continue
        if key in _MAPPED or value in (None, "", "None", [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        unmapped.append(f"{key}: {shown[:70]} (not applied)")
    stages[0].loras = library_loras(loras, lookup, unmapped)
    vae = d.get("vae")
    if isinstance(vae, str) and vae not in ("", "None", "Default (model)"):
        unmapped.append(f"vae: {vae} (not applied: each stage decodes with its model's own VAE)")
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=stages)
    return Imported(project, TOOL, "the `parameters` JSON (Fooocus's own scheme)", unmapped, notes)


def _joined(value: Any, where: Where, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(v for v in value if v)
    raise where.error(what, "is not a list of prompts")


def _resolution(value: Any, where: Where) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return size_of(where, value[0], value[1], "resolution")
    if isinstance(value, str):
        m = _RESOLUTION.match(value.strip())
        if m:
            return size_of(where, m.group(1), m.group(2), "resolution")
        try:
            pair = ast.literal_eval(value)  # a tuple literal, as Fooocus writes it; literals only
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pair = None
        if isinstance(pair, tuple) and len(pair) == 2:
            return size_of(where, pair[0], pair[1], "resolution")
    raise where.error("resolution", f"is {value!r}, not '(width, height)'")


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
