"""Running one stage's diffusers call: the patches it needs on the cached pipeline (all
undone, whatever fails), step reports, cancellation between steps, and the final
latents captured on the way."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from core.errors import Cancelled
from core.planning import StagePlan
from core.stage_call import Call, StageInput


PREVIEW_INTERVAL_S = 0.25  # at most four live previews a second
PREVIEW_BUDGET = 0.05  # and never more than this share of the stage's time spent on them


class PreviewThrottle:
    """When a step gets a live preview: the latent->RGB map costs a fraction of a step, but
    a step of a tiny model costs less than that, so previews are paced by the clock and by
    what they have cost so far, not by a step count."""

    def __init__(self, interval: float = PREVIEW_INTERVAL_S, budget: float = PREVIEW_BUDGET,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.interval, self.budget, self.clock = interval, budget, clock
        self.start = clock()
        self.last = self.start
        self.spent = 0.0

    def due(self) -> bool:
        now = self.clock()
        return now - self.last >= self.interval and self.spent <= self.budget * (now - self.start)

    def took(self, started: float) -> None:
        self.last = self.clock()
        self.spent += self.last - started


@dataclass
class Previews:
    """Where a stage's live previews go: `emit(step, PIL image)`, for the VAE `fingerprint`
    (core.previews remembers its fitted map by it)."""

    emit: Callable[[int, Any], None]
    fingerprint: str | None


@dataclass
class StageOutput:
    image: Any  # PIL image; None when the stage handed over latents and was not decoded
    latents: Any  # final latents in the family's handoff layout
    steps_run: int
    denoise_seconds: float
    decode_seconds: float


def patched(pipe, p: StagePlan, call: Call) -> contextlib.ExitStack:
    """Every patch the call needs, entered in order under one ExitStack: leaving it (on
    success, failure or cancel) undoes them all, in reverse."""
    from core.latents import latents_into_prepare
    from core.schedulers import imposed_schedule, swapped_scheduler

    from core.adapters import ip_adapters_loaded, loras_active

    stack = contextlib.ExitStack()
    where = f"stage {p.index + 1} ({p.family.title})"
    try:
        stack.enter_context(loras_active(pipe, p.stage.loras, p.family, where))
        stack.enter_context(ip_adapters_loaded(pipe, p.stage.ip_adapters, p.family, where))
        stack.enter_context(swapped_scheduler(pipe, p.stage.scheduler, p.family))
        if call.sigmas is not None:  # a flow ensemble's refiner, or a refine through text-to-image
            stack.enter_context(imposed_schedule(pipe, call.sigmas))
        if call.prepared_latents is not None:
            stack.enter_context(latents_into_prepare(pipe, call.prepared_latents))
    except BaseException:
        stack.close()
        raise
    return stack


@contextlib.contextmanager
def seeded_global_rng(generator):
    """torch's global RNG seeded from the stage's generator for the call, and put back
    after: SD3's ControlNet pipeline samples its control image's latents without the
    generator, so without this one seed gave a different image each time."""
    if generator is None:
        yield
        return
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generator.initial_seed())
        yield


def run_stage(pipe, p: StagePlan, call: Call, given: StageInput, device: str,
              on_step: Callable[[int, int], None], cancelled: Callable[[], bool],
              previews: Previews | None = None) -> StageOutput:
    """Run one diffusers call, reporting steps (and live previews, when asked), capturing
    the final latents on the way."""
    from core.devices import synchronize

    if p.runs_no_step():
        return StageOutput(given.image, given.latents, 0, 0.0, 0.0)

    captured: dict[str, Any] = {}
    width, height = p.size
    throttle = PreviewThrottle(PREVIEW_INTERVAL_S, PREVIEW_BUDGET) if previews is not None else None

    def live_preview(pipeline, i: int, total: int, latents) -> None:
        nonlocal throttle
        if throttle is None or i + 1 >= total or not throttle.due():
            return  # the last step's image is the stage's own, moments later
        from core.previews import preview

        started = time.perf_counter()
        try:
            # The callback's latents are in the pipeline's layout (Flux packs them).
            handed = p.family.from_pipeline(pipeline, latents, height, width)
            image = preview(pipeline, p.family, handed, (width, height), previews.fingerprint)
        except Exception:  # a VAE the map cannot fit: the run goes on without previews
            throttle = None
            return
        throttle.took(started)
        previews.emit(i + 1, image)

    def callback(pipeline, i, t, kwargs):
        if cancelled():
            raise Cancelled()
        captured["latents"] = kwargs["latents"]
        captured["steps"] = i + 1
        if p.schedule is not None and i == 0 and p.handoff == "generate":
            # The full schedule as the base's scheduler shifted it, for the refiner to finish.
            p.schedule["sigmas"] = pipeline.scheduler.sigmas.tolist()
        synchronize(device)
        captured["t_last"] = time.perf_counter()
        # ERNIE-Image keeps no _num_timesteps: its scheduler's timesteps are the ones it runs.
        total = int(getattr(pipeline, "_num_timesteps", 0) or 0) or len(pipeline.scheduler.timesteps)
        live_preview(pipeline, i, call.stop_after or total, kwargs["latents"])
        on_step(i + 1, call.stop_after or total)
        if call.stop_after is not None and i + 1 >= call.stop_after:
            pipeline._interrupt = True  # the loop skips the rest; the latents stay at sigma_k
        return kwargs

    kwargs = dict(call.kwargs, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    start = time.perf_counter()
    with patched(pipe, p, call), seeded_global_rng(kwargs.get("generator")):
        result = pipe(**kwargs)
    synchronize(device)
    end = time.perf_counter()
    t_last = captured.get("t_last", start)
    steps_run = int(getattr(pipe, "_num_timesteps", 0) or 0)
    if call.stop_after is not None or not steps_run:
        steps_run = captured.get("steps", 0)  # the steps the callback saw
    latents = captured.get("latents")
    image = None if call.kwargs.get("output_type") == "latent" else result.images[0]
    if latents is not None:
        latents = p.family.from_pipeline(pipe, latents, height, width)
    return StageOutput(image, latents, steps_run, t_last - start, end - t_last)
