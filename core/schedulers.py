"""Schedulers: the A1111-style names users know, and the scheduler patches a stage's call
puts on a cached pipeline. Every patch is a context manager: whatever fails inside it,
the pipeline leaves with the scheduler it came with."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

from core.errors import ModelError
from core.families import Family

SCHEDULERS = {
    # A1111-style names, the way users know them, mapped to diffusers classes and options.
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Flow Euler": ("FlowMatchEulerDiscreteScheduler", {}),
}
FLOW_SCHEDULERS = {"Flow Euler"}


def check_scheduler(name: str | None, family: Family) -> str | None:
    """A message if the named scheduler cannot drive this family, else None."""
    if not name:
        return None
    if name not in SCHEDULERS:
        return f"unknown scheduler '{name}' (choose from: {', '.join(SCHEDULERS)})"
    if family.flow != (name in FLOW_SCHEDULERS):
        kind = "flow-matching" if family.flow else "noise-prediction"
        fits = [n for n in SCHEDULERS if (n in FLOW_SCHEDULERS) == family.flow]
        return f"scheduler '{name}' cannot drive {family.title} ({kind}); use one of: {', '.join(fits)}"
    return None


@contextlib.contextmanager
def _scheduler_replaced(pipe, replacement) -> Iterator[Any]:
    original = pipe.scheduler
    pipe.scheduler = replacement
    try:
        yield replacement
    finally:
        pipe.scheduler = original


@contextlib.contextmanager
def swapped_scheduler(pipe, name: str | None, family: Family) -> Iterator[None]:
    """The stage's chosen scheduler (by its A1111 name) in place of the pipeline's own."""
    if not name:
        yield
        return
    import diffusers

    problem = check_scheduler(name, family)
    if problem:
        raise ModelError(problem)
    cls_name, options = SCHEDULERS[name]
    with _scheduler_replaced(pipe, getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **options)):
        yield


def unshifted_config(config) -> dict[str, Any]:
    """Overrides that make a flow-matching scheduler take given sigmas exactly as they are:
    no static or resolution-dependent shift, no terminal stretch, no Karras-style respacing."""
    wanted = {"shift": 1.0, "use_dynamic_shifting": False, "shift_terminal": None, "use_karras_sigmas": False,
              "use_exponential_sigmas": False, "use_beta_sigmas": False}
    return {k: v for k, v in wanted.items() if k in config}


@contextlib.contextmanager
def imposed_schedule(pipe, sigmas: list[float]) -> Iterator[None]:
    """Make the pipeline run exactly `sigmas`, whatever schedule its __call__ computes:
    ERNIE-Image's takes no `sigmas` argument, FLUX.2's would shift them again by its mu, and
    a flow ensemble's refiner must not shift the base's already-shifted ones. An unshifted
    copy of the scheduler stands in for the call, its set_timesteps answering every request
    with these sigmas; the pipeline's own scheduler is back afterwards, untouched."""
    original = pipe.scheduler
    stand_in = type(original).from_config(original.config, **unshifted_config(original.config))
    set_timesteps = stand_in.set_timesteps

    @functools.wraps(set_timesteps)  # keeps the signature: diffusers checks that it takes `sigmas`
    def imposed(*args, device=None, **kwargs):
        return set_timesteps(sigmas=sigmas, device=device)

    stand_in.set_timesteps = imposed  # on the stand-in only; it goes with it
    with _scheduler_replaced(pipe, stand_in):
        yield
