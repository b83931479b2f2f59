"""Switching a pipeline's VAE between a whole and a tiled decode (diffusers' enable_tiling),
as core.memory_plan decides per stage. A VAE is shared between pipelines and kept across
jobs (core.models.ModelCache), so the switch is set before each use, never left as an
earlier stage or job set it."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


def set_vae_tiling(owner: Any, tiled: bool) -> None:
    """Tile `owner.vae`'s decodes (and encodes) or not; a VAE without tiling is left alone."""
    vae = getattr(owner, "vae", None)
    if vae is None or not hasattr(vae, "use_tiling"):
        return
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


@contextmanager
def untiled(vae: Any) -> Iterator[Any]:
    """The VAE decoding and encoding whole for a while, whatever a stage set."""
    was = getattr(vae, "use_tiling", None)
    if was:
        vae.use_tiling = False
    try:
        yield vae
    finally:
        if was:
            vae.use_tiling = True
