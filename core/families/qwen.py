"""Qwen-Image: a 20B MMDiT with an img2img pipeline; latent handoffs into it go as pixels."""
from core.families.base import CONTROLNET, LORA, Family

FAMILY = Family(
    "qwen", "Qwen-Image", "QwenImagePipeline", "QwenImageImg2ImgPipeline",
    native=1328, multiple=16, flow=True, pipeline_classes=("QwenImagePipeline", "QwenImageImg2ImgPipeline"),
    adapters=frozenset({LORA, CONTROLNET}), controlnet_pipelines=("QwenImageControlNetPipeline",),
    order=90,
)
