"""SD3, Flux.1, Chroma, FLUX.2 and ERNIE-Image on tiny random-weight pipelines of their own,
in every stage position and handoff each supports, and a latent handoff across family lines
where the VAEs match (Flux.1 <-> Z-Image <-> Chroma, ERNIE-Image <-> FLUX.2), checked against
plain diffusers calls."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core import events as ev
from core.families import FAMILIES
from core.planning import plan
from core.models import Digests, ModelRef, ResolvedModel, parse_ref, resolve
from core.errors import ModelError
from core.project import Project, Stage
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"
FAMS = ["sd3", "flux", "chroma"]
# The reference sides below know diffusers, never core: a model's pipeline class is read
# from its model_index.json, and these tables say what diffusers offers for each.
IMG2IMG = {"StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
           "StableDiffusion3Pipeline": "StableDiffusion3Img2ImgPipeline",
           "FluxPipeline": "FluxImg2ImgPipeline", "ChromaPipeline": "ChromaImg2ImgPipeline",
           "ZImagePipeline": "ZImageImg2ImgPipeline"}
PACKED = {"FluxPipeline", "ChromaPipeline"}  # their loops keep latents as packed 2x2 tokens


def project(*stages, width=32, height=32, seed=11) -> Project:
    return Project(prompt=PROMPT, width=width, height=height, seed=seed, stages=list(stages))


def img2img(path: Path):
    import diffusers

    pipe = load(path)
    refine = getattr(diffusers, IMG2IMG[declared_class(path)]).from_pipe(pipe)
    refine.set_progress_bar_config(disable=True)
    return refine


def declared_class(path: Path) -> str:
    return json.loads((Path(path) / "model_index.json").read_text())["_class_name"]


def generate(path: Path, steps: int, guidance: float, seed: int, width=32, height=32, **kw):
    return load(path)(PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                      generator=generator(seed), **kw).images


def handoffs_of(done) -> list[str]:
    return [d.handoff for d in done]


# ---------------------------------------------------------------- the tiny models themselves


def test_tiny_models_declare_their_family_and_tokenizers_round_trip(family_models):
    from transformers import T5Tokenizer

    expected = {"sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline", "chroma": "ChromaPipeline"}
    for key, cls in expected.items():
        index = json.loads((family_models[key] / "model_index.json").read_text())
        assert index["_class_name"] == cls
        assert resolve(parse_ref(str(family_models[key]))).family.key == key
    t5_dir = family_models["flux"] / "tokenizer_2"
    assert (t5_dir / "tokenizer.json").is_file()
    assert json.loads((family_models["flux"] / "model_index.json").read_text())["tokenizer_2"] == ["transformers", "T5Tokenizer"]
    from core.local_tokenizers import t5_tokenizer
    from tests.tiny_pipelines import WORDS

    built, loaded = t5_tokenizer(WORDS), T5Tokenizer.from_pretrained(t5_dir)
    text = "a red circle, zebra!"
    assert loaded(text).input_ids == built(text).input_ids
    assert loaded("red").input_ids == [built.convert_tokens_to_ids("\u2581red"), built.eos_token_id]


# ---------------------------------------------------------------- every position, each family


@pytest.mark.parametrize("fam", FAMS)
def test_generate_alone_equals_plain_diffusers(fam, family_models, tmp_path):
    done = of(run_job(project(Stage(str(family_models[fam]), steps=3, guidance=3.0)), tmp_path), ev.StageFinished)
    assert handoffs_of(done) == ["generate"] and done[0].image.size == (32, 32)
    expected = generate(family_models[fam], 3, 3.0, 11)[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))


@pytest.mark.parametrize("fam", FAMS)
def test_generate_then_pixel_refine_equals_plain_diffusers(fam, family_models, tmp_path):
    """Flux, SD3 and Chroma img2img default to the model's native size unless told: the
    refine must come out at the project's size, equal to the call that passes it."""
    m = str(family_models[fam])
    p = project(Stage(m, steps=3, guidance=3.0),
                Stage(m, steps=4, guidance=2.0, handoff="pixel", strength=0.5, seed=5), width=48)
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert handoffs_of(done) == ["generate", "pixel"]
    assert [d.image.size for d in done] == [(48, 32), (48, 32)]
    assert done[1].steps_run == 2
    first = generate(family_models[fam], 3, 3.0, 11, width=48)[0]
    second = img2img(family_models[fam])(PROMPT, image=first, strength=0.5, num_inference_steps=4, guidance_scale=2.0,
                                         height=32, width=48, generator=generator(5)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(second))


