"""A diffusers model folder's JSON (model_index.json, each component's config.json), read
size-capped and shape-checked (core.checked): a damaged download, or a folder that only
looks like a model, is one ReadError naming the file, never a traceback. Neither torch
nor diffusers is imported."""
from __future__ import annotations

from pathlib import Path

from core import checked
from core.errors import ReadError

# model_index.json and component configs are a few kB; anything past this is not one.
MAX_CONFIG_BYTES = 4 * checked.MiB


def read_config(path: Path) -> dict:
    """A JSON table (a config), or ReadError naming the file."""
    path = Path(path)
    what = f"{path.parent.name}/{path.name}"
    return checked.table(checked.read_json_file(path, what, MAX_CONFIG_BYTES), what)


def read_model_index(folder: Path) -> dict:
    return read_config(Path(folder) / "model_index.json")


def native_size(folder: Path, family) -> int:
    """The size a diffusers model was trained at, from its own configs (SD 1.5: 512, SD 2:
    768, SDXL: 1024, the demo: 64); the family's usual size when the configs do not say."""
    folder = Path(folder)
    denoiser = next((folder / n / "config.json" for n in ("unet", "transformer") if (folder / n / "config.json").is_file()),
                    None)
    try:
        if denoiser is None:
            raise ReadError("no denoiser config")
        sample = read_config(denoiser).get("sample_size")
        blocks = read_config(folder / "vae" / "config.json").get("block_out_channels", [0] * 4)
    except ReadError:
        return family.native
    if (not isinstance(sample, int) or isinstance(sample, bool) or not 0 < sample < 2**16
            or not isinstance(blocks, list) or not 0 < len(blocks) <= 8):
        return family.native
    return sample * 2 ** (len(blocks) - 1)
