"""The upscale stage kind: a stage whose model is an upscaler file (core.upscalers) resizes
the image it takes in with that model, by its `upscale` factor exactly (Lanczos finishing
the size when the model's own factor differs). It sits beside the diffusion stage behind
the same small interface: planned (plan_upscale), run (run_upscale_stage), reported with
StageStarted / StageFinished, timing and peak memory included.

A refining (pixel) stage with an `upscaler` uses the same model resize for its hires fix
(model_resize), instead of Lanczos."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from core import events as ev
from core.errors import ModelError
from core.upscalers import UpscalerCache, tile_for, upscale_image, upscaler_file, upscaler_info

# Plans are core.planning.StagePlan; that module imports this one, so they are typed Any here.
_Plan = Any

UPSCALE = "upscale"  # the StagePlan kind and handoff of an upscale stage


def plan_upscale(p: _Plan, prev: _Plan | None, has_init_image: bool) -> None:
    """Make `p` (its model an upscaler) an upscale stage, or raise ModelError saying why
    it cannot be one where it is."""
    s = p.stage
    where = f"stage {p.index + 1} (upscaler {Path(s.model).name})"
    if prev is None and not has_init_image:
        raise ModelError(f"{where}: an upscaler resizes an image, it cannot start a chain: put a stage before it, "
                         "or open an init image")
    if s.loras or s.controlnet is not None or s.ip_adapters:
        raise ModelError(f"{where}: an upscaler stage takes no LoRA, ControlNet or IP-Adapter")
    if s.upscaler:
        raise ModelError(f"{where}: the stage's model is an upscaler already; 'upscaler' is for a refine stage")
    p.kind = p.handoff = UPSCALE
    p.steps, p.strength = 0, 0.0
    if prev is not None:
        prev.hands_over = "image"


def check_refine_upscaler(p: _Plan) -> None:
    """A refine's `upscaler` file, read and recognised at planning, before any stage runs."""
    if p.stage.upscaler:
        try:
            upscaler_info(upscaler_file(p.stage.upscaler))
        except ModelError as exc:
            raise ModelError(f"stage {p.index + 1}: upscaler {exc}") from None


def model_resize(p: _Plan, cache: UpscalerCache, device: str,
                 cancelled: Callable[[], bool]) -> Callable[[Any, tuple[int, int]], Any] | None:
    """The resize a pixel stage's hires fix does with its `upscaler` (None: Lanczos)."""
    if not p.stage.upscaler or p.handoff != "pixel":
        return None
    path = upscaler_file(p.stage.upscaler)

    def resize(image, size: tuple[int, int]):
        model = cache.get(path, device)
        return upscale_image(model, image, size, device, tile_for(upscaler_info(path), device, p.stage.tile), cancelled)

    return resize


def run_upscale_stage(p: _Plan, image, device: str, cache: UpscalerCache, out_path: Path,
                      cancelled: Callable[[], bool], on_tile: Callable[[int, int], None]) -> ev.StageFinished:
    """Run the upscale stage on `image` and say what it did (the image is in the event)."""
    from core.devices import PeakMeter, synchronize

    if image is None:
        raise ModelError(f"stage {p.index + 1}: the stage before the upscaler handed over no image")
    with PeakMeter(device) as meter:
        t0 = time.perf_counter()
        model = cache.get(p.resolved.path, device)
        tile = tile_for(upscaler_info(p.resolved.path), device, p.stage.tile)
        synchronize(device)
        t1 = time.perf_counter()
        result = upscale_image(model, image, p.size, device, tile, cancelled, on_tile)
        synchronize(device)
        t2 = time.perf_counter()
    return ev.StageFinished(
        index=p.index, label=p.stage.label(p.index), image=result, input_image=image, path=out_path,
        load_seconds=t1 - t0, denoise_seconds=t2 - t1, decode_seconds=0.0, total_seconds=t2 - t0,
        peak_memory=meter.peak, memory_kind=meter.label, steps_run=0, handoff=UPSCALE)
