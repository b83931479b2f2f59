"""Model families: what each can do in a chain, told apart by the pipeline class a
model declares (model_index.json) or by the keys of a single-file checkpoint."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    generate: str | None  # text-to-image pipeline class, None if the family cannot start a chain
    # image-to-image pipeline class, None if it cannot refine at a strength; the text-to-image
    # class itself for a family that refines through it (see refines_via_generate)
    refine: str | None
    native: int  # native square size in pixels
    multiple: int  # width and height must be multiples of this
    flow: bool  # flow matching (a sigma schedule) rather than a DDPM-style one
    ensemble_group: str | None = None  # families that can split one schedule between them

    @property
    def refines_via_generate(self) -> bool:
        """diffusers has no img2img pipeline for this flow-matching family, so it refines at a
        strength through its text-to-image one: the image is encoded and noised to the
        schedule's sigma at that strength by core.handoff, and the pipeline runs the rest."""
        return self.refine is not None and self.refine == self.generate

    def positions(self) -> str:
        can = [w for w, ok in (("base", self.generate), ("refine", self.refine)) if ok]
        return " and ".join(can) if can else "no position"


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in [
        Family("sd", "Stable Diffusion 1.x/2.x", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", 512, 8, False),
        Family("sdxl", "SDXL", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", 1024, 8, False, "sdxl"),
        Family("sdxl-refiner", "SDXL refiner", None, "StableDiffusionXLImg2ImgPipeline", 1024, 8, False, "sdxl"),
        Family("sd3", "Stable Diffusion 3.x", "StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", 1024, 16, True),
        # Flux.1 and Chroma (built from Flux.1 schnell) share one VAE, one latent packing and
        # one flow: a Flux.1 base can stop part-way through its sigmas and Chroma finish them.
        Family("flux", "Flux.1", "FluxPipeline", "FluxImg2ImgPipeline", 1024, 16, True, "flux"),
        # FLUX.2 and ERNIE-Image have no img2img pipeline in diffusers 0.42.1: they refine
        # through their text-to-image pipelines. Both use the FLUX.2 VAE (AutoencoderKLFlux2).
        Family("flux2", "FLUX.2", "Flux2Pipeline", "Flux2Pipeline", 1024, 16, True),
        Family("chroma", "Chroma", "ChromaPipeline", "ChromaImg2ImgPipeline", 1024, 16, True, "flux"),
        # Z-Image base and Z-Image Turbo share one latent space and one flow: a base can stop
        # part-way through its sigma schedule and Turbo finish it (core.handoff, flow ensemble).
        Family("zimage", "Z-Image", "ZImagePipeline", "ZImageImg2ImgPipeline", 1024, 16, True, "zimage"),
        Family("ernie", "ERNIE-Image", "ErnieImagePipeline", "ErnieImagePipeline", 1024, 16, True),
        Family("qwen", "Qwen-Image", "QwenImagePipeline", "QwenImageImg2ImgPipeline", 1328, 16, True),
    ]
}

# The pipeline class a diffusers folder declares, mapped to its family.
_CLASS_TO_FAMILY = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux",
    "FluxImg2ImgPipeline": "flux",
    "Flux2Pipeline": "flux2",
    "Flux2KleinPipeline": "flux2",
    "ChromaPipeline": "chroma",
    "ChromaImg2ImgPipeline": "chroma",
    "ZImagePipeline": "zimage",
    "ZImageImg2ImgPipeline": "zimage",
    "ErnieImagePipeline": "ernie",
    "QwenImagePipeline": "qwen",
    "QwenImageImg2ImgPipeline": "qwen",
}


def family_of_class(pipeline_class: str) -> str | None:
    """The family key a diffusers pipeline class belongs to, None when Handoff does not know it."""
    return _CLASS_TO_FAMILY.get(pipeline_class)


class UnknownFamily(ValueError):
    pass


def family_from_model_index(index: dict) -> Family:
    """Tell the family from a diffusers model_index.json."""
    cls = index.get("_class_name", "")
    if cls in ("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLPipeline"):
        # The refiner ships without the first text encoder and is conditioned on aesthetic score.
        first_encoder = index.get("text_encoder", [None, None])
        if cls == "StableDiffusionXLImg2ImgPipeline" and (not first_encoder or first_encoder[0] is None):
            return FAMILIES["sdxl-refiner"]
        if index.get("requires_aesthetics_score"):
            return FAMILIES["sdxl-refiner"]
        return FAMILIES["sdxl"]
    key = _CLASS_TO_FAMILY.get(cls)
    if key is None:
        known = ", ".join(sorted({f.title for f in FAMILIES.values()}))
        raise UnknownFamily(f"pipeline '{cls or 'unnamed'}' is not a family Handoff knows ({known})")
    return FAMILIES[key]


def family_from_checkpoint_keys(keys: set[str]) -> Family:
    """Tell the family of a single-file checkpoint (the kind ComfyUI and A1111 keep)."""

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("conditioner.embedders.1.") or has("conditioner.embedders.0.transformer."):
        if has("conditioner.embedders.1.") and has("conditioner.embedders.0."):
            return FAMILIES["sdxl"]
    if has("conditioner.embedders.0.model.") and not has("conditioner.embedders.1."):
        return FAMILIES["sdxl-refiner"]
    if has("model.diffusion_model.joint_blocks.") or has("joint_blocks."):
        return FAMILIES["sd3"]
    if has("model.diffusion_model.double_blocks.") or has("double_blocks."):
        if has("distilled_guidance_layer.") or has("model.diffusion_model.distilled_guidance_layer."):
            return FAMILIES["chroma"]
        return FAMILIES["flux"]
    if has("model.diffusion_model.input_blocks.") or has("cond_stage_model."):
        return FAMILIES["sd"]
    raise UnknownFamily("the checkpoint's tensors match no family Handoff knows")
