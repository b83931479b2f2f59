"""Z-Image (base and Turbo): one latent space (the Flux.1 VAE) and one flow, so a base can
stop part-way through its sigma schedule and Turbo finish it."""
from core.families.base import CONTROLNET, LATENTS_VIA_PREPARE, LORA, Family

FAMILY = Family(
    "zimage", "Z-Image", "ZImagePipeline", "ZImageImg2ImgPipeline",
    native=1024, multiple=16, flow=True, pipeline_classes=("ZImagePipeline", "ZImageImg2ImgPipeline"),
    ensemble_group="zimage", ensemble_refiner=True, latent_input=LATENTS_VIA_PREPARE,
    adapters=frozenset({LORA, CONTROLNET}),
    controlnet_pipelines=(("ZImageControlNetModel", "ZImageControlNetPipeline"),),
    # a transformer file (GGUF or safetensors) in the original layout, prefixed or not
    checkpoint_rank=45,
    checkpoint_rule=lambda has: has("model.diffusion_model.noise_refiner.") and has("model.diffusion_model.context_refiner."),
    order=70, lora_meta=("z-image", "z_image", "zimage"), lora_rank=30,
)
