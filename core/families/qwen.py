"""Qwen-Image: a 20B MMDiT with an img2img pipeline; latent handoffs into it go as pixels.

Its pipelines take classifier-free guidance as `true_cfg_scale`, applied only when a
negative prompt is given; their `guidance_scale` feeds guidance-distilled transformers
alone (none is released) and is ignored, with a warning, by the others."""
from __future__ import annotations

from dataclasses import dataclass

from core.families.base import CONTROLNET, LORA, Family


@dataclass(frozen=True)
class QwenFamily(Family):
    def guidance_arguments(self, pipe, scale: float, negative: str | None) -> dict:
        if pipe.transformer.config.guidance_embeds:
            # A guidance-distilled transformer takes the scale as an input; no true CFG.
            kw: dict = {"guidance_scale": scale, "true_cfg_scale": 1.0}
        else:
            kw = {"true_cfg_scale": scale}
            if negative is None and scale > 1:
                # Without a negative prompt the pipeline skips CFG whatever the scale; the
                # model card's " " turns it on against an (almost) empty prompt.
                negative = " "
        if negative is not None:
            kw["negative_prompt"] = negative
        return kw


FAMILY = QwenFamily(
    "qwen", "Qwen-Image", "QwenImagePipeline", "QwenImageImg2ImgPipeline",
    native=1328, multiple=16, flow=True, pipeline_classes=("QwenImagePipeline", "QwenImageImg2ImgPipeline"),
    adapters=frozenset({LORA, CONTROLNET}),
    controlnet_pipelines=(("QwenImageControlNetModel", "QwenImageControlNetPipeline"),),
    lora_meta=("qwen",), lora_rank=25, lora_rule=lambda v: v.has("img_mlp") or v.has("img_mod"),
    order=90,
)
