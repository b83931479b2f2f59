"""Latents between stages: noising handed-over latents for a refine, and the patch that
feeds them to a flow-matching img2img pipeline in place of an encoded image. The layout
each family hands over and takes is the family's (core.families)."""
from __future__ import annotations

import contextlib
from typing import Iterator


def noised(x0, sigma: float, generator):
    """Clean latents noised to `sigma` of a flow schedule with the stage's generator, the
    way FlowMatchEulerDiscreteScheduler.scale_noise does: sigma * noise + (1 - sigma) * x0,
    computed in float32 as scale_noise computes 1 - sigma."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    x0 = x0.to(torch.float32)
    noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=torch.float32)
    s = torch.tensor(sigma, dtype=torch.float32)
    return s * noise + (1.0 - s) * x0


@contextlib.contextmanager
def latents_into_prepare(pipe, latents) -> Iterator[None]:
    """Flow-matching img2img pipelines (Z-Image, Flux.1, Chroma, SD3) noise the encoded
    image inside prepare_latents, at the refine schedule's first timestep, and Flux and
    Chroma pack it there. Handing them the (B, C, h, w) latents instead of the image gives
    exactly that noising and packing with no VAE encode: each takes an input with the VAE's
    latent channel count as already encoded. (Passing latents as `image` fails in Z-Image's
    preprocessing, and `latents=` skips the noising.) The image the call is given is
    still preprocessed, then set aside."""
    original = pipe.prepare_latents

    def prepare(image, *args, **kwargs):
        return original(latents.to(image.device), *args, **kwargs)

    pipe.prepare_latents = prepare
    try:
        yield
    finally:
        del pipe.prepare_latents  # the instance attribute; the class method shows through again
