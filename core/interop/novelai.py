"""NovelAI's image metadata: `Software: NovelAI`, the prompt in `Description`, the model's
build in `Source` ("Stable Diffusion 1D44365E", "NovelAI Diffusion V4.5 …") and the
settings as JSON in `Comment` (steps, scale, seed, sampler, uc: the negative prompt;
newer builds add the prompt, size and noise schedule). NovelAI's models run only on its
service, so the stage keeps the Source name and the note says to choose a local model."""
from __future__ import annotations

import json

from core.interop import samplers
from core.interop.reading import Imported, Where, size_of
from core.project import Project, Stage

TOOL = "NovelAI"
_MAPPED = {"prompt", "uc", "steps", "scale", "seed", "sampler", "width", "height", "noise_schedule", "n_samples",
           "request_type", "signed_hash"}
_SCHEDULES = {"karras": "Karras", "exponential": "Exponential", "native": None, "polyexponential": None}


def looks_like_novelai(chunks: dict[str, str]) -> bool:
    if chunks.get("Software", "").strip() == "NovelAI":
        return True
    comment = chunks.get("Comment", "")
    return comment.lstrip().startswith("{") and '"uc"' in comment and "Description" in chunks


def read_novelai(chunks: dict[str, str], size: tuple[int, int] | None, where: Where, lookup) -> Imported:
    cw = where.at("the `Comment` chunk")
    try:
        data = json.loads(chunks.get("Comment", "{}"))
    except ValueError as exc:
        raise cw.error("its JSON", f"cannot be parsed ({exc})") from exc
    d = cw.table(data, "its JSON")
    unmapped: list[str] = []
    notes: list[str] = []
    prompt = chunks.get("Description")
    if prompt is None:
        prompt = cw.text(d.get("prompt", ""), "prompt")
    negative = cw.text(d.get("uc", "") or "", "uc")
    if "width" in d or "height" in d:
        width, height = size_of(cw, d.get("width"), d.get("height"))
    elif size:
        width, height = size
    else:
        width, height = 832, 1216
    sampler_name = d.get("sampler")
    scheduler, notice = samplers.from_alias(sampler_name, TOOL)
    schedule = d.get("noise_schedule")
    if scheduler and isinstance(schedule, str) and _SCHEDULES.get(schedule.lower()):
        with_schedule = f"{scheduler} {_SCHEDULES[schedule.lower()]}"
        if samplers.choice(with_schedule):
            scheduler = with_schedule
    elif isinstance(schedule, str) and schedule.lower() not in _SCHEDULES:
        unmapped.append(f"noise_schedule {schedule!r} (not applied)")
    if notice:
        notes.append(f"stage 1: {notice}")
    source = chunks.get("Source", "").strip() or "a NovelAI model"
    notes.append(f"stage 1: the model is NovelAI's '{source}', which runs only on NovelAI: choose a local model "
                 "for the stage (an anime SDXL checkpoint comes closest for its V3 models)")
    stage = Stage(model=source, steps=cw.whole(d.get("steps", 28), "steps"),
                  guidance=cw.number(d.get("scale", 5.0), "scale"), scheduler=scheduler)
    seed = cw.seed(d.get("seed", 0), "seed", notes)
    if d.get("request_type") == "Img2ImgRequest":
        notes.append(f"made from an init image (strength {d.get('strength')}), which is not in the file: the first "
                     "stage generates")
    v4 = d.get("v4_prompt")
    if isinstance(v4, dict):
        captions = v4.get("caption", {}).get("char_captions") if isinstance(v4.get("caption"), dict) else None
        if captions:
            unmapped.append(f"v4_prompt: {len(captions)} character prompt(s) placed in the image: not applied")
    for key, value in d.items():
        if key in _MAPPED or key.startswith("v4_") or value in (None, "", [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        unmapped.append(f"{key}: {shown[:70]} (not applied)")
    project = Project(prompt=prompt, negative_prompt=negative, width=width, height=height, seed=seed, stages=[stage])
    return Imported(project, TOOL, "the `Comment`, `Description` and `Source` chunks", unmapped, notes)
