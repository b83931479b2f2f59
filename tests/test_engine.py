"""The engine on tiny real pipelines: every handoff, sharing, seeds, cancellation,
and bit-identity with the plain diffusers calls a user would otherwise write."""
from __future__ import annotations

import numpy as np
import pytest

from core import events as ev
from core.engine import CancelToken
from core.models import ModelCache
from core.project import Project, Stage
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"


def project(*stages, size=32, seed=11, **kw) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=list(stages), **kw)


def test_sd_generate_then_pixel_refine_equals_plain_diffusers(tiny_models, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=6, guidance=5.0), Stage(sd, steps=8, guidance=4.0, handoff="pixel", strength=0.5, seed=99))
    models = ModelCache()
    events = run_job(p, tmp_path, models)
    done = of(events, ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "pixel"]
    assert len(models.loaded) == 1, "a model used by two stages loads once"

    base = load(tiny_models["sd"])
    first = base(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32, generator=generator(11)).images[0]
    refine = StableDiffusionImg2ImgPipeline.from_pipe(base)
    second = refine(PROMPT, image=first, strength=0.5, num_inference_steps=8, guidance_scale=4.0,
                    generator=generator(99)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(second))
    assert done[1].steps_run == 4  # steps x strength
    assert done[1].input_image is done[0].image


def test_sdxl_ensemble_equals_denoising_end_start_and_shares_components(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=10, guidance=5.0), Stage(ref_dir, steps=10, handoff="ensemble", switch_at=0.8))
    models = ModelCache()
    done = of(run_job(p, tmp_path, models), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "ensemble"]
    base_m, ref_m = (models.loaded[k] for k in models.loaded)
    assert ref_m.pipe.vae is base_m.pipe.vae
    assert ref_m.pipe.text_encoder_2 is base_m.pipe.text_encoder_2
    assert ref_m.pipe.unet is not base_m.pipe.unet

    base, refiner = load(tiny_models["sdxl"]), load(tiny_models["sdxl_refiner"])
    latents = base(PROMPT, num_inference_steps=10, guidance_scale=5.0, height=32, width=32, denoising_end=0.8,
                   output_type="latent", generator=generator(11)).images
    final = refiner(PROMPT, image=latents, num_inference_steps=10, guidance_scale=5.0, denoising_start=0.8,
                    generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(final))
    assert done[0].steps_run + done[1].steps_run == 10


def test_sdxl_latent_handoff_equals_latents_as_image(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert done[1].handoff == "latent"
    base, refiner = load(tiny_models["sdxl"]), load(tiny_models["sdxl_refiner"])
    latents = base(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32, output_type="latent",
                   generator=generator(11)).images
    final = refiner(PROMPT, image=latents, strength=0.3, num_inference_steps=10, guidance_scale=5.0,
                    generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(final))


def test_sd_latent_handoff_equals_latents_as_image(tiny_models, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=6), Stage(sd, steps=8, handoff="latent", strength=0.5, seed=3))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "latent"] and done[0].preview
    base = load(tiny_models["sd"])
    latents = base(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32, output_type="latent",
                   generator=generator(11)).images
    final = StableDiffusionImg2ImgPipeline.from_pipe(base)(PROMPT, image=latents, strength=0.5, num_inference_steps=8,
                                                           guidance_scale=5.0, generator=generator(3)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(final))


def test_sdxl_refiner_pixel_handoff_equals_plain_diffusers(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="pixel", strength=0.3))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "pixel"] and not done[0].preview
    base, refiner = load(tiny_models["sdxl"]), load(tiny_models["sdxl_refiner"])
    first = base(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32,
                 generator=generator(11)).images[0]
    final = refiner(PROMPT, image=first, strength=0.3, num_inference_steps=10, guidance_scale=5.0,
                    generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(final))


def test_latent_falls_back_to_pixel_when_vaes_differ_and_says_so(tiny_models, tmp_path):
    p = project(Stage(str(tiny_models["sd"]), steps=4), Stage(str(tiny_models["sd_other"]), steps=4, handoff="latent", strength=0.5))
    events = run_job(p, tmp_path)
    started = of(events, ev.StageStarted)[1]
    assert started.handoff == "pixel" and "VAEs differ" in started.note
    assert of(events, ev.StageFinished)[1].handoff == "pixel"


