"""What the engine reports while a job runs. Every front end consumes these same events.

Images travel as PIL images (never Qt types), so a worker thread can hand them to the
window, which converts them on its own thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    stage_count: int
    out_dir: Path
    device: str  # e.g. "cuda:0 (NVIDIA H100)", "cpu"


@dataclass(frozen=True)
class StageStarted:
    index: int  # position in project.stages
    position: int  # 0-based position among the enabled stages of this job
    label: str
    model: str
    handoff: str  # the handoff actually used: "generate", "pixel", "latent" or "ensemble"
    note: str = ""  # why the handoff differs from the one asked for, if it does


@dataclass(frozen=True)
class Loading:
    index: int
    what: str  # a short human description: "loading stabilityai/sdxl-vae (vae)"


@dataclass(frozen=True)
class Step:
    index: int
    step: int  # 1-based
    total: int
    overall: float  # 0..1 over the whole job, weighted by steps


@dataclass(frozen=True)
class StagePreview:
    """A cheap look at the stage's latents part-way (core.previews), every few steps."""

    index: int
    step: int  # 1-based, the step the latents are from
    image: Any  # PIL.Image.Image at the stage's output size


@dataclass(frozen=True)
class StageFinished:
    index: int
    label: str
    image: Any  # PIL.Image.Image
    input_image: Any  # PIL image this stage refined, or None for a generate stage
    path: Path
    load_seconds: float
    denoise_seconds: float
    decode_seconds: float
    total_seconds: float
    peak_memory: int  # bytes
    memory_kind: str  # what peak_memory measures: "VRAM (torch)", "process RAM"
    steps_run: int
    handoff: str
    # The image is a cheap preview of latents the next stage took over (core.previews),
    # not a VAE decode; its PNG says so in its recipe. The decode follows once the job's
    # final image is written (core.deferred_decode), as a StageImageUpdated.
    preview: bool = False
    # The stage did not run: its output was reused from an earlier run (core.stage_store).
    reused: bool = False
    # A refine stage's drift from its input (core.drift): SSIM on luminance, mean ΔE in
    # CIELAB, and why it may have changed composition or text; None for other stages, and
    # for a latent refine until its input's decode exists (then a StageImageUpdated has it).
    drift: Any = None  # core.drift.Drift
    # What ran (core.ran.StageRan, from the plan): the handoff asked for, the one that ran,
    # the strength it ran at and why it differs; None for a stage reported otherwise.
    ran: Any = None

    @property
    def ssim(self) -> float | None:
        return None if self.drift is None else self.drift.ssim

    @property
    def color_shift(self) -> float | None:
        return None if self.drift is None else self.drift.delta_e


@dataclass(frozen=True)
class StageImageUpdated:
    """A finished stage, updated after the job's final image was written (core.deferred_decode):
    the VAE decode of the latents it handed over replaces its preview (`image`, its PNG at
    `path` rewritten), or the stage that took those latents now has that decode as its
    input and its drift measured against it. Fields left None did not change."""

    index: int
    label: str
    image: Any  # PIL image: the stage's image now
    path: Path  # its PNG, rewritten atomically before this event
    preview: bool = False  # still a preview (its decode failed)
    input_image: Any = None  # the decode of what this stage took in, when that replaced a preview
    drift: Any = None  # core.drift.Drift: this refine's drift, measured against the decode
    decode_seconds: float = 0.0  # the decode's own time, spent after the final image


@dataclass(frozen=True)
class StageSaved:
    """The stage's PNG is on disk (written on a thread of its own, core.png_writer)."""

    index: int
    path: Path


@dataclass(frozen=True)
class Notice:
    message: str


@dataclass(frozen=True)
class Candidate:
    seed: int
    path: Path
    score: float
    image: Any = None


@dataclass(frozen=True)
class CandidatesScored:
    """The first stage's candidates, scored (core.candidates): `kept` are the seeds that
    continue through the chain, best first; `project` is the job's, for a re-pick."""

    scorer: str
    candidates: list[Candidate]
    kept: list[int]
    project: Any = None


@dataclass(frozen=True)
class JobFinished:
    paths: list[Path]
    seconds: float
    stages: list[StageFinished] = field(default_factory=list)


@dataclass(frozen=True)
class JobFailed:
    message: str
    detail: str = ""  # a traceback for the log, never shown as the headline


@dataclass(frozen=True)
class JobCancelled:
    at_stage: int | None


Event = (JobStarted | CandidatesScored | StageStarted | Loading | Step | StagePreview | StageFinished
         | StageImageUpdated | StageSaved | Notice | JobFinished | JobFailed | JobCancelled)
