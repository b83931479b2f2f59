"""How much of its schedule a refine stage re-runs at a strength, and the advice users need
to pick one: a light polish within one family, more across families, a warning where the
picture itself starts to change, and one where the stage runs no step at all. The window's
strength slider and the command line say the same words (core.cli); validation refuses
the no-step case and planning counts progress with the same arithmetic."""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.drift import STRENGTH_LIMIT

SAME_FAMILY = (0.10, 0.25)  # polishes detail without restyling
CROSS_FAMILY = (0.40, 0.60)  # lets a refiner of another family restyle


def effective_steps(steps: int, strength: float) -> int:
    """Steps an img2img at `strength` runs of a `steps`-long schedule: diffusers' cut,
    int(steps × strength), so 10 steps at 0.05 run none."""
    return int(steps * strength)


def steps_needed(strength: float) -> int:
    """The fewest steps at which `strength` runs one step."""
    return math.ceil(1 / strength)


@dataclass(frozen=True)
class StrengthAdvice:
    hint: str  # the range to pick from, and how many steps run
    warning: str  # "" when there is none
    effective: int  # effective_steps(steps, strength)


def advice(strength: float, steps: int, same_family: bool | None) -> StrengthAdvice:
    """The advice for a refine at `strength` of `steps` steps; same_family: whether the
    refiner shares the previous stage's family (None: unknown, or nothing before it)."""
    effective = effective_steps(steps, strength)
    if same_family is True:
        lo, hi = SAME_FAMILY
        hint = f"Same family: {lo:.2f}–{hi:.2f} polishes detail."
    elif same_family is False:
        lo, hi = CROSS_FAMILY
        hint = f"Across families: {lo:.2f}–{hi:.2f} lets the refiner restyle."
    else:
        hint = (f"{SAME_FAMILY[0]:.2f}–{SAME_FAMILY[1]:.2f} polishes within a family; "
                f"{CROSS_FAMILY[0]:.1f}–{CROSS_FAMILY[1]:.1f} across families.")
    hint += f"  Runs {effective} of {steps} steps."
    warning = ""
    if strength > STRENGTH_LIMIT:
        warning = f"Above {STRENGTH_LIMIT:g} the text and composition may drift from the previous stage."
    if effective < 1:
        warning = f"{steps} steps × {strength:.2f} runs no step: raise steps or strength."
    return StrengthAdvice(hint, warning, effective)