def test_auto_picks_ensemble_latent_or_pixel(tiny_models, tmp_path):
    m = tiny_models
    cases = [
        ((m["sdxl"], m["sdxl_refiner"]), "ensemble"),
        ((m["zimage"], m["zimage_turbo"]), "latent"),
        ((m["sd"], m["sd"]), "latent"),
        ((m["sd"], m["sd_other"]), "pixel"),
    ]
    for (a, b), expected in cases:
        p = project(Stage(str(a), steps=4), Stage(str(b), steps=4, handoff="auto", strength=0.5))
        started = of(run_job(p, tmp_path), ev.StageStarted)
        assert started[1].handoff == expected, (a.name, b.name)


def test_zimage_latent_handoff_noises_latents_to_the_first_refine_timestep(tiny_models, tmp_path):
    """Flow matching: the handed-over latents are noised with the scheduler's scale_noise at
    the refine schedule's first timestep, exactly as the pipeline would noise an encoded image."""
    import torch
    from diffusers import ZImageImg2ImgPipeline
    from diffusers.utils.torch_utils import randn_tensor

    zb, zt = str(tiny_models["zimage"]), str(tiny_models["zimage_turbo"])
    p = project(Stage(zb, steps=4, guidance=0.0), Stage(zt, steps=8, guidance=0.0, handoff="latent", strength=0.5, seed=5))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "latent"]
    assert done[1].steps_run == 4

    base = load(tiny_models["zimage"])
    latents = base(PROMPT, num_inference_steps=4, guidance_scale=0.0, height=32, width=32, output_type="latent",
                   generator=generator(11)).images
    turbo = ZImageImg2ImgPipeline.from_pipe(load(tiny_models["zimage_turbo"]))
    # The refine schedule's first timestep, taken from a dry run of the same call.
    seen = {}
    turbo(PROMPT, image=done[0].image, strength=0.5, num_inference_steps=8, guidance_scale=0.0, height=32, width=32,
          generator=generator(5), callback_on_step_end=lambda pipe, i, t, kw: seen.setdefault("t", t) and kw or kw,
          output_type="latent")
    noise = randn_tensor(latents.shape, generator=generator(5), dtype=latents.dtype)
    # scale_noise at timestep t is the flow-matching interpolation at sigma = t / 1000.
    sigma = float(seen["t"]) / turbo.scheduler.config.num_train_timesteps
    noisy = sigma * noise + (1.0 - sigma) * latents
    final = turbo(PROMPT, image=done[0].image, latents=noisy, strength=0.5, num_inference_steps=8, guidance_scale=0.0,
                  height=32, width=32, generator=generator(5)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(final))
    assert not torch.equal(latents, noisy)


def test_zimage_pixel_refine_equals_plain_diffusers(tiny_models, tmp_path):
    from diffusers import ZImageImg2ImgPipeline

    zb, zt = str(tiny_models["zimage"]), str(tiny_models["zimage_turbo"])
    p = project(Stage(zb, steps=4, guidance=0.0), Stage(zt, steps=4, guidance=0.0, handoff="pixel", strength=0.5))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    base = load(tiny_models["zimage"])
    first = base(PROMPT, num_inference_steps=4, guidance_scale=0.0, height=32, width=32, generator=generator(11)).images[0]
    turbo = ZImageImg2ImgPipeline.from_pipe(load(tiny_models["zimage_turbo"]))
    second = turbo(PROMPT, image=first, strength=0.5, num_inference_steps=4, guidance_scale=0.0, height=32, width=32,
                   generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(second))


def test_ensemble_switch_at_one_equals_base_alone(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=6, handoff="ensemble", switch_at=1.0))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    alone = load(tiny_models["sdxl"])(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32,
                                       generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(alone))
    assert done[1].steps_run == 0


def test_same_seeds_same_images_and_stage_seed_overrides(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5))
    models = ModelCache()
    a = of(run_job(p, tmp_path / "a", models), ev.StageFinished)
    b = of(run_job(p, tmp_path / "b", models), ev.StageFinished)
    assert np.array_equal(pixels(a[1].image), pixels(b[1].image))
    p.stages[1].seed = 12345
    c = of(run_job(p, tmp_path / "c", models), ev.StageFinished)
    assert np.array_equal(pixels(a[0].image), pixels(c[0].image))
    assert not np.array_equal(pixels(a[1].image), pixels(c[1].image))


