"""Stable Diffusion 3.x: an MMDiT on a 16-channel latent space, flow matching."""
from core.families.base import CONTROLNET, IP_ADAPTER, LATENTS_VIA_PREPARE, LORA, Family

FAMILY = Family(
    "sd3", "Stable Diffusion 3.x", "StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
    native=1024, multiple=16, flow=True,
    pipeline_classes=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
    latent_input=LATENTS_VIA_PREPARE, adapters=frozenset({LORA, CONTROLNET, IP_ADAPTER}),
    controlnet_pipelines=(("SD3ControlNetModel", "StableDiffusion3ControlNetPipeline"),),
    order=30, checkpoint_rank=30,
    lora_meta=("sd3", "stable-diffusion-3"), lora_rank=15,
    lora_rule=lambda v: v.has("joint_blocks") or v.has("context_block"),
    checkpoint_rule=lambda has: has("model.diffusion_model.joint_blocks.") or has("joint_blocks."),
)
