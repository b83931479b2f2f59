"""What Handoff advises about a job before it runs, as the notes the command line prints:
the window says the same things beside its widgets (the strength slider, the init-size
row), from the same functions (core.strength, core.init_size). Advice, not problems: a
job that cannot run is refused by core.project.validate."""
from __future__ import annotations

from core import init_size, model_info, strength
from core.interop.chain import job
from core.project import Project


def stage_strength_advice(project: Project) -> dict[int, strength.StrengthAdvice]:
    """The strength advice of each enabled stage that refines at a strength (by index in
    project.stages): the first one when it refines the init image, and each later one
    whose handoff, as far as the models' families tell, is pixel or latent. The family
    context is the previous enabled stage's model, as the window's stage editor gives it."""
    out: dict[int, strength.StrengthAdvice] = {}
    stages = job(project)
    for pos, s in enumerate(stages):
        if s.handoff not in ("pixel", "latent"):
            continue
        same = model_info.same_family(stages[pos - 1].stage.model, s.stage.model) if pos else None
        out[s.index] = strength.advice(s.stage.strength, s.stage.steps, same)
    return out


def notes(project: Project) -> list[str]:
    """One line per piece of advice that warns: the init image's size, then each stage's
    strength warning."""
    lines = []
    size = init_size.for_project(project)
    if size is not None:
        lines.append(f"{size.note()} (the same shape at that area: {size.good[0]}x{size.good[1]})")
    for index, said in stage_strength_advice(project).items():
        if said.warning:
            lines.append(f"stage {index + 1} ({project.stages[index].name or project.stages[index].model}): "
                         f"{said.warning}")
    return lines
