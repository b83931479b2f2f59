"""Planning a chain: which position each model takes, and which handoff each stage uses.

- generate: text to image (the first stage of a chain).
- pixel: decode to an image, then img2img at a strength (steps x strength steps run);
  a stage with an upscale factor resizes that image first (Lanczos, hires fix).
- latent: the same latent space on both sides (decided from VAE config and weights),
  so the latents are handed over and the VAE decode/encode round trip is skipped.
- ensemble: the previous stage stops part-way through one schedule and this one
  finishes the same noisy latents: SDXL base + refiner with denoising_end /
  denoising_start, flow-matching families of one group by splitting one sigma schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.errors import ModelError
from core.families import Family
from core.models import ResolvedModel
from core.project import Project, Stage, stage_sizes
from core.ran import StageRan
from core.strength import effective_steps
from core.upscale_stage import UPSCALE, check_refine_upscaler, plan_upscale
from core.upscalers import refine_overlap, tile_starts

VaeFingerprint = Callable[[ResolvedModel], "str | None"]


def family_position_problem(family: Family | None, position: str, denoiser_only: bool = False, name: str = "") -> str | None:
    """The one rule for chain positions: why a model cannot take `position` ("base": it
    starts the chain; "refine": it refines the previous stage's image or the init image),
    or None when it can, or when its family is not known yet."""
    if denoiser_only:
        return (f"{name or 'this file'} holds only a transformer/UNet: it needs a base pipeline (VAE and text "
                "encoders) and cannot be a stage's model on its own")
    if family is None or family.can_take(position):
        return None
    if position == "base":
        return (f"{family.title} models cannot start a chain (they can take: {family.positions()}): put a base "
                "model before this stage, or open an init image for it to refine")
    return (f"{family.title} models cannot refine an image at a strength (they can take: {family.positions()}): "
            "use it as the first stage, or choose a model that can refine")


def auto_ensembles(stage: Stage, previous: Family, family: Family) -> bool:
    """Whether plan() makes a stage's "auto" handoff from a `previous`-family model into a
    `family` one an ensemble (the schedule split at switch_at) rather than a latent or
    pixel refine at a strength: only into a model built to finish another's schedule (the
    SDXL refiner) after one of its group, at the same size. (A tiled refine on either side
    or an upscaler before it makes any handoff pixels, before this is asked.) The sweep's
    axes ask here too."""
    return stage.upscale == 1 and family.ensembles_with(previous) and family.auto_ensembles()


def chain_position(position: int, has_init_image: bool) -> str:
    """The position the stage at `position` among the enabled stages takes."""
    return "base" if position == 0 and not has_init_image else "refine"


@dataclass
class StagePlan:
    index: int  # in project.stages
    position: int  # among enabled stages
    stage: Stage
    resolved: ResolvedModel
    handoff: str  # "generate", "pixel", "latent", "ensemble"
    note: str = ""
    stop_at: float | None = None  # set when the next stage finishes this one's schedule
    steps: int = 0  # schedule length passed to the pipeline
    # Flow ensemble: the steps the base runs before it hands over (set on the base) or
    # ran before this stage took over (set on the refiner); None when not split.
    split: int | None = None
    # Flow ensemble: filled by the base's run with its full sigma schedule, read by the refiner.
    schedule: dict | None = None
    size: tuple[int, int] = (0, 0)  # (width, height) this stage works at (project.stage_sizes)
    # What the next stage takes from this one: "image", "latents" or "both" (set by plan()).
    hands_over: str = "image"
    strength: float = 0.0  # pixel/latent: the share of the schedule redone (the stage's, unless plan() says)
    kind: str = "diffusion"  # or UPSCALE: the stage's model is an upscaler (core.upscale_stage)

    @property
    def flow_ensemble(self) -> bool:
        return self.handoff == "ensemble" and self.family.flow

    @property
    def tiled(self) -> bool:
        """A pixel refine run in overlapping tiles (core.tiled_refine)."""
        return bool(self.stage.refine_tile) and self.handoff == "pixel"

    def tile_count(self) -> int:
        """How many tiles the stage runs (1 when it is not tiled or fits one)."""
        if not self.tiled:
            return 1
        tile, (width, height) = self.stage.refine_tile, self.size
        overlap = refine_overlap(tile)
        return len(tile_starts(width, tile, overlap)) * len(tile_starts(height, tile, overlap))

    @property
    def family(self) -> Family:
        return self.resolved.family

    @property
    def role(self) -> str:
        # A flow ensemble's refiner continues given latents with the text-to-image pipeline,
        # and FLUX.2 and ERNIE-Image refine at a strength through it.
        via_generate = self.flow_ensemble or self.family.refines_via_generate
        return "generate" if self.handoff == "generate" or via_generate else "refine"

    def ran(self) -> StageRan:
        """This stage's record of what runs, for the files that describe the job. A first
        stage that generates (or upscales) asks for nothing: it is recorded as what runs;
        one that refines an init image keeps its setting as the ask (a latent or ensemble
        one ran as pixels, and says why)."""
        asked = self.stage.handoff if self.position > 0 or self.handoff == "pixel" else self.handoff
        return StageRan(self.index, asked, self.handoff, self.strength, self.note)

    def runs_no_step(self) -> bool:
        """An ensemble switching at the very end leaves this stage no step: the previous
        stage's image stands."""
        return self.handoff == "ensemble" and (self.stage.switch_at >= 1 or self.flow_ensemble and self.expected_steps() == 0)

    def expected_steps(self) -> int:
        """Steps this stage will run, for overall progress (the pipeline reports exact counts)."""
        if self.kind == UPSCALE:
            return 1  # its tiles count as one step
        if self.handoff == "generate":
            if self.split is not None:
                return self.split
            return max(1, round(self.steps * (self.stop_at or 1.0)))
        if self.flow_ensemble:
            return self.steps - (self.split if self.split is not None else self.steps)
        if self.handoff == "ensemble":
            return max(0, round(self.steps * (1 - self.stage.switch_at)))
        return max(1, effective_steps(self.steps, self.strength)) * self.tile_count()


