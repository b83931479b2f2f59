"""The 'before' of every handoff is a real image (core.deferred_decode): a stage that hands
its latents over is decoded once the final image is written, its PNG and stored output
become that decode, the front ends get a StageImageUpdated, and drift is measured against
the decode. The fitted latent-to-RGB preview is checked against real decodes here too."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core import demo
from core import events as ev
from core.drift import measure
from core.project import Project, Stage
from core.stage_store import StageStore
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"
# How far the fitted latent-to-RGB preview may be from a real decode of the demo VAE: mean
# absolute error per channel, 0..255. Measured 29 on average over the prompts below (45 at
# worst, the red circle on blue): a 4-channel VAE this small is far from linear, so a
# preview is a rough look, never what drift is measured against.
PREVIEW_MEAN_ERROR = 32.0
PREVIEW_WORST_ERROR = 48.0


def project(*stages, size=32, seed=11) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=list(stages))


def plain_decode(pipe, latents):
    """The VAE decode a diffusers pipeline does after its loop, written out."""
    import torch

    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")[0]


def recipe(path) -> dict:
    return json.loads(Image.open(path).text["handoff"])


def assert_decoded_before(events, decode) -> ev.JobFinished:
    """Stage 1's PNG, stored output and reported image are `decode`, reported after the final
    image was written; returns the job's JobFinished."""
    done = of(events, ev.StageFinished)
    assert done[0].preview, "stage 1 handed its latents over at once, with a preview"
    final_saved = next(n for n, e in enumerate(events) if isinstance(e, ev.StageSaved) and e.index == done[-1].index)
    updates = [(n, e) for n, e in enumerate(events) if isinstance(e, ev.StageImageUpdated)]
    first = next(e for _, e in updates if e.index == done[0].index)
    assert all(n > final_saved for n, _ in updates), "decoded after the final image is on disk"
    assert np.array_equal(pixels(first.image), pixels(decode)) and not first.preview
    on_disk = Image.open(done[0].path)
    assert np.array_equal(pixels(on_disk), pixels(decode))
    assert "preview" not in recipe(done[0].path)
    finished = of(events, ev.JobFinished)[0]
    assert not finished.stages[0].preview and finished.stages[0].image is first.image
    assert finished.stages[1].input_image is first.image
    return finished


def test_latent_handoff_writes_the_base_decode_and_measures_drift_against_it(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    events = run_job(p, tmp_path)
    base = load(tiny_models["sdxl"])
    latents = base(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32, output_type="latent",
                   generator=generator(11)).images
    decode = plain_decode(base, latents)
    finished = assert_decoded_before(events, decode)
    final = finished.stages[1]
    expected = measure(decode, final.image, 0.3)
    assert final.drift == expected and not final.drift.against_preview
    update = next(e for e in of(events, ev.StageImageUpdated) if e.index == final.index)
    assert update.drift == expected and update.input_image is finished.stages[0].image
    assert recipe(final.path)["drift"] == expected.to_dict()
    assert of(events, ev.StageFinished)[1].drift is None, "no drift is measured against a preview"


def test_sdxl_ensemble_writes_the_decode_of_the_noisy_latents_it_handed_over(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=10), Stage(ref_dir, steps=10, handoff="ensemble", switch_at=0.8))
    events = run_job(p, tmp_path)
    assert [d.handoff for d in of(events, ev.StageFinished)] == ["generate", "ensemble"]
    base = load(tiny_models["sdxl"])
    latents = base(PROMPT, num_inference_steps=10, guidance_scale=5.0, height=32, width=32, denoising_end=0.8,
                   output_type="latent", generator=generator(11)).images
    finished = assert_decoded_before(events, plain_decode(base, latents))
    assert finished.stages[1].drift is None  # an ensemble is one schedule, not a refine


def test_the_stored_output_becomes_the_decode(tiny_models, tmp_path):
    from core.engine import OutputPlan, run

    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    events = list(run(p, OutputPlan.in_dir(tmp_path / "first", "job"), store=StageStore(tmp_path / "stages")))
    decode = of(events, ev.StageImageUpdated)[0].image
    again = list(run(p, OutputPlan.in_dir(tmp_path / "again", "job"), from_stage=1,
                     store=StageStore(tmp_path / "stages")))  # read back from the cache file
    reused = of(again, ev.StageFinished)[0]
    assert reused.reused and not reused.preview
    assert np.array_equal(pixels(reused.image), pixels(decode))
    assert "preview" not in recipe(reused.path)
    assert not of(again, ev.StageImageUpdated), "nothing is owed: the stored image is the decode"


