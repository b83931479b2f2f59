"""Recipes in image metadata. Every PNG Handoff writes carries the full project as JSON in
a `handoff` chunk (restored exactly), and what other tools read: A1111 `parameters`
describing the whole job (core.interop.a1111) and ComfyUI's `prompt` (API) and
`workflow` (UI) graphs (core.interop.comfyui), so dragging the PNG onto ComfyUI rebuilds
the chain. A PNG a job wrote also records what ran at each stage (core.ran: the handoff
and strength the plan chose, and why they differ from the ones asked for), in the chunk's
`ran` list; the A1111 text and the ComfyUI graphs follow that record, while the recipe
keeps the stage settings as the user asked them. Reading takes Handoff's chunk first,
else whatever another tool wrote (core.interop.detect)."""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import ProjectError, ReadError
from core.interop import a1111, comfyui, detect, image_text
from core.interop.reading import Imported
from core.project import Project
from core.ran import StageRan, ran_by_index

RECIPE_KEY = "handoff"
A1111_KEY = "parameters"
COMFY_PROMPT_KEY, COMFY_WORKFLOW_KEY = "prompt", "workflow"


def save_png(image, path: Path, project: Project, index: int, preview: bool = False,
             extra: dict | None = None, ran: list[StageRan] | None = None) -> Path:
    """Write the stage's image with its recipe, atomically. `preview`: the image is a cheap
    preview of latents the next stage took over, not a VAE decode (said in the recipe).
    `ran`: the job's records of what ran (StagePlan.ran), for the recipe and for the other
    tools' chunks, which describe the job up to this stage, the image it is."""
    from PIL.PngImagePlugin import PngInfo

    from core.atomic import write_with

    records = {r.index: r for r in ran or [] if r.index <= index}
    info = PngInfo()
    info.add_text(A1111_KEY, a1111.write(project, index, records))
    if project.enabled_stages():
        info.add_text(COMFY_PROMPT_KEY, json.dumps(comfyui.api_prompt(project, index, records)))
        info.add_text(COMFY_WORKFLOW_KEY, json.dumps(comfyui.ui_workflow(project, index, records)))
    recipe = {"recipe": project.to_dict(), "stage": index}
    if records:
        recipe["ran"] = [r.to_dict() for r in records.values()]
    if preview:
        recipe["preview"] = True
    recipe.update(extra or {})  # e.g. "drift" (core.drift), "sweep": the cell's values
    info.add_itxt(RECIPE_KEY, json.dumps(recipe))
    return write_with(Path(path), lambda f: image.save(f, format="PNG", pnginfo=info))


def read_recipe(path: Path, lookup=None) -> Imported | None:
    """The recipe an image (PNG, JPEG, WebP) carries: Handoff's own chunk, else another
    tool's metadata, its model names resolved by `lookup` (a core.interop.model_lookup.
    ModelLookup; a fresh one when None); None when it holds none. Raises ReadError for a
    damaged one."""
    path = Path(path)
    text = image_text.read_texts(path)
    if RECIPE_KEY in text.chunks:
        project, ran = _handoff_recipe(text.chunks[RECIPE_KEY], path.name)
        return Imported(project, "Handoff", "the `handoff` chunk", unmapped=_drop_missing_adapters(project),
                        notes=[r.describe() for r in ran.values() if r.why or r.asked not in (r.ran, "auto")],
                        ran=ran)
    return detect.from_chunks(text.chunks, path.name, text.size, lookup)


def _drop_missing_adapters(project: Project) -> list[str]:
    """Adapters whose local files are not on this machine, taken off their stages and named
    (a recipe from another machine restores what is here and says what is not)."""
    def gone(ref: str) -> bool:
        path = Path(ref).expanduser()
        return bool(ref) and path.is_absolute() and not path.exists()

    missing: list[str] = []
    for n, stage in enumerate(project.stages, start=1):
        for lora in [lo for lo in stage.loras if gone(lo.ref)]:
            stage.loras.remove(lora)
            missing.append(f"stage {n}: LoRA {lora.ref} (weight {lora.weight:g}) is not on this machine")
        cn = stage.controlnet
        if cn is not None and (gone(cn.model) or gone(cn.image)):
            stage.controlnet = None
            missing.append(f"stage {n}: ControlNet {cn.model} with control image {cn.image}: "
                           f"{'the model' if gone(cn.model) else 'the control image'} is not on this machine")
        for ip in [i for i in stage.ip_adapters if gone(i.model) or gone(i.image)]:
            stage.ip_adapters.remove(ip)
            missing.append(f"stage {n}: IP-Adapter {ip.model} with reference {ip.image} is not on this machine")
    return missing


def _handoff_recipe(text: str, name: str) -> tuple[Project, dict[int, StageRan]]:
    """The recipe, and what ran at each stage (empty for a PNG written before that record)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReadError(f"{name}: the `handoff` chunk is not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict):
        raise ReadError(f"{name}: the `handoff` chunk has no 'recipe' object")
    try:
        return Project.from_dict(data["recipe"]), ran_by_index(data.get("ran"))
    except ProjectError as exc:  # a ReadError naming the field: named here with the file and the chunk
        raise ReadError(f"{name}: the `handoff` chunk's recipe: {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReadError(f"{name}: the `handoff` chunk's recipe is malformed ({exc})") from exc
