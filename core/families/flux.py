"""Flux.1: a transformer over packed latents, (B, (h/2)*(w/2), 4C) in its loop, on the
Flux.1 VAE, which Z-Image and Chroma share. A Flux.1 base can stop part-way through its
sigmas and Chroma (built from Flux.1 schnell) finish them."""
from dataclasses import dataclass

from core.families.base import CONTROLNET, IP_ADAPTER, LATENTS_VIA_PREPARE, LORA, Family


def has_double_blocks(has) -> bool:
    return has("model.diffusion_model.double_blocks.") or has("double_blocks.")


@dataclass(frozen=True)
class PackedLatents(Family):
    """Families whose pipelines carry their latents packed as Flux.1's do."""

    def from_pipeline(self, pipe, latents, height: int, width: int):
        if latents.ndim != 3:
            return latents
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)

    def to_pipeline(self, pipe, latents):
        if latents is None or latents.ndim != 4:
            return latents
        b, c, h, w = latents.shape
        return pipe._pack_latents(latents, b, c, h, w)


FAMILY = PackedLatents(
    "flux", "Flux.1", "FluxPipeline", "FluxImg2ImgPipeline",
    native=1024, multiple=16, flow=True, pipeline_classes=("FluxPipeline", "FluxImg2ImgPipeline"),
    ensemble_group="flux", ensemble_refiner=True, latent_input=LATENTS_VIA_PREPARE,
    adapters=frozenset({LORA, CONTROLNET, IP_ADAPTER}),
    controlnet_pipelines=(("FluxControlNetModel", "FluxControlNetPipeline"),),
    order=40, checkpoint_rank=50, checkpoint_rule=has_double_blocks,
    lora_meta=("flux-1", "flux.1", "flux1"), lora_rank=20, lora_group="flux",
    lora_rule=lambda v: v.has("double_blocks") or v.has("single_blocks") or v.has("single_transformer_blocks"),
)
