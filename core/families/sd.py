"""Stable Diffusion 1.x and 2.x: a UNet on a 4-channel latent space, DDPM-style schedules."""
from core.families.base import CONTROLNET, IP_ADAPTER, LATENTS_AS_IMAGE, LORA, Family


def _sd_checkpoint(has) -> bool:
    return has("model.diffusion_model.input_blocks.") or has("cond_stage_model.")


FAMILY = Family(
    "sd", "Stable Diffusion 1.x/2.x", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
    native=512, multiple=8, flow=False,
    pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    latent_input=LATENTS_AS_IMAGE, adapters=frozenset({LORA, CONTROLNET, IP_ADAPTER}),
    controlnet_pipelines=("StableDiffusionControlNetPipeline",),
    order=10, checkpoint_rank=90, checkpoint_rule=_sd_checkpoint,
)
