"""Recipes in PNG text chunks: an Automatic1111-style `parameters` chunk that other tools
read, and the full project as JSON in a `handoff` chunk that restores it exactly."""
from __future__ import annotations

import json
import re
from pathlib import Path

from core.project import Project, Stage, stage_sizes

RECIPE_KEY = "handoff"
A1111_KEY = "parameters"


def a1111_parameters(project: Project, index: int) -> str:
    """The recipe of stage `index` as A1111 writes it (an img2img stage gets its
    Denoising strength; an SDXL refiner stage names the refiner and switch point; an
    upscaling stage is A1111's hires fix: Size is what it took in, Hires upscale the factor)."""
    stage = project.stages[index]
    first = project.enabled_stages()[0][1] if project.enabled_stages() else stage
    lines = [stage.effective_prompt(project.prompt)]
    negative = stage.effective_negative(project.negative_prompt)
    if negative:
        lines.append(f"Negative prompt: {negative}")
    sizes = stage_sizes(project)
    earlier = [i for i, _ in project.enabled_stages() if i < index]
    width, height = sizes[earlier[-1]] if earlier else (project.width, project.height)
    if stage.upscale == 1:
        width, height = sizes.get(index, (width, height))
    fields = [
        ("Steps", stage.steps),
        ("Sampler", stage.scheduler or "Default"),
        ("CFG scale", _num(stage.guidance)),
        ("Seed", stage.effective_seed(project.seed)),
        ("Size", f"{width}x{height}"),
        ("Model", _model_name(stage.model)),
    ]
    if stage is not first or project.init_image:
        if stage.handoff == "ensemble":
            fields += [("Refiner", _model_name(stage.model)), ("Refiner switch at", _num(stage.switch_at))]
            fields[5] = ("Model", _model_name(first.model))
        else:
            fields.append(("Denoising strength", _num(stage.strength)))
            if stage.upscale != 1:
                fields += [("Hires upscale", _num(stage.upscale)), ("Hires steps", stage.steps),
                           ("Hires upscaler", "Lanczos")]
    fields.append(("Handoff stage", f"{index + 1}/{len(project.stages)}"))
    lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in fields))
    return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:g}"


def _model_name(ref: str) -> str:
    return Path(ref).stem if ("/" in ref and Path(ref).exists()) or ref.endswith(".safetensors") else ref


def _quote(v: str) -> str:
    return json.dumps(v) if ("," in v or ":" in v and not re.fullmatch(r"[\w./:-]+", v)) else v


def save_png(image, path: Path, project: Project, index: int, preview: bool = False,
             extra: dict | None = None) -> Path:
    """Write the stage's image with its recipe, atomically. `preview`: the image is a cheap
    preview of latents the next stage took over, not a VAE decode (said in the recipe)."""
    from PIL.PngImagePlugin import PngInfo

    from core.atomic import write_with

    info = PngInfo()
    info.add_text(A1111_KEY, a1111_parameters(project, index))
    recipe = {"recipe": project.to_dict(), "stage": index}
    if preview:
        recipe["preview"] = True
    recipe.update(extra or {})  # e.g. "drift" (core.drift), "sweep": the cell's values
    info.add_itxt(RECIPE_KEY, json.dumps(recipe))
    return write_with(Path(path), lambda f: image.save(f, format="PNG", pnginfo=info))


def read_text_chunks(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return {k: v for k, v in getattr(im, "text", {}).items() if isinstance(v, str)}


def read_png_recipe(path: Path) -> Project | None:
    """The project a PNG was made with: Handoff's own chunk, else A1111 parameters."""
    chunks = read_text_chunks(path)
    if RECIPE_KEY in chunks:
        data = json.loads(chunks[RECIPE_KEY])
        return Project.from_dict(data["recipe"])
    if A1111_KEY in chunks:
        return parse_a1111(chunks[A1111_KEY])
    return None


_FIELD = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_a1111(text: str) -> Project:
    """A project from A1111 `parameters` text (prompt, negative, then 'Key: value, ...')."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and re.search(r"\bSteps: \d+", lines[-1]):
        for key, value in _FIELD.findall(lines.pop()):
            settings[key.strip()] = json.loads(value) if value.startswith('"') else value.strip()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    width, height = 512, 512
    if "Size" in settings and re.fullmatch(r"\d+x\d+", settings["Size"]):
        width, height = (int(v) for v in settings["Size"].split("x"))
    seed = int(settings.get("Seed", 0) or 0) % (2**32)
    sampler = settings.get("Sampler")
    from core.schedulers import SCHEDULERS

    stage = Stage(
        model=settings.get("Model", ""),
        steps=int(settings.get("Steps", 20)),
        guidance=float(settings.get("CFG scale", 7.0)),
        scheduler=sampler if sampler in SCHEDULERS else None,
    )
    stages = [stage]
    if "Refiner" in settings:
        stages.append(Stage(model=settings["Refiner"], steps=stage.steps, guidance=stage.guidance,
                            handoff="ensemble", switch_at=float(settings.get("Refiner switch at", 0.8))))
    elif "Hires upscale" in settings:
        # A1111's hires fix: the txt2img pass, then img2img on its image resized by the factor.
        stages.append(Stage(model=stage.model, steps=int(settings.get("Hires steps", 0) or stage.steps),
                            guidance=stage.guidance, scheduler=stage.scheduler, handoff="pixel",
                            strength=float(settings.get("Denoising strength", 0.5)),
                            upscale=float(settings["Hires upscale"])))
    elif "Denoising strength" in settings:
        stage.strength = float(settings["Denoising strength"])
    return Project(prompt="\n".join(prompt_lines).strip(), negative_prompt="\n".join(negative_lines).strip(),
                   width=width, height=height, seed=seed, stages=stages)
