"""The job as other tools see it: each enabled stage with the handoff it will take, the
size it works at, its own prompt, negative and seed, and its sampler named, for the
writers of A1111 `parameters` and ComfyUI graphs. After a run, the plan's record of what
ran (core.ran, carried in the PNG) decides each stage's handoff and strength; without one
(an export of a project not run), it is read from metadata only (no weights, no torch):
an `auto` handoff is told from the models' families where they are known."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import model_info
from core.families import Family
from core.interop import samplers
from core.project import Project, Stage, stage_sizes
from core.ran import StageRan
from core.upscalers import UPSCALER

# When a model's own scheduler cannot be read from its files (a Hub model not downloaded,
# a single-file checkpoint without Handoff's configs), writers name this one.
ASSUMED_SAMPLER = "Euler"


@dataclass
class JobStage:
    index: int  # in project.stages
    stage: Stage
    handoff: str  # "generate", "pixel", "latent" or "ensemble"
    size: tuple[int, int]  # (width, height) it works at
    size_in: tuple[int, int]  # what it takes in (the previous stage's size; its own when it generates)
    prompt: str
    negative: str
    seed: int
    family: Family | None
    strength: float = 0.0  # pixel/latent: the share of the schedule redone (what ran, when known)
    ran: StageRan | None = None  # the run's record, when the job has run

    @property
    def upscales(self) -> bool:
        """An upscale stage (a model upscale alone, no sampler): the run's record says so,
        or, without one, the stage's model is an upscaler."""
        if self.ran is not None:
            return self.ran.ran == "upscale"
        return is_upscaler(self.stage.model)

    @property
    def flow(self) -> bool:
        return bool(self.family and self.family.flow)

    def sampler(self) -> tuple[str, bool]:
        """(Handoff scheduler name, assumed): the stage's own choice, else the one its
        model ships with, else ASSUMED_SAMPLER (True: nothing said which)."""
        if self.stage.scheduler:
            return self.stage.scheduler, False
        shipped = samplers.name_for_config(model_info.scheduler_config(self.stage.model))
        return (shipped, False) if shipped else (ASSUMED_SAMPLER, True)


def job(project: Project, upto: int | None = None, ran: dict[int, StageRan] | None = None) -> list[JobStage]:
    """The enabled stages up to and including project.stages[upto] (all when None). `ran`:
    the run's records by stage index; a stage with one takes the handoff and strength
    that ran, never re-derived."""
    enabled = [(i, s) for i, s in project.enabled_stages() if upto is None or i <= upto]
    sizes = stage_sizes(project, {i: model_info.info_for(s.model).multiple for i, s in enabled})
    out: list[JobStage] = []
    for pos, (i, stage) in enumerate(enabled):
        fam = model_info.info_for(stage.model).fam
        if pos == 0:
            handoff = "pixel" if project.init_image else "generate"
            size_in = sizes.get(i, (project.width, project.height))
        else:
            handoff = expected_handoff(out[-1], stage, fam)
            size_in = out[-1].size
        record = (ran or {}).get(i)
        strength = stage.strength
        if record is not None and record.ran != "upscale":
            # An upscaler stage keeps the pixel handoff here (JobStage.upscales tells it, from
            # this record, and the ComfyUI writer writes the model upscale).
            handoff, strength = record.ran, record.strength
        out.append(JobStage(i, stage, handoff, sizes.get(i, size_in), size_in,
                            stage.effective_prompt(project.prompt), stage.effective_negative(project.negative_prompt),
                            stage.effective_seed(project.seed), fam, strength, record))
    return out


def is_upscaler(ref: str) -> bool:
    """An upscaler file (or the demo upscaler) as far as metadata tells (no weights read)."""
    from core import demo

    text = (ref or "").strip()
    return text == demo.UPSCALER or text.lower().endswith(".pth") or model_info.info_for(text).fam is UPSCALER


def expected_handoff(prev: JobStage, stage: Stage, fam: Family | None) -> str:
    """What core.planning will choose, as far as families tell: `auto` is an ensemble for
    models built for one (SDXL base + refiner), pixel otherwise (a latent handoff needs the
    VAE weights compared, so a file that describes the job says pixel, which always runs)."""
    if stage.upscale != 1:
        return "pixel"
    if stage.handoff == "auto":
        from core.planning import auto_ensembles

        return "ensemble" if fam and prev.family and auto_ensembles(stage, prev.family, fam) else "pixel"
    return stage.handoff


def display_name(ref: str) -> str:
    """How other tools name a model: a checkpoint's file stem, a folder's name, else the ref."""
    text = (ref or "").strip()
    if text.lower().endswith((".safetensors", ".ckpt")):
        return Path(text.replace("\\", "/")).stem
    path = Path(text).expanduser()
    if text.startswith(("/", "~", ".")) or (len(text) > 1 and text[1] == ":"):
        return path.name
    return text


def file_name(ref: str) -> str:
    """The name ComfyUI's loaders take: a checkpoint's file name, a folder's name, else the ref."""
    text = (ref or "").strip()
    if text.lower().endswith((".safetensors", ".ckpt")):
        return Path(text.replace("\\", "/")).name
    return display_name(text)