# ------------------------------------------------------------------ the demo family


@pytest.fixture(scope="module")
def demo_base():
    base_dir = demo.ensure_model("demo-base")
    if not str(base_dir).startswith(str(demo.DEMO_DIR)):
        pytest.skip("the trained demo weights are not in resources/demo (random stand-in only)")
    return load(base_dir)


def test_a_demo_latent_refine_at_strength_03_reports_no_colour_shift(demo_base, tmp_path):
    p = Project(prompt=PROMPT, width=64, height=64, seed=1,
                stages=[Stage(demo.BASE, steps=20), Stage(demo.REFINER, steps=20, handoff="latent", strength=0.3)])
    finished = of(run_job(p, tmp_path), ev.JobFinished)[0]
    drift = finished.stages[1].drift
    assert not drift.against_preview
    assert drift.warning == "", drift.warning  # against the preview it read ΔE 81: "the colours shifted"


DEMO_PROMPTS = ["a red circle on a blue background", "a yellow square on a green background",
                "a white triangle on a black background", "a pink star on a gray background"]


def preview_error(pipe, latents) -> float:
    from core.families import get
    from core.previews import preview

    shown = preview(pipe, get("sdxl"), latents, (64, 64), None)
    return float(np.abs(pixels(shown) - pixels(plain_decode(pipe, latents))).mean())


def test_the_fitted_preview_is_within_its_stated_error_of_real_demo_decodes(demo_base):
    errors = []
    for seed, prompt in enumerate(DEMO_PROMPTS):
        latents = demo_base(prompt, num_inference_steps=20, height=64, width=64, output_type="latent",
                            generator=generator(seed)).images
        errors.append(preview_error(demo_base, latents))
    assert np.mean(errors) <= PREVIEW_MEAN_ERROR and max(errors) <= PREVIEW_WORST_ERROR, errors


