"""Ready-made chains for the seed workflows, and which positions each family can take.

Each preset builds a fresh Project (callers may edit it freely). `families` names the
family of each stage's model and `handoffs` the handoff core.planning.plan() picks for
each stage ("generate" for the first), so the UI can show them before any download and
the tests can check them. Models are real Hugging Face Hub ids, sizes the base model's
native size, steps and guidance what each model's card uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.families import FAMILIES
from core.project import Project, Stage

Z_IMAGE_TURBO = "Tongyi-MAI/Z-Image-Turbo"
Z_IMAGE = "Tongyi-MAI/Z-Image"
ERNIE_IMAGE_TURBO = "baidu/ERNIE-Image-Turbo"
FLUX1_DEV = "black-forest-labs/FLUX.1-dev"
FLUX1_SCHNELL = "black-forest-labs/FLUX.1-schnell"
CHROMA1_HD = "lodestones/Chroma1-HD"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"
SD35_LARGE = "stabilityai/stable-diffusion-3.5-large"
FLUX2_DEV = "black-forest-labs/FLUX.2-dev"

DETAIL_SUFFIX = "highly detailed, sharp focus, fine texture, natural skin and materials"
PROMPT = "a lighthouse on a rocky coast at dusk, waves breaking, warm light in the windows"


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    note: str
    build: Callable[[], Project]
    families: tuple[str, ...]  # core.families key of each stage's model
    handoffs: tuple[str, ...]  # the handoff plan() picks for each stage
    complete: bool = True  # False: a slot the user fills in (it does not validate as it is)

    def project(self) -> Project:
        return self.build()


def _turbo(steps: int, strength: float, handoff: str = "pixel", suffix: str = "") -> Stage:
    """Z-Image Turbo as a refiner: distilled, so no classifier-free guidance."""
    return Stage(Z_IMAGE_TURBO, steps=steps, guidance=0.0, handoff=handoff, strength=strength,
                 prompt_suffix=suffix, name="Z-Image Turbo")


def _project(*stages: Stage, size: int = 1024, negative: str = "") -> Project:
    return Project(prompt=PROMPT, negative_prompt=negative, width=size, height=size, seed=0, stages=list(stages))


def _demo() -> Project:
    from core.defaults import default_project

    return default_project()


def _ernie_zturbo() -> Project:
    return _project(
        Stage(ERNIE_IMAGE_TURBO, steps=8, guidance=1.0, name="ERNIE-Image Turbo"),
        _turbo(4, 0.35),
    )


def _zimage_base_turbo() -> Project:
    return _project(
        Stage(Z_IMAGE, steps=30, guidance=4.0, name="Z-Image"),
        _turbo(8, 0.15, handoff="latent"),
    )


def _flux_dev_zturbo() -> Project:
    return _project(
        Stage(FLUX1_DEV, steps=28, guidance=3.5, name="FLUX.1 dev"),
        _turbo(8, 0.5, suffix=DETAIL_SUFFIX),
    )


def _flux_schnell_zturbo() -> Project:
    return _project(
        Stage(FLUX1_SCHNELL, steps=4, guidance=0.0, name="FLUX.1 schnell"),
        _turbo(8, 0.5, suffix=DETAIL_SUFFIX),
    )


def _chroma_zturbo() -> Project:
    return _project(
        Stage(CHROMA1_HD, steps=40, guidance=3.0, name="Chroma1-HD"),
        _turbo(8, 0.4, suffix=DETAIL_SUFFIX),
        negative="low quality, blurry, deformed",
    )


def _sdxl_ensemble() -> Project:
    return _project(
        Stage(SDXL_BASE, steps=40, guidance=5.0, name="SDXL base"),
        Stage(SDXL_REFINER, steps=40, guidance=5.0, handoff="ensemble", switch_at=0.8, name="SDXL refiner"),
        negative="blurry, low quality",
    )


def _sd35_zturbo() -> Project:
    return _project(
        Stage(SD35_LARGE, steps=28, guidance=3.5, name="SD 3.5 Large"),
        _turbo(8, 0.35, suffix=DETAIL_SUFFIX),
    )


def _flux2_zturbo() -> Project:
    return _project(
        Stage(FLUX2_DEV, steps=50, guidance=4.0, name="FLUX.2 dev"),
        _turbo(8, 0.3, suffix=DETAIL_SUFFIX),
    )


def _ernie_flux2() -> Project:
    # FLUX.2 as a refiner, as ComfyUI users run it (VAE encode, KSampler at denoise 0.3): here
    # the two share the FLUX.2 VAE, so not even the encode is needed.
    return _project(
        Stage(ERNIE_IMAGE_TURBO, steps=8, guidance=1.0, name="ERNIE-Image Turbo"),
        Stage(FLUX2_DEV, steps=10, guidance=4.0, handoff="latent", strength=0.3, name="FLUX.2 dev"),
    )


def _custom() -> Project:
    return _project(Stage("", steps=30, guidance=5.0, name="custom"))


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in [
        Preset("demo", "Demo (offline)",
               "The small built-in base and refiner: runs anywhere with no download. "
               "An ensemble: the base runs 80% of one schedule, the refiner the rest.",
               _demo, ("sdxl", "sdxl-refiner"), ("generate", "ensemble")),
        Preset("ernie-zturbo", "ERNIE-Image Turbo → Z-Image Turbo",
               "ERNIE-Image Turbo composes in 8 steps; Z-Image Turbo re-runs the last 35% for texture. "
               "ERNIE's VAE (FLUX.2's) is not Z-Image's, so the image is handed over as pixels.",
               _ernie_zturbo, ("ernie", "zimage"), ("generate", "pixel")),
        Preset("zimage-base-turbo", "Z-Image → Z-Image Turbo",
               "Z-Image base composes with full guidance; Turbo polishes at strength 0.15. "
               "Both share one VAE, so the latents are handed over with no decode and encode.",
               _zimage_base_turbo, ("zimage", "zimage"), ("generate", "latent")),
        Preset("flux-dev-zturbo", "FLUX.1 dev → Z-Image Turbo",
               "FLUX.1 dev at guidance 3.5, then Z-Image Turbo at strength 0.5 with detail terms "
               "added to the prompt. Handed over as pixels (Flux's latents come back packed).",
               _flux_dev_zturbo, ("flux", "zimage"), ("generate", "pixel")),
        Preset("flux-schnell-zturbo", "FLUX.1 schnell → Z-Image Turbo",
               "FLUX.1 schnell in 4 steps with no guidance, then Z-Image Turbo at strength 0.5 with "
               "detail terms. Handed over as pixels.",
               _flux_schnell_zturbo, ("flux", "zimage"), ("generate", "pixel")),
        Preset("chroma-zturbo", "Chroma → Z-Image Turbo",
               "Chroma1-HD with a negative prompt, then Z-Image Turbo at strength 0.4 with detail terms. "
               "Handed over as pixels.",
               _chroma_zturbo, ("chroma", "zimage"), ("generate", "pixel")),
        Preset("sdxl-ensemble", "SDXL base + refiner",
               "The ensemble of expert denoisers: the base runs the first 80% of a 40-step schedule "
               "and hands its noisy latents to the refiner, which finishes the same schedule.",
               _sdxl_ensemble, ("sdxl", "sdxl-refiner"), ("generate", "ensemble")),
        Preset("sd35-zturbo", "SD 3.5 Large → Z-Image Turbo",
               "Stable Diffusion 3.5 Large at guidance 3.5, then Z-Image Turbo at strength 0.35. "
               "SD 3.5's VAE differs from Z-Image's: handed over as pixels.",
               _sd35_zturbo, ("sd3", "zimage"), ("generate", "pixel")),
        Preset("flux2-zturbo", "FLUX.2 dev → Z-Image Turbo",
               "FLUX.2 dev composes; Z-Image Turbo refines at strength 0.3. FLUX.2's VAE is not "
               "Z-Image's, so the image is handed over as pixels.",
               _flux2_zturbo, ("flux2", "zimage"), ("generate", "pixel")),
        Preset("ernie-flux2", "ERNIE-Image Turbo → FLUX.2 dev",
               "ERNIE-Image Turbo composes in 8 steps; FLUX.2 dev re-runs the last 30% of a 10-step "
               "schedule. Both use the FLUX.2 VAE, so the latents are handed over with no decode and "
               "encode. diffusers has no FLUX.2 img2img pipeline: Handoff noises the latents to the "
               "strength's sigma and runs the rest of the schedule through the text-to-image pipeline.",
               _ernie_flux2, ("ernie", "flux2"), ("generate", "latent")),
        Preset("custom", "Custom",
               "One empty stage: choose a model (a Hub id, a local folder or a .safetensors file) "
               "and add stages after it.",
               _custom, ("",), ("generate",), complete=False),
    ]
}


def preset(key: str) -> Project:
    """A fresh project from the named preset."""
    try:
        return PRESETS[key].build()
    except KeyError:
        raise KeyError(f"no preset '{key}' (presets: {', '.join(PRESETS)})") from None


@dataclass(frozen=True)
class FamilyPositions:
    key: str
    title: str
    base: bool  # can start a chain (text to image)
    refine: bool  # can refine an image at a strength
    ensemble_group: str | None  # families in one group can split a schedule between them

    @property
    def summary(self) -> str:
        return FAMILIES[self.key].positions()


def family_positions() -> list[FamilyPositions]:
    """Which positions each family can take in a chain, read from core.families."""
    return [FamilyPositions(f.key, f.title, f.can_take("base"), f.can_take("refine"), f.ensemble_group)
            for f in FAMILIES.values()]


_PRESET_FAMILIES: dict[str, str] = {}


def preset_families() -> dict[str, str]:
    """The family key each preset declares for the Hub models it uses (the family a model
    not yet downloaded will turn out to be)."""
    if not _PRESET_FAMILIES:
        for p in PRESETS.values():
            for stage, family in zip(p.project().stages, p.families):
                if family and stage.model and not stage.model.startswith("builtin:"):
                    _PRESET_FAMILIES.setdefault(stage.model, family)
    return _PRESET_FAMILIES