@pytest.mark.parametrize("fam", FAMS)
def test_refines_another_familys_image_as_pixels(fam, family_models, tmp_path):
    """After SD 1.x (4-channel latents, another VAE) auto can only hand over pixels."""
    p = project(Stage(str(family_models["sd"]), steps=3),
                Stage(str(family_models[fam]), steps=4, guidance=2.0, handoff="auto", strength=0.5))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert handoffs_of(done) == ["generate", "pixel"]
    assert done[1].image.size == (32, 32) and done[1].steps_run == 2
    assert done[1].input_image is done[0].image
    # Bit for bit the two plain diffusers calls: SD 1.x generates, the other family refines.
    first = load(family_models["sd"])(PROMPT, num_inference_steps=3, guidance_scale=5.0, height=32, width=32,
                                      generator=generator(11)).images[0]
    second = img2img(family_models[fam])(PROMPT, image=first, strength=0.5, num_inference_steps=4, guidance_scale=2.0,
                                         height=32, width=32, generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(second))


@pytest.mark.parametrize("fam", FAMS)
def test_refines_an_init_image(fam, family_models, tmp_path):
    from PIL import Image

    init = tmp_path / "init.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(init)
    p = project(Stage(str(family_models[fam]), steps=4, guidance=2.0, strength=0.5))
    p.init_image = str(init)
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert handoffs_of(done) == ["pixel"] and done[0].image.size == (32, 32)


# ---------------------------------------------------------------- latent handoff


