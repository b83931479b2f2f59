"""How one stage takes the previous stage's work, and the diffusers call that does it.

- generate: text to image (the first stage of a chain).
- pixel: decode to an image, then img2img at a strength (steps x strength steps run);
  a stage with an upscale factor resizes that image first (Lanczos, hires fix).
- latent: the same latent space on both sides (decided from VAE config and weights),
  so the latents are handed over and the VAE encode is skipped.
- ensemble: the previous stage stops part-way through one schedule and this one
  finishes the same noisy latents. SDXL base + refiner do it with denoising_end /
  denoising_start. Flow-matching families (Z-Image base -> Z-Image Turbo, Flux.1 -> Chroma) split one
  sigma schedule: the base runs its first k steps and is interrupted with the latents
  at sigma_k; the refiner's text-to-image pipeline takes those latents as they are
  (`latents=`, no noise added) and the remaining sigmas, with its scheduler's own
  shifting turned off, so both sides run the one schedule the base computed.
- flow img2img (pixel or latent into FLUX.2 or ERNIE-Image, which have no img2img pipeline):
  the same refiner mechanism at a strength. The full schedule the text-to-image pipeline
  would run is computed, the image (or the handed-over latents) is noised to the sigma
  where `strength` of it is left, as diffusers' img2img pipelines do, and the pipeline
  runs the rest of that schedule from those latents.
"""
from __future__ import annotations

import copy
import functools
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.families import Family
from core.models import ModelError, ResolvedModel
from core.project import Project, Stage, stage_sizes

# Families whose img2img pipeline takes latents in place of an image as is.
LATENT_AS_IMAGE = {"sd", "sdxl", "sdxl-refiner"}
# Flow-matching families whose img2img takes latents through its own prepare_latents:
# each of these treats an `image` with the VAE's latent channel count as already encoded
# (scaled and shifted), noises it at the refine schedule's first timestep with scale_noise
# and, for Flux and Chroma, packs the result. Handing the latents in there is the pipeline's
# own img2img path minus the VAE encode.
LATENT_VIA_PREPARE = {"zimage", "flux", "chroma", "sd3"}
# Families whose pipelines carry their latents packed, (B, (h/2)*(w/2), C*4); they are
# unpacked to (B, C, h, w) before they are handed to another stage.
PACKED_LATENTS = {"flux", "chroma"}
# Flow-matching families whose text-to-image pipeline uses `latents=` exactly as given (no
# noise added; packed first for Flux.1 and Chroma): the refiner side of a flow ensemble.
FLOW_ENSEMBLE = {"zimage", "flux", "chroma"}


class Cancelled(Exception):
    """Raised from the step callback: the pipeline stops at once, skipping its decode."""


@dataclass
class StagePlan:
    index: int  # in project.stages
    position: int  # among enabled stages
    stage: Stage
    resolved: ResolvedModel
    handoff: str  # "generate", "pixel", "latent", "ensemble"
    note: str = ""
    stop_at: float | None = None  # set when the next stage finishes this one's schedule
    steps: int = 0  # schedule length passed to the pipeline
    # Flow ensemble: the steps the base runs before it hands over (set on the base) or
    # ran before this stage took over (set on the refiner); None when not split.
    split: int | None = None
    # Flow ensemble: filled by the base's run with its full sigma schedule, read by the refiner.
    schedule: dict | None = None
    size: tuple[int, int] = (0, 0)  # (width, height) this stage works at (project.stage_sizes)

    @property
    def flow_ensemble(self) -> bool:
        return self.handoff == "ensemble" and self.family.flow

    @property
    def family(self) -> Family:
        return self.resolved.family

    @property
    def role(self) -> str:
        # A flow ensemble's refiner continues given latents with the text-to-image pipeline,
        # and FLUX.2 and ERNIE-Image refine at a strength through it (flow img2img).
        via_generate = self.flow_ensemble or self.family.refines_via_generate
        return "generate" if self.handoff == "generate" or via_generate else "refine"

    def expected_steps(self) -> int:
        """Steps this stage will run, for overall progress (the pipeline reports exact counts)."""
        if self.handoff == "generate":
            if self.split is not None:
                return self.split
            return max(1, round(self.steps * (self.stop_at or 1.0)))
        if self.flow_ensemble:
            return self.steps - (self.split if self.split is not None else self.steps)
        if self.handoff == "ensemble":
            return max(0, round(self.steps * (1 - self.stage.switch_at)))
        return max(1, int(self.steps * self.stage.strength))


