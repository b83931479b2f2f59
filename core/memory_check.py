"""Whether a job's sizes fit in memory, estimated before any model loads: a size whose
activations clearly cannot fit is refused with the numbers, instead of running until
the allocator gives up (minutes later, or with the machine swapping).

The estimate is the VAE decode at a stage's working size, the largest activation of an
image model: the decoder's last block holds block_out_channels[0] channels at every
pixel, and several such tensors are alive at once (measured: about 8 for the demo's VAE
at 1024 px). DECODE_COPIES is half that, so only sizes that surely do not fit are refused.

A tiled decode (diffusers' enable_tiling, which core.memory_plan chooses when the whole
decode would not fit) runs the decoder on one tile at a time: its estimate,
tiled_decode_bytes, is one tile's decode plus the decoded tiles and the image, so it
barely grows with the size.
"""
from __future__ import annotations

import math
from pathlib import Path

from core import checked
from core.errors import ReadError

DECODE_COPIES = 4
DEFAULT_DECODER_CHANNELS = 128  # every AutoencoderKL of the families Handoff knows
GiB = 1024 ** 3
# VAEs whose enable_tiling decodes tiles of config.sample_size px (tile_sample_min_size), each
# from sample_size / 2**(len(block_out_channels) - 1) latents, overlapping by a quarter.
TILING_VAES = ("AutoencoderKL", "AutoencoderKLFlux2")
TILE_OVERLAP = 0.25  # diffusers' tile_overlap_factor
DEFAULT_TILE = 512, 8  # (tile px, latent scale) when no config says: diffusers' AutoencoderKL for SD


def decoder(folder: Path | None) -> tuple[int, bool]:
    """(channels at full resolution, whether the VAE decodes in fp32 whatever the dtype)
    from a diffusers folder's vae/config.json; the usual values when it cannot say."""
    if folder is None or not (Path(folder) / "vae" / "config.json").is_file():
        return DEFAULT_DECODER_CHANNELS, False
    try:
        config = checked.table(checked.read_json_file(Path(folder) / "vae" / "config.json"), "vae config")
        channels = checked.integer(checked.listing(config.get("block_out_channels"), "block_out_channels")[0],
                                   "block_out_channels")
        upcast = config.get("force_upcast") is True
    except (ReadError, IndexError):
        return DEFAULT_DECODER_CHANNELS, False
    return (channels if 0 < channels < 100_000 else DEFAULT_DECODER_CHANNELS), upcast


def vae_tile(folder: Path | None) -> tuple[int, int] | None:
    """(tile side in px, latent scale) of the VAE's tiled decode, from a diffusers folder's
    vae/config.json (a single-file checkpoint: DEFAULT_TILE); None for a VAE that does not
    tile that way (Qwen-Image's has tiles of its own) or a config that cannot say."""
    if folder is None:
        return DEFAULT_TILE
    try:
        config = checked.table(checked.read_json_file(Path(folder) / "vae" / "config.json"), "vae config")
        if config.get("_class_name") not in TILING_VAES:
            return None
        size = config.get("sample_size", 32)  # diffusers' default for both classes
        size = checked.integer(size[0] if isinstance(size, list) and size else size, "sample_size")
        blocks = len(checked.listing(config.get("block_out_channels"), "block_out_channels"))
    except (ReadError, OSError):
        return None
    scale = 2 ** (blocks - 1)
    return (size, scale) if 0 < size < 100_000 and size // scale > 0 else None


def decode_size(size: tuple[int, int], refine_tile: int, tiled: bool) -> tuple[int, int]:
    """The size a stage decodes at: a tiled refine denoises and decodes one refine tile at a time."""
    width, height = size
    return (min(width, refine_tile), min(height, refine_tile)) if tiled else (width, height)


def decode_bytes(width: int, height: int, channels: int, itemsize: int) -> int:
    return width * height * channels * itemsize * DECODE_COPIES


def tiled_decode_bytes(width: int, height: int, channels: int, itemsize: int, tile: tuple[int, int]) -> int:
    """The decode as diffusers' tiled_decode runs it: the decoder on one latent tile at a
    time (decode_bytes at the tile's size), every decoded tile (3 channels) kept until the
    tiles are blended, then the blended rows and the image they are joined into. An image
    within one tile is decoded whole: decode_bytes."""
    side, scale = tile
    latent_tile = side // scale
    if width // scale <= latent_tile and height // scale <= latent_tile:
        return decode_bytes(width, height, channels, itemsize)
    step = max(1, int(latent_tile * (1 - TILE_OVERLAP)))
    tiles = math.ceil(height // scale / step) * math.ceil(width // scale / step)
    return (decode_bytes(min(side, width), min(side, height), channels, itemsize)
            + tiles * side * side * 3 * itemsize + 2 * width * height * 3 * itemsize)


def available_bytes(device: str) -> tuple[int, str]:
    """Memory a job can still use on the device, and what it is called."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        # What torch's allocator holds but no tensor uses is free to this process too.
        return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()), "free VRAM"
    import psutil

    return int(psutil.virtual_memory().available), "available RAM"


def stage_problem(where: str, size: tuple[int, int], folder: Path | None, itemsize: int,
                  available: int, kind: str) -> str | None:
    """Why a stage cannot decode its image in the memory there is, even in tiles, with the numbers."""
    channels, upcast = decoder(folder)
    itemsize = 4 if upcast else itemsize
    need = decode_bytes(*size, channels, itemsize)
    if need <= available:
        return None
    tile = vae_tile(folder)
    tiled = tiled_decode_bytes(*size, channels, itemsize, tile) if tile else need
    if tiled <= available:
        return None  # core.memory_plan has the stage decode in tiles
    width, height = size
    in_tiles = f", {_amount(tiled)} in tiles" if tiled < need else ""
    return (f"{where} at {width}x{height}: decoding the image needs about {_amount(need)} "
            f"({'fp32' if itemsize == 4 else f'{itemsize * 8}-bit'}{in_tiles}), more than the "
            f"{_amount(available)} of {kind}: lower the size or the upscale")


def _amount(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"
