"""A cheap image of latents: a linear map from a VAE's latent channels to RGB, the way
ComfyUI previews latents with a 3xC matrix per latent format. Here the matrix is fitted
to each VAE itself (any VAE, not a table of known ones): the VAE encodes one image of
solid colour blocks, and least squares maps the latents to those colours. The fit costs
one small encode per VAE, is remembered on disk by the VAE's fingerprint, and a preview
afterwards costs a matrix product, so a stage that hands latents over needs no decode."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from core import paths

BLOCKS = 16  # colour blocks per side of the fitting image
_fitted: dict[str, Any] = {}
_lock = threading.Lock()


def _store(fingerprint: str) -> Path:
    return paths.cache_dir() / "latent-previews" / f"{fingerprint}.json"


def rgb_map(vae, fingerprint: str | None):
    """(C + 1, 3) float32 tensor: latent channels (and a bias) to RGB in 0..1."""
    import torch

    key = fingerprint or f"unsaved-{id(vae)}"
    with _lock:
        if key in _fitted:
            return _fitted[key]
    weights = None
    if fingerprint:
        try:
            weights = torch.tensor(json.loads(_store(fingerprint).read_text()), dtype=torch.float32)
        except (OSError, ValueError, TypeError):
            weights = None
    if weights is None:
        weights = _fit(vae)
        if fingerprint:
            from core.atomic import write_text

            try:
                write_text(_store(fingerprint), json.dumps(weights.tolist()))
            except OSError:
                pass  # a read-only home: fitted again next session
    with _lock:
        _fitted[key] = weights
    return weights


def _fit(vae):
    import torch

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator("cpu").manual_seed(0)
    colours = torch.rand(3, BLOCKS, BLOCKS, generator=g)
    # Blocks of 2x2 latent cells, so most cells see one colour.
    side = 2 * factor
    image = colours.repeat_interleave(side, 1).repeat_interleave(side, 2)[None] * 2 - 1
    device = next(vae.parameters()).device
    if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        import copy

        vae = copy.deepcopy(vae).to(torch.float32)  # SDXL's VAE overflows in fp16, as its pipelines know
    from core.vae_tiling import untiled

    with torch.no_grad(), untiled(vae):  # the map is cached per VAE: the same whatever a stage set
        latents = vae.encode(image.to(device, vae.dtype)).latent_dist.mode().float().cpu()[0]
    if not torch.isfinite(latents).all():
        raise ValueError("the VAE's latents of the fitting image are not finite")
    target = colours.repeat_interleave(2, 1).repeat_interleave(2, 2)
    c = latents.shape[0]
    x = torch.cat([latents.reshape(c, -1).T, torch.ones(latents[0].numel(), 1)], dim=1)
    y = target[:, : latents.shape[1], : latents.shape[2]].reshape(3, -1).T
    return torch.linalg.lstsq(x, y).solution.float()


def preview(pipe, family, latents, size: tuple[int, int], fingerprint: str | None):
    """A PIL image of handoff-layout latents at `size` (width, height)."""
    import torch
    from PIL import Image

    weights = rgb_map(pipe.vae, fingerprint)
    with torch.no_grad():
        raw = family.vae_latents(pipe, latents[:1]).float().cpu()[0]
        c, h, w = raw.shape
        rgb = (torch.cat([raw.reshape(c, -1).T, torch.ones(h * w, 1)], dim=1) @ weights).clamp(0, 1)
    pixels = (rgb.reshape(h, w, 3).numpy() * 255).round().astype("uint8")
    return Image.fromarray(pixels, "RGB").resize(size, Image.BILINEAR)
