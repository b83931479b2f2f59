"""Whether a job's sizes fit in memory, estimated before any model loads: a size whose
activations clearly cannot fit is refused with the numbers, instead of running until
the allocator gives up (minutes later, or with the machine swapping).

The estimate is the VAE decode at a stage's working size, the largest activation of an
image model: the decoder's last block holds block_out_channels[0] channels at every
pixel, and several such tensors are alive at once (measured: about 8 for the demo's VAE
at 1024 px). DECODE_COPIES is half that, so only sizes that surely do not fit are refused.
"""
from __future__ import annotations

from pathlib import Path

from core import checked
from core.errors import ReadError

DECODE_COPIES = 4
DEFAULT_DECODER_CHANNELS = 128  # every AutoencoderKL of the families Handoff knows
GiB = 1024 ** 3


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


def decode_bytes(width: int, height: int, channels: int, itemsize: int) -> int:
    return width * height * channels * itemsize * DECODE_COPIES


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
    """Why a stage cannot decode its image in the memory there is, with the numbers."""
    channels, upcast = decoder(folder)
    itemsize = 4 if upcast else itemsize
    need = decode_bytes(*size, channels, itemsize)
    if need <= available:
        return None
    width, height = size
    return (f"{where} at {width}x{height}: decoding the image needs about {_amount(need)} "
            f"({'fp32' if itemsize == 4 else f'{itemsize * 8}-bit'}), more than the {_amount(available)} of "
            f"{kind}: lower the size or the upscale")


def _amount(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"
