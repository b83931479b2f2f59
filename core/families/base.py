"""What a model family is: its pipeline classes, the chain positions it can take, how it
takes and hands over latents, and which adapters diffusers gives it.

Each family is one module in this package that builds a `Family` (or a subclass, where
its latents or schedule need code of their own). Everything outside the package asks
the family; nothing outside compares family keys.

Latents are handed between stages in one layout per latent space, (B, C, h, w): what
the pipeline of that family keeps in its denoising loop, unpacked (Flux.1, Chroma) or
un-normalized to the VAE's own latents (FLUX.2, ERNIE-Image). `from_pipeline` turns a
stage's final latents into that layout, `to_pipeline` turns it into what the family's
`latents=` argument takes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# Chain positions a model can take: "base" starts a chain (text to image), "refine"
# takes the previous stage's image (or the init image) at a strength.
POSITIONS = ("base", "refine")
# Adapters diffusers can attach to a family's pipelines.
LORA, CONTROLNET, IP_ADAPTER = "lora", "controlnet", "ip-adapter"

# How a latent handoff gives a family the previous stage's latents:
LATENTS_AS_IMAGE = "image"  # its img2img pipeline takes latents in place of an image (SD, SDXL)
LATENTS_VIA_PREPARE = "prepare"  # its img2img's prepare_latents noises (and packs) them (core.latents)
LATENTS_VIA_TAIL = "tail"  # noised to the strength's sigma, the tail of the schedule imposed (FLUX.2, ERNIE)


@dataclass(frozen=True)
class LoraView:
    """What a LoRA file's header says: tensor names, shapes and metadata (no weights)."""

    names: frozenset[str] | set[str]
    shapes: dict[str, list[int]]
    meta: dict[str, str]

    def has(self, part: str) -> bool:
        return any(part in k for k in self.names)

    def meta_text(self) -> str:
        keys = ("ss_base_model_version", "modelspec.architecture", "ss_sd_model_name", "base_model")
        return " ".join(str(self.meta.get(k, "")) for k in keys).lower()

    def in_features(self, part: str) -> int | None:
        """The input width of the first LoRA down-projection whose name contains `part`."""
        for k in sorted(self.names):
            if part in k and ("lora_down" in k or "lora_A" in k or "lora.down" in k) and len(self.shapes.get(k, [])) >= 2:
                return int(self.shapes[k][-1])
        return None


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    generate: str | None  # text-to-image pipeline class; None if the family cannot start a chain
    # image-to-image pipeline class; None if it cannot refine; the text-to-image class
    # itself for a family that refines through it (refines_via_generate)
    refine: str | None
    native: int  # native square size in pixels
    multiple: int  # width and height must be multiples of this
    flow: bool  # flow matching (a sigma schedule) rather than a DDPM-style one
    # Every pipeline class a model folder of this family may declare in model_index.json.
    pipeline_classes: tuple[str, ...] = ()
    ensemble_group: str | None = None  # families in one group can split one schedule between them
    # A flow family whose text-to-image pipeline uses `latents=` exactly as given: it can
    # finish a schedule another model of its group started (a flow ensemble's refiner).
    ensemble_refiner: bool = False
    latent_input: str | None = None  # one of LATENTS_*; None: latent handoffs into it go as pixels
    adapters: frozenset[str] = frozenset()
    # (ControlNet model class, the diffusers ControlNet pipeline that takes it), if any.
    controlnet_pipelines: tuple[tuple[str, str], ...] = ()
    # LoRAs: tokens of the file's metadata (kohya's ss_base_model_version, modelspec's
    # architecture) that name this family, a test of its tensor names and shapes, the
    # order families are tried in, and families whose LoRAs load on each other (Flux.1, Chroma).
    lora_meta: tuple[str, ...] = ()
    lora_rule: Callable[["LoraView"], bool] | None = field(default=None, compare=False)
    lora_rank: int = 100
    lora_group: str | None = None
    order: int = 100  # where it is listed
    # Single-file checkpoints: families are tried by rank (lowest first), each with its
    # test of the tensor-name prefixes a file has (None: no single-file layout known).
    checkpoint_rank: int = 100
    checkpoint_rule: Callable[[Callable[[str], bool]], bool] | None = field(default=None, compare=False)

    # ------------------------------------------------------------ positions

    @property
    def refines_via_generate(self) -> bool:
        """diffusers has no img2img pipeline for this family, so it refines at a strength
        through its text-to-image one (core.stage_call: the imposed tail of its schedule)."""
        return self.refine is not None and self.refine == self.generate

    def can_take(self, position: str) -> bool:
        if position == "base":
            return self.generate is not None
        if position == "refine":
            return self.refine is not None
        raise ValueError(f"position '{position}' is not one of {', '.join(POSITIONS)}")

    def positions(self) -> str:
        can = [p for p in POSITIONS if self.can_take(p)]
        return " and ".join(can) if can else "no position"

    def ensembles_with(self, previous: "Family") -> bool:
        """Whether this family can finish a schedule `previous` started."""
        return self.ensemble_group is not None and self.ensemble_group == previous.ensemble_group

    def auto_ensembles(self) -> bool:
        """Whether 'auto' picks an ensemble into this family (a model built only to finish
        another's schedule, the SDXL refiner), rather than a latent or pixel handoff."""
        return False

    def supports(self, adapter: str) -> bool:
        return adapter in self.adapters

    def shares_loras_with(self, other: "Family") -> bool:
        return self == other or (self.lora_group is not None and self.lora_group == other.lora_group)

    def claims_controlnet(self, config: dict) -> bool:
        """Whether a ControlNet's config.json is one made for this family."""
        return config.get("_class_name") in {m for m, _ in self.controlnet_pipelines}

    def controlnet_pipeline(self, controlnet_class: str) -> str:
        return dict(self.controlnet_pipelines)[controlnet_class]

    # ------------------------------------------------------------ recognising models

    def claims(self, index: dict) -> bool:
        """Whether a diffusers folder's model_index.json is a model of this family."""
        return index.get("_class_name") in self.pipeline_classes

    def pipeline_class_for(self, role: str, declared: str) -> str | None:
        """The class to build over a loaded pipeline of class `declared` for a role
        ("generate" or "refine"); None when the loaded pipeline itself serves it."""
        wanted = self.generate if role == "generate" else self.refine
        if wanted is None:
            raise ValueError(f"{self.title} has no pipeline for '{role}'")
        if declared == wanted:
            return None
        if role == "generate" and declared in self.pipeline_classes and declared != self.refine:
            # A text-to-image variant of the family (FLUX.2 [klein] declares Flux2KleinPipeline,
            # whose text encoder Flux2Pipeline could not take): it generates itself.
            return None
        return wanted

    # ------------------------------------------------------------ the call

    def guidance_arguments(self, pipe, scale: float, negative: str | None) -> dict:
        """The keyword arguments that give this family's pipelines a stage's guidance scale
        and its negative prompt (None when the stage has none or the pipeline takes none)."""
        kw: dict = {"guidance_scale": scale}
        if negative is not None:
            kw["negative_prompt"] = negative
        return kw

    # ------------------------------------------------------------ latents and schedules

    def from_pipeline(self, pipe, latents, height: int, width: int):
        """A stage's final latents, as its denoising loop left them, in the handoff layout."""
        return latents

    def to_pipeline(self, pipe, latents):
        """Handoff-layout latents as this family's `latents=` argument takes them."""
        return latents

    def vae_latents(self, pipe, latents):
        """Handoff-layout latents as the VAE's own (what its decoder takes): the pipelines of
        AutoencoderKL families scale (and shift) them, as their decode undoes."""
        config = pipe.vae.config
        shift = getattr(config, "shift_factor", None) or 0.0
        return latents / config.scaling_factor + shift

    def flow_schedule(self, pipe, steps: int, height: int, width: int) -> list[float]:
        """The shifted sigmas (terminal 0 included) the text-to-image pipeline computes for
        `steps` steps at this size: needed where it refines through that pipeline."""
        raise NotImplementedError(f"{self.title} refines through its img2img pipeline, not a computed schedule")

    def encode(self, pipe, image, height: int, width: int):
        """A PIL image as handoff-layout latents (for families that refine through their
        text-to-image pipeline, which has no image input of its own)."""
        raise NotImplementedError(f"{self.title} encodes images in its img2img pipeline")
