"""Stable Diffusion 1.x and 2.x: a UNet on a 4-channel latent space, DDPM-style schedules."""
from dataclasses import dataclass

from core.families.base import CONTROLNET, IP_ADAPTER, LATENTS_AS_IMAGE, LORA, Family


@dataclass(frozen=True)
class UNetControlNets(Family):
    """SD 1.x/2.x and SDXL ControlNets share one class; SDXL's are conditioned on text_time."""

    xl: bool = False

    def claims_controlnet(self, config: dict) -> bool:
        return super().claims_controlnet(config) and (config.get("addition_embed_type") == "text_time") == self.xl


def _sd_checkpoint(has) -> bool:
    return has("model.diffusion_model.input_blocks.") or has("cond_stage_model.")


def _sd_lora(view) -> bool:
    # A UNet LoRA whose cross-attention reads CLIP ViT-L (768, SD 1.x) or OpenCLIP-H (1024, SD 2.x).
    return view.in_features("attn2_to_k") in (768, 1024) or view.in_features("attn2.to_k") in (768, 1024)


FAMILY = UNetControlNets(
    "sd", "Stable Diffusion 1.x/2.x", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
    native=512, multiple=8, flow=False,
    pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    latent_input=LATENTS_AS_IMAGE, adapters=frozenset({LORA, CONTROLNET, IP_ADAPTER}),
    controlnet_pipelines=(("ControlNetModel", "StableDiffusionControlNetPipeline"),),
    order=10, checkpoint_rank=90, checkpoint_rule=_sd_checkpoint,
    lora_meta=("sd_v1", "sd_v2", "stable-diffusion-v1", "stable-diffusion-v2"), lora_rule=_sd_lora, lora_rank=90,
)