def test_live_previews_are_the_checked_map_and_no_worse_once_the_image_forms(demo_base, tmp_path, monkeypatch):
    """Every live preview of a demo run is the fitted map of its step's latents (the map the
    test above checks), and from half-way on, where the image has formed, it is within the
    stated error of the real decode of those latents. Earlier steps are mostly noise, which
    the VAE decodes far from linearly: 61 at step 1 of 12, 42 to 46 from step 5 on."""
    from core import stage_run
    from core.engine import OutputPlan, execute
    from core.families import get
    from core.previews import preview

    steps = 12
    monkeypatch.setattr(stage_run, "PREVIEW_INTERVAL_S", 0.0)  # a preview at every step but the last
    monkeypatch.setattr(stage_run, "PREVIEW_BUDGET", 1.0)
    p = Project(prompt=PROMPT, width=64, height=64, seed=3, stages=[Stage(demo.BASE, steps=steps)])
    events: list = []
    execute(p, events.append, OutputPlan.in_dir(tmp_path, "job"), live_previews=True)
    assert of(events, ev.JobFinished), [getattr(e, "message", e) for e in events if isinstance(e, ev.JobFailed)]
    shown = {e.step: e.image for e in of(events, ev.StagePreview)}
    assert sorted(shown) == list(range(1, steps))
    at_step: dict[int, object] = {}

    def keep(pipe, i, t, kwargs):
        at_step[i + 1] = kwargs["latents"].clone()
        return kwargs

    demo_base(PROMPT, num_inference_steps=steps, height=64, width=64, generator=generator(3),
              callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
    for step, image in shown.items():
        # The same map up to float rounding (a value at a .5 boundary may round either way
        # after the map is fitted again): a different map would be tens of levels away.
        off = np.abs(pixels(image) - pixels(preview(demo_base, get("sdxl"), at_step[step], (64, 64), None)))
        assert off.mean() <= 0.5, (step, off.mean(), off.max())
        if step >= steps // 2:
            assert preview_error(demo_base, at_step[step]) <= PREVIEW_WORST_ERROR, step


def test_a_stored_preview_from_an_earlier_version_is_decoded_when_reused(tiny_models, tmp_path):
    """An output stored while handed-over stages were not decoded carries a preview: a re-run
    from the next stage decodes its latents (with that stage's VAE, the same one) and stores
    the decode."""
    from core.engine import OutputPlan, run
    from core.stage_store import StoredOutput

    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    store = StageStore(tmp_path / "stages")
    first = list(run(p, OutputPlan.in_dir(tmp_path / "first", "job"), store=store))
    decode = of(first, ev.StageImageUpdated)[0].image
    (key,) = [f.stem for f in (tmp_path / "stages").glob("*.safetensors")]
    stored = store.get(key)
    store.put(key, StoredOutput(Image.new("RGB", decode.size, "cyan"), stored.latents, None, True))
    again = list(run(p, OutputPlan.in_dir(tmp_path / "again", "job"), from_stage=1, store=store))
    reused = of(again, ev.StageFinished)[0]
    assert reused.reused and reused.preview
    update = next(e for e in of(again, ev.StageImageUpdated) if e.index == 0)
    assert np.array_equal(pixels(update.image), pixels(decode))
    assert np.array_equal(pixels(Image.open(reused.path)), pixels(decode)) and "preview" not in recipe(reused.path)
    assert not StageStore(tmp_path / "stages").get(key).preview
    refined = of(again, ev.JobFinished)[0].stages[1]
    assert refined.drift == measure(decode, refined.image, 0.3)


@pytest.mark.parametrize("pair", [("family_models", "sd3", "sd3_other"), ("family_models", "flux", "chroma"),
                                  ("family_models", "zimage", "flux"), ("flux2_models", "flux2", "ernie"),
                                  ("flux2_models", "ernie", "flux2"), ("tiny_models", "sd", "sd")])
def test_each_family_decodes_its_handed_over_latents_as_its_pipeline_does(pair, request, tmp_path):
    """The deferred decode (the family's latent layout back to the VAE's, force_upcast, the
    image processor) equals the stage's own pipeline decode: the same stage run alone."""
    models = request.getfixturevalue(pair[0])
    a, b = str(models[pair[1]]), str(models[pair[2]])
    first = Stage(a, steps=3, guidance=2.0)
    events = run_job(project(first, Stage(b, steps=4, guidance=2.0, handoff="latent", strength=0.5)), tmp_path / "job")
    assert [d.handoff for d in of(events, ev.StageFinished)] == ["generate", "latent"]
    assert not [n.message for n in of(events, ev.Notice) if "decoded" in n.message]
    (alone,) = of(run_job(project(Stage(a, steps=3, guidance=2.0)), tmp_path / "alone"), ev.StageFinished)
    decoded = of(events, ev.JobFinished)[0].stages[0]
    assert not decoded.preview and np.array_equal(pixels(decoded.image), pixels(alone.image))


def test_an_fp16_vae_marked_force_upcast_decodes_in_fp32_and_goes_back(tiny_models):
    """SDXL's VAE overflows in fp16: its pipeline decodes in fp32 and casts the VAE back, and
    so does the deferred decode, equal to the pipeline's own image."""
    import torch
    from diffusers import DiffusionPipeline

    from core.deferred_decode import Decoder
    from core.families import get

    pipe = DiffusionPipeline.from_pretrained(str(tiny_models["sdxl"]), dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.force_upcast
    call = dict(prompt=PROMPT, num_inference_steps=3, height=32, width=32)
    latents = pipe(**call, output_type="latent", generator=generator(1)).images
    own = pipe(**call, generator=generator(1)).images[0]
    decoded = Decoder.of(pipe, get("sdxl"))(latents)
    assert np.array_equal(pixels(decoded), pixels(own)) and pipe.vae.dtype == torch.float16


def test_a_decode_that_runs_out_of_memory_leaves_the_preview_and_says_so(tiny_models, tmp_path, monkeypatch):
    """The fault where it happens: the VAE decode after the final image (the job's second
    decode: the refiner's own comes first). The job still finishes, every image stays on
    disk, the base stays a preview (and says so), and the drift says it is against it."""
    import diffusers

    real, calls = diffusers.AutoencoderKL.decode, []

    def decode(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError()
        return real(self, *a, **k)

    monkeypatch.setattr(diffusers.AutoencoderKL, "decode", decode)
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = project(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    events = run_job(p, tmp_path)
    (notice,) = [n.message for n in of(events, ev.Notice) if "could not be decoded" in n.message]
    assert notice.startswith("stage 1: its handed-over latents could not be decoded (out of memory (RAM)")
    assert notice.endswith("its image stays a preview") and "\n" not in notice
    finished = of(events, ev.JobFinished)[0]
    assert finished.stages[0].preview and recipe(finished.stages[0].path)["preview"] is True
    assert finished.stages[1].drift.against_preview and recipe(finished.stages[1].path)["drift"]["against_preview"]
    assert [e.index for e in of(events, ev.StageImageUpdated)] == [1]
