"""FLUX.2: no img2img pipeline in diffusers 0.42.1 (its `image` is an editing reference
with no strength), so it refines through its text-to-image pipeline, as ComfyUI does:
the image is encoded, noised to the sigma where `strength` of the schedule is left, and
the tail of the schedule is imposed. ERNIE-Image uses the same VAE (AutoencoderKLFlux2)
and the same latent layout in its loop: 2x2 patches normalized by the VAE's batch-norm
statistics; its handed-over latents are the VAE's own, so the two trade latents."""
from dataclasses import dataclass

from core.families.base import LATENTS_VIA_TAIL, LORA, Family


@dataclass(frozen=True)
class PatchedLatents(Family):
    """Families whose loop keeps AutoencoderKLFlux2 latents as normalized 2x2 patches."""

    bn_eps: float | None = None  # None: the VAE config's batch_norm_eps

    def _bn_stats(self, pipe, like):
        import torch

        bn = pipe.vae.bn
        eps = self.bn_eps if self.bn_eps is not None else pipe.vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps).to(like.device, like.dtype)
        return mean, std

    def to_pipeline(self, pipe, latents):
        """VAE latents (B, C, h, w) as 2x2 patches (B, 4C, h/2, w/2), normalized."""
        patches = pipe._patchify_latents(latents)
        mean, std = self._bn_stats(pipe, patches)
        return (patches - mean) / std

    def from_pipeline(self, pipe, latents, height: int, width: int):
        """The inverse of to_pipeline, after unpacking FLUX.2's (B, tokens, 4C) sequence."""
        if latents.ndim == 3:  # FLUX.2's _pack_latents is a reshape to (B, h*w, C): undo it
            side = pipe.vae_scale_factor * 2
            b, _, c = latents.shape
            latents = latents.permute(0, 2, 1).reshape(b, c, height // side, width // side)
        mean, std = self._bn_stats(pipe, latents)
        return pipe._unpatchify_latents(latents * std + mean)

    def vae_latents(self, pipe, latents):
        return latents  # handed over as the VAE's own latents already

    def encode(self, pipe, image, height: int, width: int):
        """The distribution's mode, as FLUX.2's own _encode_vae_image takes it (no randomness)."""
        pixels = pipe.image_processor.preprocess(image, height=height, width=width)
        return pipe.vae.encode(pixels.to(pipe._execution_device, pipe.vae.dtype)).latent_dist.mode()


@dataclass(frozen=True)
class Flux2(PatchedLatents):
    def flow_schedule(self, pipe, steps: int, height: int, width: int) -> list[float]:
        """pipeline_flux2.py: linspace(1, 1/n, n), shifted by an empirical mu, on a copy
        of the pipeline's scheduler."""
        import copy

        import numpy as np
        from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

        scheduler = copy.deepcopy(pipe.scheduler)
        side = pipe.vae_scale_factor * 2  # pixels per packed latent token
        mu = compute_empirical_mu(image_seq_len=(height // side) * (width // side), num_steps=steps)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        return scheduler.sigmas.tolist()


FAMILY = Flux2(
    "flux2", "FLUX.2", "Flux2Pipeline", "Flux2Pipeline",
    native=1024, multiple=16, flow=True, pipeline_classes=("Flux2Pipeline", "Flux2KleinPipeline"),
    latent_input=LATENTS_VIA_TAIL, adapters=frozenset({LORA}), order=50,
    lora_meta=("flux.2", "flux2", "flux-2", "klein"), lora_rank=18,
)
