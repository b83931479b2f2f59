"""SDXL base and the SDXL refiner. They share a VAE and text_encoder_2 and can split one
schedule between them (denoising_end / denoising_start); the refiner has only the second
text encoder and is conditioned on aesthetic score, so it can only refine."""
from dataclasses import dataclass

from core.families.base import CONTROLNET, IP_ADAPTER, LATENTS_AS_IMAGE, LORA
from core.families.sd import UNetControlNets

_CLASSES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
# The aesthetic scores the refiner runs with: Handoff passes none, so these are the
# defaults of StableDiffusionXLImg2ImgPipeline.__call__ (aesthetic_score,
# negative_aesthetic_score), kept here so reading another tool's graph needs no diffusers
# import; tests/test_interop_comfyui.py checks them against the installed signature.
REFINER_AESTHETIC_SCORE = 6.0
REFINER_NEGATIVE_AESTHETIC_SCORE = 2.5


def _is_refiner(index: dict) -> bool:
    first_encoder = index.get("text_encoder", [None, None])
    no_first = not first_encoder or not isinstance(first_encoder, list) or first_encoder[0] is None
    return bool(index.get("requires_aesthetics_score")) or (
        index.get("_class_name") == "StableDiffusionXLImg2ImgPipeline" and no_first)


@dataclass(frozen=True)
class SDXL(UNetControlNets):
    def claims(self, index: dict) -> bool:
        return index.get("_class_name") in _CLASSES and not _is_refiner(index)


@dataclass(frozen=True)
class SDXLRefiner(UNetControlNets):
    def claims(self, index: dict) -> bool:
        return index.get("_class_name") in _CLASSES and _is_refiner(index)

    def auto_ensembles(self) -> bool:
        return True


BASE = SDXL(
    "sdxl", "SDXL", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
    native=1024, multiple=8, flow=False, pipeline_classes=_CLASSES, ensemble_group="sdxl",
    latent_input=LATENTS_AS_IMAGE, adapters=frozenset({LORA, CONTROLNET, IP_ADAPTER}),
    controlnet_pipelines=(("ControlNetModel", "StableDiffusionXLControlNetPipeline"),
                          ("ControlNetUnionModel", "StableDiffusionXLControlNetUnionPipeline")),
    xl=True, order=20, checkpoint_rank=10,
    lora_meta=("sdxl_base", "stable-diffusion-xl-v1-base", "sdxl"), lora_rank=10,
    lora_rule=lambda v: v.has("lora_te2_") or v.has("text_encoder_2.") or 2048 in (
        v.in_features("attn2_to_k"), v.in_features("attn2.to_k")),
    # a whole checkpoint by its two text encoders; a UNet alone (a GGUF, diffusion_models/)
    # by its added-condition embedding, which SD 1.x/2.x UNets lack
    checkpoint_rule=lambda has: (has("conditioner.embedders.1.") and has("conditioner.embedders.0.")
                                 or has("model.diffusion_model.label_emb.") and not has("conditioner.")),
)
REFINER = SDXLRefiner(
    "sdxl-refiner", "SDXL refiner", None, "StableDiffusionXLImg2ImgPipeline",
    native=1024, multiple=8, flow=False, pipeline_classes=_CLASSES, ensemble_group="sdxl",
    latent_input=LATENTS_AS_IMAGE, adapters=frozenset({LORA, IP_ADAPTER}),
    xl=True, order=21, checkpoint_rank=20,
    lora_meta=("refiner",), lora_rank=5,
    lora_rule=lambda v: 1280 in (v.in_features("attn2_to_k"), v.in_features("attn2.to_k")),
    checkpoint_rule=lambda has: has("conditioner.embedders.0.model.") and not has("conditioner.embedders.1."),
)
FAMILIES = (BASE, REFINER)