def reference_latent(base: Path, refiner: Path, base_steps: int, steps: int, strength: float, seed: int,
                     width: int, height: int, base_seed: int = 11, guidance: float = 2.0):
    """A latent handoff written with plain diffusers calls: the base's final latents
    (unpacked for Flux and Chroma), noised with the flow-matching interpolation at the
    refine schedule's first sigma, packed again for a Flux/Chroma refiner, and passed as
    `latents=` (which the img2img pipelines use as given)."""
    from diffusers import FluxPipeline
    from diffusers.utils.torch_utils import randn_tensor

    base_cls, refiner_cls = declared_class(base), declared_class(refiner)
    latents = generate(base, base_steps, guidance, base_seed, width=width, height=height, output_type="latent")
    base_pipe = load(base)
    if base_cls in PACKED:
        latents = FluxPipeline._unpack_latents(latents, height, width, base_pipe.vae_scale_factor)
    assert latents.shape == (1, 16, height // 2, width // 2)  # the tiny VAEs scale by 2

    pipe = img2img(refiner)
    first_sigma = {}

    def at_first_step(p, i, t, kw):
        if i == 0:  # the step just taken started at the schedule's first sigma
            first_sigma["s"] = p.scheduler.sigmas[p.scheduler.step_index - 1]
        return kw

    from PIL import Image

    dry = dict(prompt=PROMPT, strength=strength, num_inference_steps=steps, guidance_scale=guidance, height=height,
               width=width)
    pipe(image=Image.new("RGB", (width, height)), generator=generator(seed), output_type="latent",
         callback_on_step_end=at_first_step, **dry)
    sigma = first_sigma["s"]
    noise = randn_tensor(latents.shape, generator=generator(seed), dtype=latents.dtype)
    noisy = sigma * noise + (1.0 - sigma) * latents
    if refiner_cls in PACKED:
        noisy = FluxPipeline._pack_latents(noisy, 1, 16, height // 2, width // 2)
    image = Image.new("RGB", (width, height))  # unused: prepare_latents returns the given latents
    out = pipe(image=image, latents=noisy, generator=generator(seed), **dry).images[0]
    return out, latents


@pytest.mark.parametrize("pair", [("flux", "zimage"), ("zimage", "flux")])
def test_cross_family_latent_handoff_equals_hand_written_reference(pair, family_models, tmp_path):
    a, b = (family_models[k] for k in pair)
    p = project(Stage(str(a), steps=3, guidance=2.0),
                Stage(str(b), steps=4, guidance=2.0, handoff="latent", strength=0.5, seed=5), width=48)
    events = run_job(p, tmp_path)
    done = of(events, ev.StageFinished)
    assert handoffs_of(done) == ["generate", "latent"], of(events, ev.StageStarted)[1].note
    assert done[1].steps_run == 2 and done[1].image.size == (48, 32)
    expected, _ = reference_latent(a, b, 3, 4, 0.5, 5, width=48, height=32)
    assert np.array_equal(pixels(done[1].image), pixels(expected))


def test_flux_latent_handoff_skips_the_vae_encode(family_models, tmp_path):
    """Not the pixel path in disguise: a latent handoff differs from decoding and re-encoding."""
    f = str(family_models["flux"])
    results = {}
    for how in ("latent", "pixel"):
        p = project(Stage(f, steps=3, guidance=2.0), Stage(f, steps=4, guidance=2.0, handoff=how, strength=0.5))
        results[how] = of(run_job(p, tmp_path / how), ev.StageFinished)
    assert handoffs_of(results["latent"]) == ["generate", "latent"]
    assert not np.array_equal(pixels(results["latent"][1].image), pixels(results["pixel"][1].image))


@pytest.mark.parametrize("pair", [("sd3", "sd3_other"), ("flux", "chroma"), ("chroma", "flux"), ("chroma", "zimage"),
                                  ("zimage", "chroma")])
def test_latent_handoff_with_a_same_vae_partner(pair, family_models, tmp_path):
    a, b = (family_models[k] for k in pair)
    p = project(Stage(str(a), steps=3, guidance=2.0),
                Stage(str(b), steps=4, guidance=2.0, handoff="latent", strength=0.5, seed=5))
    events = run_job(p, tmp_path)
    done = of(events, ev.StageFinished)
    assert handoffs_of(done) == ["generate", "latent"], of(events, ev.StageStarted)[1].note
    assert done[1].image.size == (32, 32) and done[1].steps_run == 2
    assert done[0].preview  # the base handed its latents over: no decode of its own
    expected, _ = reference_latent(a, b, 3, 4, 0.5, 5, width=32, height=32)
    assert np.array_equal(pixels(done[1].image), pixels(expected))


def _plan_for(paths: list[Path], handoff: str = "auto"):
    stages = [Stage(str(paths[0]), steps=4)] + [Stage(str(x), steps=4, handoff=handoff, strength=0.5) for x in paths[1:]]
    resolved = [resolve(parse_ref(s.model)) for s in stages]
    digests = Digests()
    return plan(project(*stages), resolved, lambda r: r.vae_fingerprint(digests))


def test_auto_picks_latent_exactly_where_the_vaes_match(family_models):
    m = family_models
    shared = ["flux", "chroma", "zimage", "zimage_turbo"]
    for a in shared:
        for b in shared:
            if a != b:
                assert _plan_for([m[a], m[b]])[1].handoff == "latent", (a, b)
    assert _plan_for([m["sd3"], m["sd3_other"]])[1].handoff == "latent"
    differ = [("flux", "flux_other_vae"), ("flux_other_vae", "chroma"), ("zimage", "flux_other_vae"),
              ("sd3", "flux"), ("flux", "sd3"), ("zimage", "sd3"), ("sd", "flux"), ("flux", "sd")]
    for a, b in differ:
        assert _plan_for([m[a], m[b]])[1].handoff == "pixel", (a, b)
    asked = _plan_for([m["flux"], m["flux_other_vae"]], handoff="latent")[1]
    assert asked.handoff == "pixel" and "VAEs differ" in asked.note


def test_auto_runs_latent_for_flux_to_chroma_and_pixel_for_another_vae(family_models, tmp_path):
    m = family_models
    p = project(Stage(str(m["flux"]), steps=2), Stage(str(m["chroma"]), steps=2, handoff="auto", strength=0.5),
                Stage(str(m["flux_other_vae"]), steps=2, handoff="auto", strength=0.5))
    assert handoffs_of(of(run_job(p, tmp_path), ev.StageFinished)) == ["generate", "latent", "pixel"]


def test_ensemble_into_flux2_or_ernie_is_refused_readably():
    def fake(key: str) -> ResolvedModel:
        return ResolvedModel(ModelRef(key, "folder", key), Path(key), FAMILIES[key], {"vae": ["diffusers", "X"]})

    for key in ("flux2", "ernie"):
        p = project(Stage("a", steps=4), Stage("b", steps=4, handoff="ensemble"))
        with pytest.raises(ModelError, match="can use latent or pixel"):
            plan(p, [fake("ernie" if key == "flux2" else "flux2"), fake(key)], lambda r: "same")


# ---------------------------------------------------------------- FLUX.2 and ERNIE-Image
# Neither has an img2img pipeline in diffusers 0.42.1: they refine at a strength through their
# text-to-image pipelines (core.stage_call: the imposed tail of their schedule), and hand latents to each other where
# their VAEs (both AutoencoderKLFlux2) match.

FLUX2_FAMS = ["flux2", "ernie"]


def flux2_reference(model: Path, steps: int, strength: float, seed: int, guidance: float = 2.0, image=None,
                    latents=None, latents_from: str | None = None, size: int = 32):
    """Flow img2img written out with plain diffusers calls: the pipeline's full shifted
    schedule for `steps`, cut at steps - int(steps * strength); the clean latents in the
    pipeline's `latents=` layout (the image encoded, or another FLUX.2/ERNIE stage's final
    latents converted from its own layout); noised with scale_noise; the tail run from there."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu
    from diffusers.utils.torch_utils import randn_tensor

    key = {"Flux2Pipeline": "flux2", "Flux2KleinPipeline": "flux2", "ErnieImagePipeline": "ernie"}[declared_class(model)]
    pipe = load(model)
    vae = pipe.vae

    def bn(family):  # the statistics each pipeline's own code normalizes with
        eps = 1e-5 if family == "ernie" else vae.config.batch_norm_eps
        return vae.bn.running_mean.view(1, -1, 1, 1), torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + eps)

    # 1. The schedule, as each pipeline computes it, on a copy of its scheduler.
    full = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    if key == "flux2":
        seq_len = (size // (pipe.vae_scale_factor * 2)) ** 2
        full.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=compute_empirical_mu(seq_len, steps))
    else:
        full.set_timesteps(sigmas=torch.linspace(1.0, 0.0, steps + 1)[:-1])
    # 2. Where diffusers' img2img pipelines start at this strength.
    t_start = steps - int(steps * strength)
    # 3. The clean latents in this pipeline's layout.
    with torch.no_grad():
        if image is not None and key == "flux2":
            x0 = pipe._encode_vae_image(pipe.image_processor.preprocess(image, height=size, width=size), generator(seed))
        elif image is not None:
            raw = vae.encode(pipe.image_processor.preprocess(image, height=size, width=size)).latent_dist.mode()
            mean, std = bn("ernie")
            x0 = (pipe._patchify_latents(raw) - mean) / std
        else:
            if latents_from == "flux2":  # FLUX.2's final latents are packed tokens with position ids
                ids = Flux2Pipeline._prepare_latent_ids(torch.zeros(1, 16, size // 4, size // 4))
                latents = Flux2Pipeline._unpack_latents_with_ids(latents, ids)
            mean, std = bn(latents_from)
            x0 = (latents * std + mean - bn(key)[0]) / bn(key)[1]  # both layouts are the same 2x2 patches
    noise = randn_tensor(x0.shape, generator=generator(seed), dtype=x0.dtype)
    noisy = full.scale_noise(x0, full.timesteps[t_start:t_start + 1], noise)
    # 4. The tail of the schedule from those latents, with the scheduler's own shift off.
    tail = full.sigmas[t_start:-1].tolist()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=1.0,
                                                                 use_dynamic_shifting=False)
    kw = dict(prompt=PROMPT, num_inference_steps=len(tail), guidance_scale=guidance, height=size, width=size,
              latents=noisy, generator=generator(seed))
    if key == "flux2":
        out = pipe(sigmas=tail, **kw)
    else:  # ErnieImagePipeline takes no sigmas: its set_timesteps call is answered with the tail
        set_timesteps = pipe.scheduler.set_timesteps
        pipe.scheduler.set_timesteps = lambda sigmas, device=None: set_timesteps(sigmas=tail, device=device)
        out = pipe(**kw)
    return out.images[0], len(tail)


def base_latents(model: Path, steps: int, seed: int, guidance: float = 2.0, size: int = 32):
    return load(model)(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                       generator=generator(seed), output_type="latent").images


def init_project(tmp_path: Path, stage: Stage) -> Project:
    from PIL import Image, ImageDraw

    init = tmp_path / "init.png"
    im = Image.new("RGB", (32, 32), (30, 60, 200))
    ImageDraw.Draw(im).ellipse((6, 6, 26, 26), fill=(220, 30, 30))
    im.save(init)
    p = project(stage)
    p.init_image = str(init)
    return p


@pytest.mark.parametrize("fam", FLUX2_FAMS)
def test_flux2_and_ernie_generate_equal_plain_diffusers(fam, flux2_models, tmp_path):
    model = flux2_models[fam]
    assert resolve(parse_ref(str(model))).family.key == fam
    assert FAMILIES[fam].positions() == "base and refine" and FAMILIES[fam].refines_via_generate
    done = of(run_job(project(Stage(str(model), steps=3, guidance=2.0)), tmp_path), ev.StageFinished)
    assert handoffs_of(done) == ["generate"] and done[0].image.size == (32, 32) and done[0].steps_run == 3
    expected = load(model)(prompt=PROMPT, num_inference_steps=3, guidance_scale=2.0, height=32, width=32,
                           generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))


@pytest.mark.parametrize("fam", FLUX2_FAMS)
def test_flux2_and_ernie_refine_an_init_image_like_plain_diffusers(fam, flux2_models, tmp_path):
    """Pixel handoff: the engine's flow img2img equals the steps written out by hand, and
    the same seed gives the same image bit for bit."""
    p = init_project(tmp_path, Stage(str(flux2_models[fam]), steps=6, guidance=2.0, strength=0.5, seed=5))
    runs = [of(run_job(p, tmp_path / str(i)), ev.StageFinished) for i in range(2)]
    assert handoffs_of(runs[0]) == ["pixel"] and runs[0][0].steps_run == 3
    assert np.array_equal(pixels(runs[0][0].image), pixels(runs[1][0].image))
    from PIL import Image

    expected, steps = flux2_reference(flux2_models[fam], 6, 0.5, 5, image=Image.open(p.init_image).convert("RGB"))
    assert steps == 3
    assert np.array_equal(pixels(runs[0][0].image), pixels(expected))


@pytest.mark.parametrize("fam", FLUX2_FAMS)
def test_flux2_and_ernie_refine_another_familys_image_as_pixels(fam, flux2_models, family_models, tmp_path):
    p = project(Stage(str(family_models["zimage"]), steps=2),
                Stage(str(flux2_models[fam]), steps=4, guidance=2.0, handoff="auto", strength=0.5))
    events = run_job(p, tmp_path)
    done = of(events, ev.StageFinished)
    assert handoffs_of(done) == ["generate", "pixel"] and of(events, ev.StageStarted)[1].note == ""
    assert done[1].image.size == (32, 32) and done[1].steps_run == 2
    assert done[1].input_image is done[0].image
    # Bit for bit: Z-Image's plain call, then the written-out flow img2img of its image.
    first = load(family_models["zimage"])(PROMPT, num_inference_steps=2, guidance_scale=5.0, height=32, width=32,
                                          generator=generator(11)).images[0]
    second, _ = flux2_reference(flux2_models[fam], 4, 0.5, 11, image=first)
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert np.array_equal(pixels(done[1].image), pixels(second))


@pytest.mark.parametrize("pair", [("ernie", "flux2"), ("flux2", "ernie"), ("ernie", "ernie")])
def test_flux2_ernie_latent_handoff_equals_plain_diffusers(pair, flux2_models, tmp_path):
    """One VAE (config and weights): auto hands the latents over, converted between the two
    pipelines' layouts (FLUX.2 packs them; each normalizes with its own batch-norm eps)."""
    a, b = (flux2_models[k] for k in pair)
    p = project(Stage(str(a), steps=3, guidance=2.0),
                Stage(str(b), steps=6, guidance=2.0, handoff="auto", strength=0.5, seed=5))
    events = run_job(p, tmp_path)
    done = of(events, ev.StageFinished)
    assert handoffs_of(done) == ["generate", "latent"], of(events, ev.StageStarted)[1].note
    assert done[1].steps_run == 3
    expected, _ = flux2_reference(b, 6, 0.5, 5, latents=base_latents(a, 3, 11), latents_from=pair[0])
    assert np.array_equal(pixels(done[1].image), pixels(expected))
    # Not the pixel path in disguise.
    p.stages[1].handoff = "pixel"
    as_pixels = of(run_job(p, tmp_path / "pixel"), ev.StageFinished)
    assert handoffs_of(as_pixels) == ["generate", "pixel"]
    assert not np.array_equal(pixels(done[1].image), pixels(as_pixels[1].image))


def test_flux2_ernie_with_different_vaes_hand_over_pixels_with_a_note(flux2_models, tmp_path):
    m = flux2_models
    assert _plan_for([m["ernie"], m["flux2"]])[1].handoff == "latent"
    assert _plan_for([m["flux2"], m["ernie"]])[1].handoff == "latent"
    assert _plan_for([m["ernie_other_vae"], m["flux2"]])[1].handoff == "pixel"
    p = project(Stage(str(m["ernie_other_vae"]), steps=2),
                Stage(str(m["flux2"]), steps=4, guidance=2.0, handoff="latent", strength=0.5))
    events = run_job(p, tmp_path)
    assert handoffs_of(of(events, ev.StageFinished)) == ["generate", "pixel"]
    assert "latent handoff impossible (the VAEs differ" in of(events, ev.StageStarted)[1].note


@pytest.mark.parametrize("pair", [("ernie", "flux2"), ("flux2", "ernie")])
def test_flux2_ernie_strength_sets_how_much_is_redone(pair, flux2_models, tmp_path):
    """int(steps * strength) steps run, from a sigma that keeps more of the input the lower
    the strength: at 0.15 the refined image stays closer to the one it was given than at 0.9."""
    a, b = (str(flux2_models[k]) for k in pair)
    distance, steps = {}, 10
    # The image the handed-over latents decode to: the base alone (in the chain its image is
    # only a cheap preview, as the next stage takes the latents).
    (given,) = of(run_job(project(Stage(a, steps=3, guidance=2.0)), tmp_path / "base"), ev.StageFinished)
    for strength in (0.15, 0.9):
        p = project(Stage(a, steps=3, guidance=2.0), Stage(b, steps=steps, guidance=2.0, handoff="latent",
                                                           strength=strength))
        events = run_job(p, tmp_path / str(strength))
        done = of(events, ev.StageFinished)
        assert done[1].steps_run == int(steps * strength)
        assert {e.total for e in of(events, ev.Step) if e.index == 1} == {int(steps * strength)}
        assert done[0].preview and not done[1].preview
        distance[strength] = np.abs(pixels(done[1].image) - pixels(given.image)).mean()
    assert distance[0.15] < distance[0.9], distance


@pytest.fixture(scope="module")
def klein(tmp_path_factory) -> Path:
    from tests import tiny_pipelines as tp

    return tp.build_flux2_klein(tmp_path_factory.mktemp("klein") / "klein", seed=3, vae_seed=1)


def test_flux2_klein_generates_and_refines_through_its_own_pipeline(klein, tmp_path):
    """FLUX.2 [klein] folders declare Flux2KleinPipeline (a Qwen3 text encoder): they belong
    to the FLUX.2 family but must run through their own class in both positions."""
    assert resolve(parse_ref(str(klein))).family.key == "flux2"
    done = of(run_job(project(Stage(str(klein), steps=3, guidance=2.0)), tmp_path / "gen"), ev.StageFinished)
    expected = load(klein)(prompt=PROMPT, num_inference_steps=3, guidance_scale=2.0, height=32, width=32,
                           generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))

    from PIL import Image

    p = init_project(tmp_path, Stage(str(klein), steps=6, guidance=2.0, strength=0.5, seed=5))
    refined = of(run_job(p, tmp_path / "refine"), ev.StageFinished)
    expected, steps = flux2_reference(klein, 6, 0.5, 5, image=Image.open(p.init_image).convert("RGB"))
    assert refined[0].steps_run == steps == 3
    assert np.array_equal(pixels(refined[0].image), pixels(expected))
