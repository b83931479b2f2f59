"""Flow-matching ensemble: one sigma schedule split between two Z-Image models.

The base runs the first k steps of its (shifted) schedule and stops with the noisy
latents at sigma_k; the refiner continues from exactly those latents with sigmas[k:],
its own shifting turned off, no noise added. The tiny pair here is shifted differently
on each side (base: resolution-dependent mu; refiner: static shift 3), as Z-Image base
and Turbo may be, so a refiner that re-shifted its part would not match the reference."""
from __future__ import annotations

import numpy as np
import pytest

from core import events as ev
from core.planning import split_steps
from core.project import Project, Stage
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"
SIZE, SEED, STEPS = 32, 11, 6


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests import tiny_pipelines as tp

    root = tmp_path_factory.mktemp("flow-ensemble")
    base = tp.build_zimage_with_scheduler(root / "zbase", seed=0, vae_seed=7, use_dynamic_shifting=True)
    turbo = tp.build_zimage_with_scheduler(root / "zturbo", seed=20, vae_seed=7, shift=3.0)
    return base, turbo


@pytest.fixture(scope="module")
def other_vae(tmp_path_factory):
    from tests import tiny_pipelines as tp

    return tp.build_zimage(tmp_path_factory.mktemp("flow-ensemble-other") / "z", seed=40, vae_seed=8)


def project(base, refiner, switch_at, steps=STEPS, refiner_steps=STEPS, guidance=0.0) -> Project:
    """`guidance` is the base's; the refiner runs without (Z-Image Turbo, Chroma here)."""
    return Project(prompt=PROMPT, width=SIZE, height=SIZE, seed=SEED, stages=[
        Stage(str(base), steps=steps, guidance=guidance),
        Stage(str(refiner), steps=refiner_steps, guidance=0.0, handoff="ensemble", switch_at=switch_at, seed=5),
    ])


def base_alone(base_dir, guidance=0.0):
    return load(base_dir)(PROMPT, num_inference_steps=STEPS, guidance_scale=guidance, height=SIZE, width=SIZE,
                          generator=generator(SEED)).images[0]


def reference_split(base_dir, refiner_dir, k):
    """The same split written with plain diffusers calls."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.z_image.pipeline_z_image import calculate_shift

    base = load(base_dir)
    # The full schedule, shifted once the way the base's pipeline shifts it.
    cfg = base.scheduler.config
    latent_side = 2 * (SIZE // (base.vae_scale_factor * 2))
    mu = calculate_shift((latent_side // 2) ** 2, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift,
                         cfg.max_shift)
    full = FlowMatchEulerDiscreteScheduler.from_config(cfg)
    full.set_timesteps(sigmas=torch.linspace(1.0, 1 / STEPS, STEPS).tolist(), mu=mu)  # Z-Image's default spacing
    sigmas = full.sigmas  # STEPS values and the terminal 0

    def stop_after_k(pipe, i, t, kw):
        assert torch.equal(pipe.scheduler.sigmas, sigmas)
        if i + 1 == k:
            pipe._interrupt = True
        return kw

    latents = base(PROMPT, num_inference_steps=STEPS, guidance_scale=0.0, height=SIZE, width=SIZE,
                   generator=generator(SEED), output_type="latent", callback_on_step_end=stop_after_k).images
    refiner = load(refiner_dir)
    refiner.scheduler = FlowMatchEulerDiscreteScheduler.from_config(refiner.scheduler.config, shift=1.0,
                                                                    use_dynamic_shifting=False)
    image = refiner(PROMPT, sigmas=sigmas[k:-1].tolist(), latents=latents, guidance_scale=0.0, height=SIZE,
                    width=SIZE, generator=generator(5)).images[0]
    return image, latents


def test_switch_at_the_end_equals_the_base_alone(pair, tmp_path):
    base, turbo = pair
    done = of(run_job(project(base, turbo, 1.0), tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "ensemble"]
    assert done[1].steps_run == 0 and done[0].steps_run == STEPS
    assert np.array_equal(pixels(done[1].image), pixels(base_alone(base)))


def test_split_at_half_equals_plain_diffusers_split(pair, tmp_path):
    base, turbo = pair
    events = run_job(project(base, turbo, 0.5, refiner_steps=9), tmp_path)
    done = of(events, ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "ensemble"]
    assert "one 6-step schedule" in of(events, ev.StageStarted)[1].note
    expected, _ = reference_split(base, turbo, split_steps(STEPS, 0.5))
    assert np.array_equal(pixels(done[1].image), pixels(expected))


def test_base_and_refiner_steps_make_the_full_schedule(pair, tmp_path):
    base, turbo = pair
    for switch_at in (0.5, 0.7, 0.2):
        events = run_job(project(base, turbo, switch_at), tmp_path / str(switch_at))
        done = of(events, ev.StageFinished)
        k = split_steps(STEPS, switch_at)
        assert (done[0].steps_run, done[1].steps_run) == (k, STEPS - k)
        assert done[0].steps_run + done[1].steps_run == STEPS
        totals = {e.index: e.total for e in of(events, ev.Step)}
        assert totals == {0: k, 1: STEPS - k}
        assert of(events, ev.Step)[-1].overall == pytest.approx(1.0)


def test_split_differs_from_the_base_alone(pair, tmp_path):
    base, turbo = pair
    done = of(run_job(project(base, turbo, 0.5), tmp_path), ev.StageFinished)
    assert not np.array_equal(pixels(done[1].image), pixels(base_alone(base)))


def test_one_model_split_with_itself_is_the_base_alone(pair, tmp_path):
    """The refiner takes the very schedule and latents the base stopped at: a model that
    finishes its own schedule gives the base's image bit for bit."""
    base, _ = pair
    done = of(run_job(project(base, base, 0.5), tmp_path), ev.StageFinished)
    assert done[1].steps_run == STEPS - split_steps(STEPS, 0.5)
    assert np.array_equal(pixels(done[1].image), pixels(base_alone(base)))


