"""Chroma: built from Flux.1 schnell, so the same VAE, latent packing and flow; it can
finish a schedule a Flux.1 base started. Its checkpoints carry a distilled guidance layer."""
from core.families.base import IP_ADAPTER, LATENTS_VIA_PREPARE, LORA
from core.families.flux import PackedLatents, has_double_blocks


def _chroma_checkpoint(has) -> bool:
    return has_double_blocks(has) and (has("distilled_guidance_layer.")
                                       or has("model.diffusion_model.distilled_guidance_layer."))


FAMILY = PackedLatents(
    "chroma", "Chroma", "ChromaPipeline", "ChromaImg2ImgPipeline",
    native=1024, multiple=16, flow=True, pipeline_classes=("ChromaPipeline", "ChromaImg2ImgPipeline"),
    ensemble_group="flux", ensemble_refiner=True, latent_input=LATENTS_VIA_PREPARE,
    adapters=frozenset({LORA, IP_ADAPTER}),
    order=60, checkpoint_rank=40, checkpoint_rule=_chroma_checkpoint,
    lora_meta=("chroma",), lora_rank=19, lora_group="flux",
)
