"""Model upscalers (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT...): reading a `.pth` or
`.safetensors` file, telling its architecture with spandrel, and running it over an
image in overlapping tiles with feathered seams (as ComfyUI's `comfy.utils.tiled_scale`).

A `.pth` is read with `torch.load(weights_only=True)` only: a file that needs more (pickled
Python objects, which can run code) is refused. spandrel is imported through
`import_spandrel()`, which copes with a torchvision that cannot load (see there).
"""
from __future__ import annotations

import math
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.errors import Cancelled, ModelError
from core.families.base import Family
from core.project import MIN_TILE

UPSCALER_SUFFIXES = (".pth", ".safetensors")
# What an upscaler stage's model is to the rest of the engine: not a diffusion family (it
# takes no chain position), works at any pixel size, and has no native size to bound it.
UPSCALER = Family("upscaler", "Upscaler", None, None, native=0, multiple=1, flow=False, order=1000)
# spandrel's purposes that map an image to an image of the same content: super-resolution,
# and 1x restoration (denoise, dejpeg) models, which the same stage can run at ×1.
IMAGE_PURPOSES = ("SR", "Restoration")
MAX_TILE = 2048
OVERLAP = 32  # input pixels two neighbouring tiles share (ComfyUI's default)
# Activations per input pixel: the widest conv's channels at the output resolution, a few
# of them alive at once (the measured peak of an RRDBNet at 256 px, rounded up).
ACTIVATION_COPIES = 6


@dataclass(frozen=True)
class UpscalerInfo:
    architecture: str  # spandrel's name for it: "ESRGAN", "RealESRGAN Compact", "SwinIR"...
    scale: int  # the model's own factor
    purpose: str
    channels: int  # the widest conv layer's output channels (for the tile size)


# ---------------------------------------------------------------- importing spandrel

_import_lock = threading.Lock()


def import_spandrel():
    """spandrel, imported even where torchvision cannot be.

    spandrel imports every architecture it knows up front, and two of them (LaMa and
    RestoreFormer, an inpainter and a face restorer) import
    `torchvision.transforms.functional`; no upscaler uses torchvision. PyPI's Linux
    torchvision is built for the CUDA torch, so beside a CPU-only torch its compiled ops
    fail to load ("operator torchvision::nms does not exist") and its import raises. Then
    a stand-in `torchvision.transforms.functional` is put in sys.modules for the length of
    spandrel's import only: those two architectures get functions that raise ModelError if
    ever called, and the stand-in is removed again, so nothing else sees a fake torchvision."""
    with _import_lock:  # (a half-imported spandrel is in sys.modules too: check under the lock)
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        from core import torchvision_guard

        if not torchvision_guard.usable():  # absent, or built for another torch
            return _import_with_stand_in()
        import spandrel

        return spandrel


def _import_with_stand_in():
    from core import torchvision_guard

    def unavailable(*_args, **_kwargs):
        raise ModelError("this spandrel architecture needs torchvision, which cannot be imported here "
                         "(install the torchvision build that matches your torch)")

    _drop_modules("spandrel")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    functional.rotate = functional.normalize = unavailable
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    stand_in = {"torchvision": package, "torchvision.transforms": transforms,
                "torchvision.transforms.functional": functional}
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        torchvision_guard.mark_absent()  # transformers and diffusers must still read it as absent
    return spandrel