def plan(project: Project, resolved: list[ResolvedModel], vae_fingerprint: VaeFingerprint) -> list[StagePlan]:
    """Decide each enabled stage's handoff. Raises ModelError for chains that cannot run."""
    enabled = project.enabled_stages()
    sizes = stage_sizes(project, {i: r.family.multiple for (i, _), r in zip(enabled, resolved)})
    plans: list[StagePlan] = []
    for pos, ((index, stage), model) in enumerate(zip(enabled, resolved)):
        fam = model.family
        where = f"stage {index + 1} ({fam.title})"
        p = StagePlan(index, pos, stage, model, "generate", steps=stage.steps, size=sizes[index],
                      strength=stage.strength)
        if model.is_upscaler:
            if stage.refine_tile:
                raise ModelError(f"stage {index + 1}: an upscaler stage runs in its own tiles ('tile'); "
                                 "refine_tile is for a stage that refines")
            plan_upscale(p, plans[-1] if plans else None, project.init_image is not None)
            plans.append(p)
            continue
        check_refine_upscaler(p)
        problem = family_position_problem(fam, chain_position(pos, project.init_image is not None))
        if problem:
            raise ModelError(f"{where}: {problem}")
        if pos == 0:
            if project.init_image is not None:
                # An image arrives as pixels: no latents or schedule came before it.
                p.handoff = "pixel"
                if stage.handoff in ("latent", "ensemble"):
                    p.note = f"an init image is handed over as pixels: '{stage.handoff}' handed over as pixels"
            plans.append(p)
            continue
        prev = plans[-1]
        asked = stage.handoff
        if prev.kind == UPSCALE:
            p.handoff = "pixel"
            if asked not in ("auto", "pixel"):
                p.note = f"an upscaler hands over an image: '{asked}' handed over as pixels"
            plans.append(p)
            continue
        same_schedule = fam.ensembles_with(prev.family)
        if stage.refine_tile or prev.tiled:
            p.handoff, p.strength, p.note = _tiled_as_pixel(prev, p)
        elif asked == "ensemble":
            if not same_schedule:
                raise ModelError(
                    f"{where}: an ensemble handoff splits one schedule between models built for it "
                    f"(SDXL base + refiner, Z-Image + Z-Image Turbo, Flux.1 + Chroma); {prev.family.title} → {fam.title} "
                    "can use latent or pixel"
                )
            p.handoff = "ensemble"
        elif asked == "auto" and auto_ensembles(stage, prev.family, fam):
            p.handoff = "ensemble"
        elif stage.upscale != 1:
            # Latents are not resized here (A1111's latent upscale blurs): the image is.
            p.handoff = "pixel"
            if asked == "latent":
                p.note = f"upscaling ×{stage.upscale:g} resizes the image: handed over as pixels"
        elif asked in ("latent", "auto"):
            p.handoff, p.note = _latent_or_pixel(prev, p, vae_fingerprint, asked)
        else:
            p.handoff = "pixel"
        if p.handoff == "ensemble":
            vaes_differ = _vaes_differ(prev, p, vae_fingerprint)
            if vaes_differ and stage.switch_at < 1:
                # Noisy latents mean nothing in another latent space: redo the same share of
                # the schedule from the decoded image instead (at least one step of it).
                p.handoff, p.strength = "pixel", max(round(1 - stage.switch_at, 4), 1 / stage.steps)
                p.note = (f"ensemble impossible ({vaes_differ}): handed over as pixels at strength {p.strength:g}")
        if p.handoff == "ensemble":
            # One schedule: the refiner runs the tail of the previous stage's steps.
            p.steps = prev.steps
            if fam.flow:
                _plan_flow_ensemble(prev, p, where)
            elif stage.switch_at < 1:
                prev.stop_at = stage.switch_at
            if stage.steps != prev.steps:
                p.note = f"ensemble runs one {prev.steps}-step schedule; this stage's own step count is not used"
        # An ensemble that leaves its refiner no step keeps the previous image as the result.
        prev.hands_over = "image" if p.handoff == "pixel" or p.runs_no_step() else "latents"
        plans.append(p)
    return plans


