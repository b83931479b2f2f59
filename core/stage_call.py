"""Building one stage's diffusers call from its plan and what the previous stage handed over.

The call is plain keyword arguments (a test can replay it) plus what the run must impose
on the pipeline: a stop after k steps (a flow ensemble's base) or a sigma schedule (a flow
ensemble's refiner, or a refine through a text-to-image pipeline: FLUX.2, ERNIE-Image)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from core.errors import ModelError
from core.families import LATENTS_AS_IMAGE
from core.planning import StagePlan
from core.project import Project
from core.strength import effective_steps


@dataclass
class StageInput:
    image: Any = None  # PIL image from the previous stage or the init image
    latents: Any = None  # the previous stage's final latents, in the family's handoff layout
    control: Any = None  # the ControlNet's map (core.adapters.control_map), at the stage's size
    references: list | None = None  # IP-Adapter reference images


def fit_input(given: StageInput, p: StagePlan, resize=None) -> StageInput:
    """The image a pixel stage takes, at the size it works at: resized (Lanczos, or
    `resize(image, size)`: the stage's upscaler model) when the stage upscales, so the
    before/after views compare like with like."""
    if p.handoff != "pixel" or given.image is None or given.image.size == p.size:
        return given
    from PIL import Image

    image = resize(given.image, p.size) if resize is not None else given.image.resize(p.size, Image.LANCZOS)
    return StageInput(image=image, latents=None, control=given.control, references=given.references)


@dataclass
class Call:
    """The keyword arguments of one diffusers call, kept plain so a test can replay it."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    # Interrupt the pipeline after this many steps (a flow ensemble's base): the latents
    # stay at the next sigma of its schedule.
    stop_after: int | None = None
    # The sigmas the text-to-image pipeline runs from the given `latents` (the scheduler
    # appends the terminal 0), imposed on an unshifted copy of its scheduler whatever
    # schedule its __call__ asks for (core.schedulers.imposed_schedule).
    sigmas: list[float] | None = None
    # A latent handoff into a flow img2img pipeline: these latents replace the encoded
    # image in its prepare_latents (core.latents.latents_into_prepare).
    prepared_latents: Any = None


def accepts(pipe, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def build_call(pipe, p: StagePlan, project: Project, given: StageInput, generator) -> Call:
    stage = p.stage
    kw: dict[str, Any] = {
        "prompt": stage.effective_prompt(project.prompt),
        "num_inference_steps": p.steps,
        "generator": generator,
    }
    negative = stage.effective_negative(project.negative_prompt)
    # Only when set: an empty string is encoded, while None lets SDXL use zeros.
    negative = negative if negative.strip() and accepts(pipe, "negative_prompt") else None
    kw.update(p.family.guidance_arguments(pipe, stage.guidance, negative))
    if p.handoff == "generate" or p.flow_ensemble or accepts(pipe, "height") and p.handoff != "ensemble":
        kw["width"], kw["height"] = p.size
    if p.stop_at is not None:
        kw["denoising_end"] = p.stop_at
    _adapter_arguments(pipe, stage, given, kw)
    if p.hands_over == "latents":
        # The next stage takes the latents, not the image: no decode here (the engine
        # previews the latents cheaply instead).
        kw["output_type"] = "latent"
    stop_after = p.split if p.handoff == "generate" and p.split is not None and p.split < p.steps else None
    if p.handoff in ("pixel", "latent") and p.family.refines_via_generate:
        # Not `image=`: FLUX.2 takes that as an editing reference, with no strength.
        return _refine_through_generate(pipe, p, given, generator, kw)
    if p.handoff == "pixel":
        kw["image"] = given.image
        kw["strength"] = p.strength
    elif p.handoff == "latent":
        kw["strength"] = p.strength
        if p.family.latent_input == LATENTS_AS_IMAGE:
            kw["image"] = given.latents
        else:
            kw["image"] = given.image
            return Call(kw, prepared_latents=given.latents)
    elif p.flow_ensemble:
        kw["latents"] = p.family.to_pipeline(pipe, given.latents)
        if p.split is not None and p.split < p.steps:  # else no step is left (the run returns at once)
            sigmas = (p.schedule or {}).get("sigmas")
            if sigmas is None:
                raise ModelError(f"{stage.label(p.index)}: the previous stage did not hand over its schedule")
            # The base's shifted schedule from sigma_k on, less the terminal 0 the scheduler
            # appends again, imposed on the refiner's scheduler with its own shift off.
            tail = sigmas[p.split:-1]
            kw["num_inference_steps"] = len(tail)
            return Call(kw, sigmas=tail)
    elif p.handoff == "ensemble":
        kw["image"] = given.latents
        kw["denoising_start"] = stage.switch_at
    return Call(kw, stop_after=stop_after)


def _adapter_arguments(pipe, stage, given: StageInput, kw: dict[str, Any]) -> None:
    """A ControlNet's map and settings, and IP-Adapter reference images, under the names
    this pipeline takes them by (SD and SDXL say `image`, SD3, Flux.1 and Z-Image
    `control_image`)."""
    cn = stage.controlnet
    if cn is not None and given.control is not None:
        kw["control_image" if accepts(pipe, "control_image") else "image"] = given.control
        kw["controlnet_conditioning_scale"] = cn.scale
        kw["control_guidance_start"], kw["control_guidance_end"] = cn.start, cn.end
    if given.references:
        kw["ip_adapter_image"] = list(given.references)


def _refine_through_generate(pipe, p: StagePlan, given: StageInput, generator, kw: dict[str, Any]) -> Call:
    """Img2img at a strength through a text-to-image pipeline, as ComfyUI refines with
    FLUX.2 (VAE encode, then KSampler at denoise < 1): the full schedule for p.steps, cut
    where diffusers' img2img pipelines cut it (int(steps * strength) steps left, at least
    one); the clean latents noised to that cut's sigma with the stage's generator; the
    pipeline runs the tail."""
    import torch

    from core.latents import noised

    fam, n, (width, height) = p.family, p.steps, p.size
    sigmas = fam.flow_schedule(pipe, n, height, width)
    t_start = min(n - effective_steps(n, p.strength), n - 1)
    with torch.no_grad():
        raw = given.latents if p.handoff == "latent" else fam.encode(pipe, given.image, height, width)
        x0 = fam.to_pipeline(pipe, raw.to(pipe._execution_device, torch.float32))
    kw["latents"] = noised(x0, sigmas[t_start], generator).to(pipe.transformer.dtype)
    tail = sigmas[t_start:-1]  # less the terminal 0, which the scheduler appends again
    kw["num_inference_steps"] = len(tail)  # for progress bars: the schedule itself is imposed
    return Call(kw, sigmas=tail)