def test_auto_stays_latent_and_ensemble_needs_the_same_latent_space(pair, other_vae, tmp_path):
    base, turbo = pair
    p = project(base, turbo, 0.5)
    p.stages[1].handoff, p.stages[1].strength = "auto", 0.5
    assert of(run_job(p, tmp_path / "auto"), ev.StageStarted)[1].handoff == "latent"
    # A Z-Image model with another VAE cannot continue these noisy latents: it redoes the
    # same share of the schedule from the decoded image instead, and says so.
    other = project(other_vae, base, 0.5)
    events = run_job(other, tmp_path / "vae")
    started = of(events, ev.StageStarted)[1]
    assert started.handoff == "pixel" and "ensemble impossible (the two models' VAEs differ" in started.note
    assert of(events, ev.StageFinished)[1].steps_run == int(STEPS * 0.5)


# ---------------------------------------------------------------- Flux.1 -> Chroma
# The same split between Flux.1 and Chroma, whose pipelines carry packed latents: the base's
# interrupted latents are unpacked to hand over and packed again for Chroma.

FLUX_GUIDANCE = 3.5


def test_flux_to_chroma_switch_at_the_end_equals_flux_alone(family_models, tmp_path):
    done = of(run_job(project(family_models["flux"], family_models["chroma"], 1.0, guidance=FLUX_GUIDANCE), tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "ensemble"]
    assert (done[0].steps_run, done[1].steps_run) == (STEPS, 0)
    assert np.array_equal(pixels(done[1].image), pixels(base_alone(family_models["flux"], FLUX_GUIDANCE)))


def test_flux_split_with_itself_is_flux_alone(family_models, tmp_path):
    flux = family_models["flux"]
    p = project(flux, flux, 0.5, guidance=FLUX_GUIDANCE)
    p.stages[1].guidance, p.stages[1].seed = FLUX_GUIDANCE, None
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert done[1].steps_run == STEPS - split_steps(STEPS, 0.5)
    assert np.array_equal(pixels(done[1].image), pixels(base_alone(flux, FLUX_GUIDANCE)))


def test_flux_to_chroma_split_equals_plain_diffusers(family_models, tmp_path):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    events = run_job(project(family_models["flux"], family_models["chroma"], 0.5, guidance=FLUX_GUIDANCE), tmp_path)
    done = of(events, ev.StageFinished)
    k = split_steps(STEPS, 0.5)
    assert (done[0].steps_run, done[1].steps_run) == (k, STEPS - k)

    seen = {}

    def stop_after_k(pipe, i, t, kw):
        if i == 0:
            seen["sigmas"] = pipe.scheduler.sigmas.clone()  # Flux's shifted schedule, terminal 0 included
        if i + 1 == k:
            pipe._interrupt = True
        return kw

    packed = load(family_models["flux"])(PROMPT, num_inference_steps=STEPS, guidance_scale=FLUX_GUIDANCE, height=SIZE,
                                         width=SIZE, generator=generator(SEED), output_type="latent",
                                         callback_on_step_end=stop_after_k).images
    chroma = load(family_models["chroma"])
    chroma.scheduler = FlowMatchEulerDiscreteScheduler.from_config(chroma.scheduler.config, shift=1.0,
                                                                   use_dynamic_shifting=False)
    expected = chroma(PROMPT, sigmas=seen["sigmas"][k:-1].tolist(), latents=packed, guidance_scale=0.0,
                      height=SIZE, width=SIZE, generator=generator(5)).images[0]
    assert torch.is_tensor(packed) and packed.ndim == 3
    assert np.array_equal(pixels(done[1].image), pixels(expected))
    assert not np.array_equal(pixels(done[1].image), pixels(base_alone(family_models["flux"], FLUX_GUIDANCE)))


def test_flux_ensemble_needs_the_same_vae(family_models, tmp_path):
    p = project(family_models["flux_other_vae"], family_models["chroma"], 0.5, guidance=FLUX_GUIDANCE)
    events = run_job(p, tmp_path)
    started = of(events, ev.StageStarted)[1]
    assert started.handoff == "pixel" and "ensemble impossible (the two models' VAEs differ" in started.note
    # The base ran its whole schedule and handed over a decoded image, not noisy latents.
    done = of(events, ev.StageFinished)
    assert done[0].steps_run == STEPS and not done[0].preview