def plan(project: Project, resolved: list[ResolvedModel], vae_fingerprint: Callable[[ResolvedModel], str | None]) -> list[StagePlan]:
    """Decide each enabled stage's handoff. Raises ModelError for chains that cannot run."""
    enabled = project.enabled_stages()
    sizes = stage_sizes(project, {i: r.family.multiple for (i, _), r in zip(enabled, resolved)})
    plans: list[StagePlan] = []
    for pos, ((index, stage), model) in enumerate(zip(enabled, resolved)):
        fam = model.family
        where = f"stage {index + 1} ({fam.title})"
        p = StagePlan(index, pos, stage, model, "generate", steps=stage.steps, size=sizes[index])
        if pos == 0:
            if project.init_image is not None:
                p.handoff = "pixel"
            elif fam.generate is None:
                raise ModelError(f"{where} cannot start a chain (it can take: {fam.positions()}); add a base stage or an init image")
            plans.append(p)
            continue
        prev = plans[-1]
        if fam.refine is None:
            raise ModelError(f"{where} cannot refine an image at a strength (it can take: {fam.positions()})")
        asked = stage.handoff
        same_schedule = fam.ensemble_group is not None and fam.ensemble_group == prev.family.ensemble_group
        if asked == "ensemble":
            if not same_schedule:
                raise ModelError(
                    f"{where}: an ensemble handoff splits one schedule between models built for it "
                    f"(SDXL base + refiner, Z-Image + Z-Image Turbo, Flux.1 + Chroma); {prev.family.title} → {fam.title} "
                    "can use latent or pixel"
                )
            p.handoff = "ensemble"
        elif asked == "auto" and same_schedule and fam.key == "sdxl-refiner" and stage.upscale == 1:
            p.handoff = "ensemble"
        elif stage.upscale != 1:
            # Latents are not resized here (A1111's latent upscale blurs): the image is.
            p.handoff = "pixel"
            if asked == "latent":
                p.note = f"upscaling ×{stage.upscale:g} resizes the image: handed over as pixels"
        elif asked in ("latent", "auto"):
            p.handoff, p.note = _latent_or_pixel(prev, p, vae_fingerprint, asked)
        else:
            p.handoff = "pixel"
        if p.handoff == "ensemble":
            # One schedule: the refiner runs the tail of the previous stage's steps.
            p.steps = prev.steps
            if fam.flow:
                _plan_flow_ensemble(prev, p, vae_fingerprint, where)
            elif stage.switch_at < 1:
                prev.stop_at = stage.switch_at
            if stage.steps != prev.steps:
                p.note = f"ensemble runs one {prev.steps}-step schedule; this stage's own step count is not used"
        plans.append(p)
    return plans


def split_steps(steps: int, switch_at: float) -> int:
    """Steps of a `steps`-long schedule the base runs before a flow ensemble's refiner takes
    over: switch_at is the fraction of the steps (not of the noise level), at least one."""
    return min(steps, max(1, round(steps * switch_at)))


def _plan_flow_ensemble(prev: StagePlan, p: StagePlan, vae_fingerprint, where: str) -> None:
    if p.family.key not in FLOW_ENSEMBLE:
        raise ModelError(f"{where}: an ensemble handoff into {p.family.title} is not supported yet; use latent or pixel")
    if prev.handoff != "generate":
        raise ModelError(
            f"{where}: a flow-matching ensemble splits the schedule of a stage that generates; "
            f"the stage before it refines ({prev.handoff}), so use latent or pixel here"
        )
    a, b = vae_fingerprint(prev.resolved), vae_fingerprint(p.resolved)
    if a is not None and b is not None and a != b:
        raise ModelError(f"{where}: an ensemble hands over noisy latents, but the two models' VAEs differ; use pixel")
    k = split_steps(prev.steps, p.stage.switch_at)
    p.split = k
    if k < prev.steps:
        prev.split = k
        prev.schedule = p.schedule = {}