def _drop_modules(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


# ---------------------------------------------------------------- reading and detecting


def upscaler_file(ref: str) -> Path:
    """The file an upscaler reference names: a path, or `builtin:demo-upscaler` (the demo's
    shipped one; ModelError when this checkout lacks it)."""
    text = ref.strip()
    if text.startswith("builtin:"):
        from core import demo

        return demo.upscaler_path(text)
    return Path(text).expanduser()


def read_state_dict(path: Path) -> dict:
    """The tensors of an upscaler file: a `.safetensors`, or a `.pth` that torch.load reads
    with weights_only=True. Raises ModelError, one line naming the file."""
    import torch

    path = Path(path)
    name = path.name
    if path.suffix.lower() not in UPSCALER_SUFFIXES:
        raise ModelError(f"{name}: an upscaler is a .pth or .safetensors file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelError(f"{name}: not a readable .safetensors file ({_first_line(exc)})") from None
    import pickle

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{name} holds pickled Python objects, not only tensors: Handoff loads .pth files with "
                         "torch.load(weights_only=True), which cannot run code; use a plain state dict or a "
                         ".safetensors copy") from None
    except Exception as exc:
        raise ModelError(f"{name}: not a readable .pth file ({_first_line(exc)})") from None
    if not isinstance(data, dict) or not data:
        raise ModelError(f"{name}: holds no state dict of tensors")
    return data


def load_descriptor(path: Path):
    """spandrel's descriptor of the upscaler in `path`, on the CPU in fp32, in eval mode.
    Raises ModelError naming the file for one spandrel does not know or that is not an
    image-to-image model."""
    state_dict = read_state_dict(path)
    spandrel = import_spandrel()
    name = Path(path).name
    try:
        model = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise ModelError(f"{name}: an unknown architecture: not an upscaler spandrel recognises (ESRGAN, "
                         "Real-ESRGAN, SwinIR, DAT, HAT and more)") from None
    except Exception as exc:  # an architecture's loader choking on a malformed state dict
        raise ModelError(f"{name}: spandrel could not load it ({_first_line(exc)})") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose not in IMAGE_PURPOSES:
        raise ModelError(f"{name}: a {model.architecture.name} model ({model.purpose}) is not an upscaler")
    if (model.input_channels, model.output_channels) != (3, 3):
        raise ModelError(f"{name}: a {model.architecture.name} model for {model.input_channels}-channel images; "
                         "Handoff upscales RGB images")
    return model.eval()


def _describe(model, state_dict: dict | None = None) -> UpscalerInfo:
    sd = state_dict if state_dict is not None else model.model.state_dict()
    channels = max((int(t.shape[0]) for t in sd.values() if getattr(t, "ndim", 0) == 4), default=64)
    return UpscalerInfo(model.architecture.name, int(model.scale), model.purpose, channels)


_known: dict[str, UpscalerInfo] = {}
_known_lock = threading.Lock()


def upscaler_info(path: Path) -> UpscalerInfo:
    """What the upscaler in `path` is (read once per file version, then remembered).
    Raises ModelError naming the file when it is not one Handoff can run."""
    key = _file_key(Path(path))
    with _known_lock:
        if key in _known:
            return _known[key]
    info = _describe(load_descriptor(path))
    with _known_lock:
        _known[key] = info
    return info


def _file_key(path: Path) -> str:
    real = path.resolve()
    st = real.stat()
    return f"{real}|{st.st_size}|{st.st_mtime_ns}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# ---------------------------------------------------------------- running


class UpscalerCache:
    """Loaded upscalers, kept on their device for reuse across stages and jobs, like
    core.models.ModelCache keeps pipelines."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, str], Any] = {}

    def get(self, path: Path, device: str):
        key = (_file_key(Path(path)), device)
        if key not in self.loaded:
            self.loaded[key] = load_descriptor(path).to(device)
        return self.loaded[key]

    def clear(self) -> None:
        self.loaded.clear()


def tile_for(info: UpscalerInfo, device: str, wanted: int | None = None) -> int:
    """The tile side in input pixels: the stage's own (`wanted`, when set), else the
    largest whose activations take at most a quarter of the free memory."""
    if wanted:
        return max(MIN_TILE, int(wanted))
    from core.memory_check import available_bytes

    available, _ = available_bytes(device)
    per_pixel = 4 * info.channels * info.scale * info.scale * ACTIVATION_COPIES
    side = int(math.sqrt(max(available // 4, 1) / per_pixel))
    return max(MIN_TILE, min(MAX_TILE, side // 32 * 32))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side begin: `tile` apart less `overlap`, the last flush
    with the far edge (so every tile is whole and none runs past the image)."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def refine_overlap(tile: int) -> int:
    """The pixels two neighbouring tiles of a tiled refine (core.tiled_refine) share: a
    quarter of the tile, the most tiled_scale blends over (as MultiDiffusion's default
    stride, 3/4 of the window)."""
    return tile // 4


def _ramp(length: int, overlap: int, low: bool, high: bool):
    """Weights along one side of a tile's output: 1 inside; at each edge that meets another
    tile, 0 over the outer quarter of the overlap (where the model saw the tile's padding,
    not the image) and then rising linearly to 1 over the next half. The neighbour's
    weights mirror these, so every pixel has weight from at least one tile."""
    import torch

    w = torch.ones(length)
    margin = overlap // 4
    rise = torch.arange(1, overlap - 2 * margin + 1, dtype=torch.float32) / (overlap - 2 * margin + 1)
    edge = torch.cat([torch.zeros(margin), rise])
    if low and overlap:
        w[:len(edge)] = edge
    if high and overlap:
        w[length - len(edge):] = edge.flip(0)
    return w


def tiled_scale(run: Callable[[Any], Any], x, scale: int, tile: int, overlap: int = OVERLAP,
                cancelled: Callable[[], bool] = lambda: False, on_tile: Callable[[int, int], None] | None = None):
    """`run` (NCHW 0..1 in, ×scale out) over `x` in overlapping tiles, the seams blended
    by feathered weights (as comfy.utils.tiled_scale, less each tile's padded rim). An image that fits one tile is run whole: the result is the
    model's own output, bit for bit."""
    import torch

    _, channels, height, width = x.shape
    if height <= tile and width <= tile:
        if on_tile:
            on_tile(1, 1)
        return run(x)
    overlap = min(overlap, tile // 4)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = torch.zeros((1, channels, height * scale, width * scale), dtype=torch.float32, device=x.device)
    weight = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32, device=x.device)
    done, total = 0, len(ys) * len(xs)
    for y in ys:
        for x0 in xs:
            if cancelled():
                raise Cancelled()
            th, tw = min(tile, height), min(tile, width)
            piece = run(x[:, :, y:y + th, x0:x0 + tw]).float()
            wy = _ramp(th * scale, overlap * scale, y > 0, y + th < height).to(x.device)
            wx = _ramp(tw * scale, overlap * scale, x0 > 0, x0 + tw < width).to(x.device)
            mask = wy[:, None] * wx[None, :]
            region = (slice(None), slice(None), slice(y * scale, (y + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[region] += piece * mask
            weight[region] += mask
            done += 1
            if on_tile:
                on_tile(done, total)
    return (out / weight).to(x.dtype)


def to_tensor(image, device: str = "cpu"):
    """A PIL image as spandrel takes it: (1, 3, H, W) float32 in 0..1."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device)


def to_image(tensor):
    """spandrel's output (1, 3, H, W) in 0..1 as a PIL image, rounded to the nearest level."""
    from PIL import Image

    array = (tensor[0].float().clamp(0, 1) * 255).round().to("cpu").byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


def upscale_image(model, image, size: tuple[int, int], device: str, tile: int,
                  cancelled: Callable[[], bool] = lambda: False, on_tile: Callable[[int, int], None] | None = None):
    """`image` through the upscaler, then resized (Lanczos) to exactly `size` when the
    model's own factor does not land there."""
    import torch
    from PIL import Image

    with torch.inference_mode():
        out = tiled_scale(model, to_tensor(image, device), int(model.scale), tile, OVERLAP, cancelled, on_tile)
    result = to_image(out)
    return result if result.size == tuple(size) else result.resize(tuple(size), Image.LANCZOS)