def test_each_stage_is_on_disk_when_it_is_reported_saved(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5))
    finished, saved = [], []

    def check(e):
        if isinstance(e, ev.StageFinished):
            finished.append(e.index)
        if isinstance(e, ev.StageSaved):
            # Written by the PNG writer thread, reported once it is complete, after its stage.
            assert e.path.is_file() and e.index in finished
            saved.append(e.index)
        if isinstance(e, ev.JobFinished):
            assert sorted(saved) == [0, 1] and all(path.is_file() for path in e.paths)

    events = run_job(p, tmp_path, on_event=check)
    assert saved == [0, 1] and isinstance(events[-1], ev.JobFinished)


@pytest.mark.parametrize("k", [1, 3])
def test_cancel_from_step_k_means_step_k_plus_2_never_starts(tiny_models, tmp_path, k):
    """Deterministic: the job runs on this thread (engine.execute), and the token is
    cancelled inside step k's own callback. Step k+1's denoising is already under way when
    the next check comes, so it may finish; its callback raises, and no later step starts."""
    from core.engine import OutputPlan, execute

    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=20), Stage(sd, steps=8, handoff="pixel", strength=0.5))
    models, token, events = ModelCache(), CancelToken(), []

    def emit(e):
        events.append(e)
        if isinstance(e, ev.Step) and e.index == 0 and e.step == k:
            token.cancel()

    import diffusers

    unet_calls = []
    unet = diffusers.UNet2DConditionModel.forward

    def counting(self, *args, **kwargs):
        unet_calls.append(1)
        return unet(self, *args, **kwargs)

    diffusers.UNet2DConditionModel.forward = counting
    try:
        execute(p, emit, OutputPlan.in_dir(tmp_path / "out", "job"), token, models)
    finally:
        diffusers.UNet2DConditionModel.forward = unet
    assert [e.step for e in of(events, ev.Step)] == list(range(1, k + 1))
    assert len(unet_calls) == k + 1  # step k+1 ran its UNet pass; step k+2 never started
    assert of(events, ev.JobCancelled) and not of(events, ev.StageFinished)
    again = run_job(p, tmp_path, models)
    assert len(of(again, ev.StageFinished)) == 2


def test_failures_are_readable_events(tiny_models, tmp_path):
    events = run_job(project(Stage(str(tmp_path / "nope"), steps=4)), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    assert failed and "model not found" in failed[0].message and "nope" in failed[0].message
    # A refiner-only family cannot start a chain, and the message says what it can do.
    events = run_job(project(Stage(str(tiny_models["sdxl_refiner"]), steps=4)), tmp_path, on_event=lambda e: None)
    assert "cannot start a chain" in of(events, ev.JobFailed)[0].message
    # Ensemble between families that do not share one schedule.
    p = project(Stage(str(tiny_models["sd"]), steps=4), Stage(str(tiny_models["zimage"]), steps=4, handoff="ensemble"))
    assert "ensemble" in of(run_job(p, tmp_path, on_event=lambda e: None), ev.JobFailed)[0].message


def test_init_image_refine_only_job(tiny_models, tmp_path):
    from PIL import Image

    init = tmp_path / "init.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(init)
    p = project(Stage(str(tiny_models["sd"]), steps=8, strength=0.25), init_image=str(init))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert done[0].handoff == "pixel" and done[0].image.size == (32, 32)
    assert done[0].input_image.size == (32, 32)


def test_progress_is_monotonic_and_reaches_the_end(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=6), Stage(sd, steps=6, handoff="pixel", strength=0.5))
    overall = [e.overall for e in of(run_job(p, tmp_path), ev.Step)]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)


def test_sequential_policy_keeps_one_model_and_still_shares(tiny_models, tmp_path):
    p = project(Stage(str(tiny_models["sd"]), steps=4), Stage(str(tiny_models["sd_other"]), steps=4, handoff="pixel", strength=0.5),
                memory_policy="sequential")
    models = ModelCache()
    run_job(p, tmp_path, models)
    assert [k[0] for k in models.loaded] == [str(tiny_models["sd_other"])]
    p = project(Stage(str(tiny_models["sdxl"]), steps=4), Stage(str(tiny_models["sdxl_refiner"]), steps=4, handoff="ensemble"),
                memory_policy="sequential")
    models = ModelCache()
    done = of(run_job(p, tmp_path, models), ev.StageFinished)
    (only,) = models.loaded.values()
    assert only.resolved.path == tiny_models["sdxl_refiner"] and len(done) == 2