def _latent_or_pixel(prev: StagePlan, p: StagePlan, vae_fingerprint, asked: str) -> tuple[str, str]:
    fam = p.family
    if fam.key not in LATENT_AS_IMAGE | LATENT_VIA_PREPARE and not fam.refines_via_generate:
        note = f"latent handoff into {fam.title} is not supported yet: handed over as pixels"
        return "pixel", note if asked == "latent" else ""
    a, b = vae_fingerprint(prev.resolved), vae_fingerprint(p.resolved)
    if a is not None and a == b:
        return "latent", ""
    why = "the VAEs differ in config or weights" if a and b else "a VAE could not be compared"
    return "pixel", (f"latent handoff impossible ({why}): handed over as pixels" if asked == "latent" else "")


@dataclass
class StageInput:
    image: Any = None  # PIL image from the previous stage or the init image
    latents: Any = None  # the previous stage's final latents


def fit_input(given: StageInput, p: StagePlan) -> StageInput:
    """The image a pixel stage takes, at the size it works at: resized (Lanczos) when the
    stage upscales, so the before/after views compare like with like."""
    if p.handoff != "pixel" or given.image is None or given.image.size == p.size:
        return given
    from PIL import Image

    return StageInput(image=given.image.resize(p.size, Image.LANCZOS), latents=None)


@dataclass
class StageOutput:
    image: Any
    latents: Any
    steps_run: int
    denoise_seconds: float
    decode_seconds: float