def _tiled_as_pixel(prev: StagePlan, p: StagePlan) -> tuple[str, float, str]:
    """The handoff, strength and note of a stage next to a tiled refine: each tile is a
    pixel img2img, and a tiled stage hands over a blended image, never latents. An asked
    ensemble redoes the same share of the schedule from the image (as when VAEs differ)."""
    asked, stage = p.stage.handoff, p.stage
    why = "a tiled refine refines pixels" if stage.refine_tile else "a tiled refine hands over an image"
    if asked == "ensemble":
        strength = max(round(1 - stage.switch_at, 4), 1 / stage.steps)
        return "pixel", strength, f"{why}: ensemble handed over as pixels at strength {strength:g}"
    if asked == "latent":
        return "pixel", p.strength, f"{why}: latent handed over as pixels"
    return "pixel", p.strength, ""


def split_steps(steps: int, switch_at: float) -> int:
    """Steps of a `steps`-long schedule the base runs before a flow ensemble's refiner takes
    over: switch_at is the fraction of the steps (not of the noise level), at least one."""
    return min(steps, max(1, round(steps * switch_at)))


def _vaes_differ(prev: StagePlan, p: StagePlan, vae_fingerprint: VaeFingerprint) -> str:
    """Why two stages do not share one latent space ("" when they do, or when a VAE cannot
    be compared: a single-file checkpoint of a family built for this pairing). Decided from
    the VAEs' configs and weights, as the latent handoff decides it, never from names."""
    a, b = vae_fingerprint(prev.resolved), vae_fingerprint(p.resolved)
    return "the two models' VAEs differ in config or weights" if a is not None and b is not None and a != b else ""


def _plan_flow_ensemble(prev: StagePlan, p: StagePlan, where: str) -> None:
    if not p.family.ensemble_refiner:
        raise ModelError(f"{where}: an ensemble handoff into {p.family.title} is not supported yet; use latent or pixel")
    if prev.handoff != "generate":
        raise ModelError(
            f"{where}: a flow-matching ensemble splits the schedule of a stage that generates; "
            f"the stage before it refines ({prev.handoff}), so use latent or pixel here"
        )
    k = split_steps(prev.steps, p.stage.switch_at)
    p.split = k
    if k < prev.steps:
        prev.split = k
        prev.schedule = p.schedule = {}


def _latent_or_pixel(prev: StagePlan, p: StagePlan, vae_fingerprint: VaeFingerprint, asked: str) -> tuple[str, str]:
    fam = p.family
    if fam.latent_input is None:
        note = f"latent handoff into {fam.title} is not supported yet: handed over as pixels"
        return "pixel", note if asked == "latent" else ""
    a, b = vae_fingerprint(prev.resolved), vae_fingerprint(p.resolved)
    if a is not None and a == b:
        return "latent", ""
    why = "the VAEs differ in config or weights" if a and b else "a VAE could not be compared"
    return "pixel", (f"latent handoff impossible ({why}): handed over as pixels" if asked == "latent" else "")
