"""Schedulers: the A1111-style names users know (the table is core.interop.samplers), and
the scheduler patches a stage's call puts on a cached pipeline. Every patch is a context
manager: whatever fails inside it, the pipeline leaves with the scheduler it came with."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

from core.errors import ModelError
from core.families import Family
from core.interop import samplers
from core.interop.samplers import fits  # noqa: F401  (the window asks here which names fit a model)

# Every name a stage's scheduler can take (A1111-style: "DPM++ 2M Karras", "Euler a"…), from
# the one sampler table in core.interop.samplers, which also translates other tools' names.
SCHEDULERS: dict[str, samplers.Choice] = samplers.CHOICES


def check_scheduler(name: str | None, family: Family) -> str | None:
    """A message if the named scheduler cannot drive this family, else None."""
    if not name:
        return None
    chosen = samplers.choice(name)
    if chosen is None:
        return f"unknown scheduler '{name}' (choose from: {', '.join(SCHEDULERS)})"
    if chosen.cls(family.flow) is None:
        kind = "flow-matching" if family.flow else "noise-prediction"
        usable = [n for n in SCHEDULERS if fits(n, family.flow)]
        return f"scheduler '{name}' cannot drive {family.title} ({kind}); use one of: {', '.join(usable)}"
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
    chosen = samplers.choice(name)
    cls = getattr(diffusers, chosen.cls(family.flow))
    needs = chosen.needs()
    if needs and not _importable(needs):
        raise ModelError(f"scheduler '{name}' needs the {needs} package, which is not installed "
                         f"(pip install {needs}), or choose another scheduler")
    with _scheduler_replaced(pipe, cls.from_config(pipe.scheduler.config, **chosen.options())):
        yield


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


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