@dataclass
class Call:
    """The keyword arguments of one diffusers call, kept plain so a test can replay it."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    # Interrupt the pipeline after this many steps (a flow ensemble's base): the latents
    # stay at the next sigma of its schedule.
    stop_after: int | None = None
    # A flow ensemble's refiner or flow img2img: the sigmas the text-to-image pipeline runs
    # from the given `latents` (the scheduler appends the terminal 0), imposed on an
    # unshifted copy of its scheduler whatever schedule its __call__ asks for (_imposed_schedule).
    sigmas: list[float] | None = None


def accepts(pipe, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def build_call(pipe, p: StagePlan, project: Project, given: StageInput, generator) -> Call:
    stage = p.stage
    kw: dict[str, Any] = {
        "prompt": stage.effective_prompt(project.prompt),
        "num_inference_steps": p.steps,
        "guidance_scale": stage.guidance,
        "generator": generator,
    }
    negative = stage.effective_negative(project.negative_prompt)
    if negative.strip() and accepts(pipe, "negative_prompt"):
        # Only when set: an empty string is encoded, while None lets SDXL use zeros.
        kw["negative_prompt"] = negative
    if p.handoff == "generate" or p.flow_ensemble or accepts(pipe, "height") and p.handoff != "ensemble":
        kw["width"], kw["height"] = p.size
    if p.stop_at is not None:
        kw["denoising_end"] = p.stop_at
    stop_after = p.split if p.handoff == "generate" and p.split is not None and p.split < p.steps else None
    if p.handoff in ("pixel", "latent") and p.family.refines_via_generate:
        # Not `image=`: FLUX.2 takes that as an editing reference, with no strength.
        return _flow_img2img(pipe, p, project, given, generator, kw)
    if p.handoff == "pixel":
        kw["image"] = given.image
        kw["strength"] = stage.strength
    elif p.handoff == "latent":
        kw["strength"] = stage.strength
        kw["image"] = given.latents if p.family.key in LATENT_AS_IMAGE else given.image
    elif p.flow_ensemble:
        kw["latents"] = given.latents
        if p.family.key in PACKED_LATENTS and given.latents is not None and given.latents.ndim == 4:
            kw["latents"] = pack_latents(pipe, given.latents)
        if p.split is not None and p.split < p.steps:  # else no step is left (execute returns at once)
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


def execute(pipe, p: StagePlan, call: Call, given: StageInput, device: str,
            on_step: Callable[[int, int], None], cancelled: Callable[[], bool]) -> StageOutput:
    """Run one diffusers call, reporting steps, capturing the final latents on the way."""
    from core.devices import synchronize

    if p.handoff == "ensemble" and (p.stage.switch_at >= 1 or p.flow_ensemble and p.expected_steps() == 0):
        # Switching at the very end leaves the refiner no step: the base's image stands.
        return StageOutput(given.image, given.latents, 0, 0.0, 0.0)

    captured: dict[str, Any] = {}

    def callback(pipeline, i, t, kwargs):
        if cancelled():
            raise Cancelled()
        captured["latents"] = kwargs["latents"]
        captured["steps"] = i + 1
        if p.schedule is not None and i == 0 and p.handoff == "generate":
            # The full schedule as the base's scheduler shifted it, for the refiner to finish.
            p.schedule["sigmas"] = pipeline.scheduler.sigmas.tolist()
        synchronize(device)
        captured["t_last"] = time.perf_counter()
        # ERNIE-Image keeps no _num_timesteps: its scheduler's timesteps are the ones it runs.
        total = int(getattr(pipeline, "_num_timesteps", 0) or 0) or len(pipeline.scheduler.timesteps)
        on_step(i + 1, call.stop_after or total)
        if call.stop_after is not None and i + 1 >= call.stop_after:
            pipeline._interrupt = True  # the loop skips the rest; the noisy latents are decoded as a preview
        return kwargs

    kwargs = dict(call.kwargs, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    restore = _swap_scheduler(pipe, p.stage.scheduler, p.family)
    if call.sigmas is not None:  # a flow ensemble's refiner, or flow img2img
        restore = _chain(restore, _imposed_schedule(pipe, call.sigmas))
    unpatch = _latents_into_prepare(pipe, given.latents) if p.handoff == "latent" and p.family.key in LATENT_VIA_PREPARE else None
    start = time.perf_counter()
    try:
        result = pipe(**kwargs)
    finally:
        restore()
        if unpatch:
            unpatch()
    synchronize(device)
    end = time.perf_counter()
    t_last = captured.get("t_last", start)
    steps_run = int(getattr(pipe, "_num_timesteps", 0) or 0)
    if call.stop_after is not None or not steps_run:
        steps_run = captured.get("steps", 0)  # the steps the callback saw
    image = result.images[0]
    latents = captured.get("latents")
    height, width = call.kwargs.get("height") or image.height, call.kwargs.get("width") or image.width
    if latents is not None and p.family.key in PACKED_LATENTS and latents.ndim == 3:
        latents = unpack_latents(pipe, latents, height, width)
    elif latents is not None and p.family.refines_via_generate:
        latents = from_pipeline_latents(pipe, p.family.key, latents, height, width)
    return StageOutput(image, latents, steps_run, t_last - start, end - t_last)


def unpack_latents(pipe, latents, height: int, width: int):
    """Flux and Chroma latents, (B, (h/2)*(w/2), C*4) as their transformers take them, in the
    (B, C, h, w) layout every other family and the VAE use."""
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


def pack_latents(pipe, latents):
    """(B, C, h, w) latents in the (B, (h/2)*(w/2), C*4) sequence Flux and Chroma take."""
    b, c, h, w = latents.shape
    return pipe._pack_latents(latents, b, c, h, w)


def unshifted_config(config) -> dict[str, Any]:
    """Overrides that make a flow-matching scheduler take given sigmas exactly as they are:
    no static or resolution-dependent shift, no terminal stretch, no Karras-style respacing."""
    wanted = {"shift": 1.0, "use_dynamic_shifting": False, "shift_terminal": None, "use_karras_sigmas": False,
              "use_exponential_sigmas": False, "use_beta_sigmas": False}
    return {k: v for k, v in wanted.items() if k in config}


def _unshifted_scheduler(pipe):
    """Swap in a copy of the pipeline's scheduler that applies no shift of its own: the
    sigmas handed over were shifted once, by the base."""
    original = pipe.scheduler
    pipe.scheduler = type(original).from_config(original.config, **unshifted_config(original.config))

    def restore():
        pipe.scheduler = original

    return restore


def _chain(first, second):
    def both():
        second()
        first()

    return both


# ---------------------------------------------------------------- flow img2img (FLUX.2, ERNIE-Image)


def _flow_img2img(pipe, p: StagePlan, project: Project, given: StageInput, generator, kw: dict[str, Any]) -> Call:
    """Img2img at a strength through a text-to-image pipeline, as ComfyUI refines with
    FLUX.2 (VAE encode, then KSampler at denoise < 1): the full schedule for p.steps, cut
    where diffusers' img2img pipelines cut it (int(steps * strength) steps left, at least
    one); the clean latents noised to that cut's sigma with the stage's generator, the way
    FlowMatchEulerDiscreteScheduler.scale_noise does; the pipeline runs the tail."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    key, n, (width, height) = p.family.key, p.steps, p.size
    sigmas = flow_schedule(pipe, key, n, height, width)
    t_start = min(n - int(n * p.stage.strength), n - 1)
    with torch.no_grad():
        raw = given.latents if p.handoff == "latent" else encode_image(pipe, given.image, height, width)
        x0 = to_pipeline_latents(pipe, key, raw.to(pipe._execution_device, torch.float32))
    noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=torch.float32)
    sigma = torch.tensor(sigmas[t_start], dtype=torch.float32)  # float32 as scale_noise computes 1 - sigma
    kw["latents"] = (sigma * noise + (1.0 - sigma) * x0).to(pipe.transformer.dtype)
    tail = sigmas[t_start:-1]  # less the terminal 0, which the scheduler appends again
    kw["num_inference_steps"] = len(tail)  # for progress bars: the schedule itself is imposed
    return Call(kw, sigmas=tail)


