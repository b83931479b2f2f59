"""ERNIE-Image: no img2img pipeline in diffusers 0.42.1, so it refines through its
text-to-image pipeline (see core.families.flux2). It shares FLUX.2's VAE and latent
layout, but its decode normalizes with eps 1e-5 whatever the VAE config says."""
from dataclasses import dataclass

from core.families.base import LATENTS_VIA_TAIL, LORA
from core.families.flux2 import PatchedLatents


@dataclass(frozen=True)
class Ernie(PatchedLatents):
    def flow_schedule(self, pipe, steps: int, height: int, width: int) -> list[float]:
        """pipeline_ernie_image.py: linspace(1, 0, n + 1) less its 0, no shift."""
        import copy

        import torch

        scheduler = copy.deepcopy(pipe.scheduler)
        scheduler.set_timesteps(sigmas=torch.linspace(1.0, 0.0, steps + 1)[:-1])
        return scheduler.sigmas.tolist()


FAMILY = Ernie(
    "ernie", "ERNIE-Image", "ErnieImagePipeline", "ErnieImagePipeline",
    native=1024, multiple=16, flow=True, pipeline_classes=("ErnieImagePipeline",),
    latent_input=LATENTS_VIA_TAIL, adapters=frozenset({LORA}), order=80, bn_eps=1e-5,
    lora_meta=("ernie",), lora_rank=35,
)