def flow_schedule(pipe, family_key: str, steps: int, height: int, width: int) -> list[float]:
    """The shifted sigmas (terminal 0 included) `pipe` computes for `steps` steps at this
    size, as its __call__ computes them, on a copy of its scheduler (the real one stays as is)."""
    scheduler = copy.deepcopy(pipe.scheduler)
    if family_key == "flux2":  # pipeline_flux2.py: linspace(1, 1/n, n), shifted by an empirical mu
        import numpy as np
        from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

        side = pipe.vae_scale_factor * 2  # pixels per packed latent token
        mu = compute_empirical_mu(image_seq_len=(height // side) * (width // side), num_steps=steps)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    elif family_key == "ernie":  # pipeline_ernie_image.py: linspace(1, 0, n + 1) less its 0, no mu
        import torch

        scheduler.set_timesteps(sigmas=torch.linspace(1.0, 0.0, steps + 1)[:-1])
    else:
        raise ValueError(f"no flow img2img schedule for family '{family_key}'")
    return scheduler.sigmas.tolist()


def encode_image(pipe, image, height: int, width: int):
    """A PIL image to the VAE's (B, C, h, w) latents: the distribution's mode, as FLUX.2's
    own _encode_vae_image takes it (so no randomness is drawn)."""
    pixels = pipe.image_processor.preprocess(image, height=height, width=width)
    return pipe.vae.encode(pixels.to(pipe._execution_device, pipe.vae.dtype)).latent_dist.mode()


def _bn_stats(pipe, family_key: str, like):
    """The VAE batch-norm statistics a pipeline normalizes its latents with. ERNIE-Image's
    decode uses eps 1e-5 whatever the VAE config says; FLUX.2 uses the config's (1e-4 by
    default), so the two layouts differ even over one VAE."""
    import torch

    bn = pipe.vae.bn
    eps = 1e-5 if family_key == "ernie" else pipe.vae.config.batch_norm_eps
    mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
    std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps).to(like.device, like.dtype)
    return mean, std


def to_pipeline_latents(pipe, family_key: str, latents):
    """VAE latents (B, C, h, w) in the layout FLUX.2's and ERNIE-Image's `latents=` take:
    2x2 patches (B, 4C, h/2, w/2), normalized by the VAE's batch-norm statistics."""
    patches = pipe._patchify_latents(latents)
    mean, std = _bn_stats(pipe, family_key, patches)
    return (patches - mean) / std


def from_pipeline_latents(pipe, family_key: str, latents, height: int, width: int):
    """A FLUX.2 or ERNIE-Image stage's final latents back to VAE latents (B, C, h, w), the
    layout handed to the next stage, which may be the other of the two: the inverse of
    to_pipeline_latents, after unpacking FLUX.2's (B, tokens, 4C) sequence."""
    if latents.ndim == 3:  # FLUX.2's _pack_latents is a reshape to (B, h*w, C): undo it
        side = pipe.vae_scale_factor * 2
        b, _, c = latents.shape
        latents = latents.permute(0, 2, 1).reshape(b, c, height // side, width // side)
    mean, std = _bn_stats(pipe, family_key, latents)
    return pipe._unpatchify_latents(latents * std + mean)


def _imposed_schedule(pipe, sigmas: list[float]):
    """Make the pipeline run exactly `sigmas`, whatever schedule its __call__ computes:
    ERNIE-Image's takes no `sigmas` argument and FLUX.2's would shift them again by its mu.
    An unshifted copy of the scheduler stands in for the call (undone by the returned
    function), its set_timesteps answering every request with these sigmas."""
    restore = _unshifted_scheduler(pipe)
    scheduler = pipe.scheduler
    original = scheduler.set_timesteps

    @functools.wraps(original)  # keeps the signature: diffusers checks that it takes `sigmas`
    def imposed(*args, device=None, **kwargs):
        return original(sigmas=sigmas, device=device)

    scheduler.set_timesteps = imposed  # on the stand-in only; it goes with it
    return restore


def _latents_into_prepare(pipe, latents):
    """Flow-matching img2img pipelines (Z-Image, Flux.1, Chroma, SD3) noise the encoded
    image inside prepare_latents, at the refine schedule's first timestep, and Flux and
    Chroma pack it there. Handing them the (B, C, h, w) latents instead of the image gives
    exactly that noising and packing with no VAE encode: each takes an input with the VAE's
    latent channel count as already encoded. (Passing latents as `image` fails in Z-Image's
    preprocessing, and `latents=` skips the noising.) The image the call is given is
    still preprocessed, then set aside."""
    original = pipe.prepare_latents

    def prepare(image, *args, **kwargs):
        return original(latents.to(image.device), *args, **kwargs)

    pipe.prepare_latents = prepare

    def undo():
        del pipe.prepare_latents  # the instance attribute; the class method shows through again

    return undo


SCHEDULERS = {
    # A1111-style names, the way users know them, mapped to diffusers classes and options.
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Flow Euler": ("FlowMatchEulerDiscreteScheduler", {}),
}
FLOW_SCHEDULERS = {"Flow Euler"}


def check_scheduler(name: str | None, family: Family) -> str | None:
    """A message if the named scheduler cannot drive this family, else None."""
    if not name:
        return None
    if name not in SCHEDULERS:
        return f"unknown scheduler '{name}' (choose from: {', '.join(SCHEDULERS)})"
    if family.flow != (name in FLOW_SCHEDULERS):
        kind = "flow-matching" if family.flow else "noise-prediction"
        fits = [n for n in SCHEDULERS if (n in FLOW_SCHEDULERS) == family.flow]
        return f"scheduler '{name}' cannot drive {family.title} ({kind}); use one of: {', '.join(fits)}"
    return None


def _swap_scheduler(pipe, name: str | None, family: Family):
    if not name:
        return lambda: None
    import diffusers

    problem = check_scheduler(name, family)
    if problem:
        raise ModelError(problem)
    cls_name, options = SCHEDULERS[name]
    original = pipe.scheduler
    pipe.scheduler = getattr(diffusers, cls_name).from_config(original.config, **options)

    def restore():
        pipe.scheduler = original

    return restore
