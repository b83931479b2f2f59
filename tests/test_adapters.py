"""LoRAs, ControlNets and IP-Adapters on tiny random-weight pipelines, through the engine,
each bit for bit equal to plain diffusers with the same adapter loaded (the reference
sides import nothing from core), never leaking into another stage, and refused with a
message before any denoising step when they cannot be used."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core import events as ev
from core.models import ModelCache
from core.project import ControlNet, IPAdapter, Lora, Project, Stage
from tests.engine_helpers import assert_input_is_live, generator, last_image, load, of, pixels, run_job
from tests.tiny_adapters import (
    build_controlnet, build_ip_adapter, build_transformer_controlnet, lora_tensors, save_lora, to_kohya,
)

PROMPT = "a red circle on a blue background"


def project(*stages, size=32, seed=11) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=list(stages))


def failed(events) -> str:
    got = of(events, ev.JobFailed)
    assert got, [type(e).__name__ for e in events]
    assert not of(events, ev.Step), "refused only after denoising started"
    return got[0].message


@pytest.fixture(scope="module")
def sd_lora(tiny_models, tmp_path_factory) -> Path:
    return save_lora(lora_tensors(load(tiny_models["sd"]), seed=1, text_encoders=("text_encoder",)),
                     tmp_path_factory.mktemp("lora") / "style.safetensors")


def plain_with_lora(model: Path, lora: Path, weight: float, **call):
    pipe = load(model)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[weight])
    return pipe(prompt=PROMPT, generator=generator(11), height=32, width=32, **call).images[0]


# ---------------------------------------------------------------- LoRA


def test_a_lora_equals_plain_diffusers_with_it_loaded(tiny_models, sd_lora, tmp_path):
    sd = tiny_models["sd"]
    done = of(run_job(project(Stage(str(sd), steps=4, loras=[Lora(str(sd_lora), 0.7)])), tmp_path), ev.StageFinished)
    expected = plain_with_lora(sd, sd_lora, 0.7, num_inference_steps=4, guidance_scale=5.0)
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    plain = load(sd)(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=32, width=32,
                     generator=generator(11)).images[0]
    assert_input_is_live(done[0].image, without=plain)


def test_kohya_layout_loads_the_same_lora(tiny_models, tmp_path):
    sd = tiny_models["sd"]
    tensors = lora_tensors(load(sd), seed=2)
    peft_file = save_lora(tensors, tmp_path / "peft.safetensors")
    kohya_file = save_lora(to_kohya(tensors), tmp_path / "kohya.safetensors",
                           metadata={"ss_base_model_version": "sd_v1", "ss_network_module": "networks.lora"})
    runs = {}
    for name, f in (("peft", peft_file), ("kohya", kohya_file)):
        runs[name] = of(run_job(project(Stage(str(sd), steps=3, loras=[Lora(str(f))])), tmp_path / name), ev.StageFinished)
    assert np.array_equal(pixels(runs["peft"][0].image), pixels(runs["kohya"][0].image))
    assert_input_is_live(runs["kohya"][0].image, without=last_image(project(Stage(str(sd), steps=3)), tmp_path / "no"))


def test_a_lora_never_leaks_into_a_stage_that_shares_its_modules(tiny_models, sd_lora, tmp_path):
    """Both stages use the one model (from_pipe shares its UNet and text encoder): the
    refine after a LoRA'd base equals plain img2img without any LoRA on the base's image."""
    from diffusers import StableDiffusionImg2ImgPipeline

    sd = tiny_models["sd"]
    p = project(Stage(str(sd), steps=4, loras=[Lora(str(sd_lora))]),
                Stage(str(sd), steps=6, handoff="pixel", strength=0.5, seed=5))
    models = ModelCache()
    done = of(run_job(p, tmp_path, models), ev.StageFinished)
    first = plain_with_lora(sd, sd_lora, 1.0, num_inference_steps=4, guidance_scale=5.0)
    assert np.array_equal(pixels(done[0].image), pixels(first))
    plain = load(sd)(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=32, width=32,
                     generator=generator(11)).images[0]
    assert_input_is_live(done[0].image, without=plain)
    refine = StableDiffusionImg2ImgPipeline.from_pipe(load(sd))
    second = refine(PROMPT, image=first, strength=0.5, num_inference_steps=6, guidance_scale=5.0,
                    generator=generator(5)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(second))
    # A later job without the LoRA on the same cached pipeline: no trace of it either.
    (again,) = of(run_job(project(Stage(str(sd), steps=4)), tmp_path / "again", models), ev.StageFinished)
    assert np.array_equal(pixels(again.image), pixels(plain))


def test_an_sdxl_base_lora_on_the_shared_text_encoder_leaves_the_refiner_alone(tiny_models, tmp_path):
    """SDXL base and refiner share text_encoder_2 (loaded once): a base LoRA on it must be
    off while the refiner runs."""
    base_dir, ref_dir = tiny_models["sdxl"], tiny_models["sdxl_refiner"]
    lora = save_lora(lora_tensors(load(base_dir), seed=3, text_encoders=("text_encoder", "text_encoder_2")),
                     tmp_path / "xl.safetensors")
    p = project(Stage(str(base_dir), steps=4, loras=[Lora(str(lora))]),
                Stage(str(ref_dir), steps=6, handoff="pixel", strength=0.5))
    models = ModelCache()
    done = of(run_job(p, tmp_path, models), ev.StageFinished)
    assert models.loaded[next(iter(models.loaded))].pipe.text_encoder_2 is \
        models.loaded[list(models.loaded)[1]].pipe.text_encoder_2
    first = plain_with_lora(base_dir, lora, 1.0, num_inference_steps=4, guidance_scale=5.0)
    assert np.array_equal(pixels(done[0].image), pixels(first))
    assert_input_is_live(done[0].image, without=load(base_dir)(PROMPT, num_inference_steps=4, guidance_scale=5.0,
                                                               generator=generator(11), height=32, width=32).images[0])
    second = load(ref_dir)(PROMPT, image=first, strength=0.5, num_inference_steps=6, guidance_scale=5.0,
                           generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(second))


def test_rerunning_with_resident_models_does_not_reload_an_unchanged_lora(tiny_models, sd_lora, tmp_path, monkeypatch):
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin

    calls = []
    original = StableDiffusionLoraLoaderMixin.load_lora_weights

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionLoraLoaderMixin, "load_lora_weights", counting)
    models = ModelCache()
    p = project(Stage(str(tiny_models["sd"]), steps=2, loras=[Lora(str(sd_lora), 0.5)]))
    a = of(run_job(p, tmp_path / "a", models), ev.StageFinished)
    p.stages[0].loras[0].weight = 0.9  # a new weight needs no reload either
    b = of(run_job(p, tmp_path / "b", models), ev.StageFinished)
    assert len(calls) == 1
    assert not np.array_equal(pixels(a[0].image), pixels(b[0].image))


def test_bad_loras_are_refused_before_any_step(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    garbage = tmp_path / "broken.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    xl = save_lora(lora_tensors(load(tiny_models["sdxl"]), seed=4), tmp_path / "xl.safetensors",
                   metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    import torch

    nothing = save_lora({"unet.no_such_block.to_q.lora_A.weight": torch.zeros(4, 8),
                         "unet.no_such_block.to_q.lora_B.weight": torch.zeros(8, 4)}, tmp_path / "nothing.safetensors")
    pickled = tmp_path / "old.pt"
    pickled.write_bytes(b"not loaded")
    cases = [
        (garbage, "not a readable .safetensors file"),
        (xl, "made for SDXL, not Stable Diffusion 1.x/2.x"),
        (nothing, "matches none of Stable Diffusion 1.x/2.x's layers"),
        (pickled, "only .safetensors files are loaded"),
        (tmp_path / "missing.safetensors", "LoRA not found"),
    ]
    for path, expected in cases:
        events = run_job(project(Stage(sd, steps=2, loras=[Lora(str(path))])), tmp_path, on_event=lambda e: None)
        assert expected in failed(events), failed(events)
    from core.errors import ProjectError
    from core.project import validate

    with pytest.raises(ProjectError, match="LoRA weight 9 is outside"):
        validate(project(Stage(sd, steps=2, loras=[Lora(str(xl), 9.0)])))


def test_a_family_without_a_lora_loader_says_so_in_the_rule():
    from core.families import FAMILIES, LORA

    assert all(FAMILIES[k].supports(LORA) for k in ("sd", "sdxl", "sd3", "flux", "flux2", "chroma", "zimage"))


@pytest.mark.parametrize("models,fam", [("family_models", "sd3"), ("family_models", "flux"), ("family_models", "chroma"),
                                        ("family_models", "zimage"), ("flux2_models", "flux2"), ("flux2_models", "ernie")])
def test_a_lora_on_each_transformer_family_equals_plain_diffusers(models, fam, request, tmp_path):
    model = request.getfixturevalue(models)[fam]
    lora = save_lora(lora_tensors(load(model), seed=7 if models == "family_models" else 8), tmp_path / f"{fam}.safetensors")
    stage = Stage(str(model), steps=3, guidance=2.0, loras=[Lora(str(lora), 0.8)])
    done = of(run_job(project(stage), tmp_path), ev.StageFinished)
    expected = plain_with_lora(model, lora, 0.8, num_inference_steps=3, guidance_scale=2.0)
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    assert_input_is_live(done[0].image, without=last_image(project(replace(stage, loras=[])), tmp_path / "no"))


# ---------------------------------------------------------------- ControlNet


def control_image(path: Path, shape: str = "triangle") -> Path:
    """A light shape on a dark ground: a triangle, or (for "another control image") a disc."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (48, 48), (20, 20, 20))
    if shape == "triangle":
        ImageDraw.Draw(im).polygon([(8, 40), (24, 6), (40, 40)], fill=(240, 240, 240))
    else:
        ImageDraw.Draw(im).ellipse([(4, 10), (30, 36)], fill=(240, 240, 240))
    im.save(path)
    return path


def canny(path: Path, size=(32, 32), low=100, high=200):
    import cv2
    from PIL import Image

    image = Image.open(path).convert("RGB").resize(size, Image.LANCZOS)
    edges = cv2.Canny(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def test_controlnet_with_canny_equals_plain_diffusers(tiny_models, tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    sd = tiny_models["sd"]
    cn_dir = build_controlnet(sd, tmp_path / "cn")
    img = control_image(tmp_path / "control.png")
    spec = ControlNet(str(cn_dir), str(img), "canny", 80, 160, scale=0.9, start=0.0, end=0.8)
    done = of(run_job(project(Stage(str(sd), steps=4, controlnet=spec)), tmp_path), ev.StageFinished)
    pipe = StableDiffusionControlNetPipeline.from_pipe(load(sd), controlnet=ControlNetModel.from_pretrained(str(cn_dir)))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(PROMPT, image=canny(img, low=80, high=160), num_inference_steps=4, guidance_scale=5.0, height=32,
                    width=32, controlnet_conditioning_scale=0.9, control_guidance_start=0.0, control_guidance_end=0.8,
                    generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    plain = load(sd)(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=32, width=32,
                     generator=generator(11)).images[0]
    disc = replace(spec, image=str(control_image(tmp_path / "disc.png", "disc")))
    assert_input_is_live(done[0].image, without=plain,
                         control_image=last_image(project(Stage(str(sd), steps=4, controlnet=disc)), tmp_path / "disc"))
    # A ready map, no preprocessing: the image goes in as it is.
    spec.preprocessor = "none"
    done = of(run_job(project(Stage(str(sd), steps=4, controlnet=spec)), tmp_path / "none"), ev.StageFinished)
    from PIL import Image

    expected = pipe(PROMPT, image=Image.open(img).convert("RGB").resize((32, 32), Image.LANCZOS), num_inference_steps=4,
                    guidance_scale=5.0, height=32, width=32, controlnet_conditioning_scale=0.9,
                    control_guidance_start=0.0, control_guidance_end=0.8, generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))


CONTROLNET_CASES = {  # family fixture key -> (ControlNet pipeline class, the call's name for the map)
    "sdxl": ("StableDiffusionXLControlNetPipeline", "image"),
    "sd3": ("StableDiffusion3ControlNetPipeline", "control_image"),
    "flux": ("FluxControlNetPipeline", "control_image"),
}


@pytest.mark.parametrize("fam", sorted(CONTROLNET_CASES))
def test_controlnet_on_each_family_equals_plain_diffusers(fam, tiny_models, family_models, tmp_path):
    import diffusers

    if fam == "sd3":  # two blocks: SD3 feeds no ControlNet residual to its last block, the tiny model's only one
        from tests.tiny_pipelines import build_sd3

        model = build_sd3(tmp_path / "sd3", seed=0, vae_seed=3, num_layers=2)
    else:
        model = tiny_models["sdxl"] if fam == "sdxl" else family_models[fam]
    cn_dir = (build_controlnet(model, tmp_path / "cn") if fam == "sdxl"
              else build_transformer_controlnet(model, tmp_path / "cn"))
    img = control_image(tmp_path / "control.png")
    guidance = 5.0 if fam == "sdxl" else 2.0
    spec = ControlNet(str(cn_dir), str(img), scale=0.7)
    stage = Stage(str(model), steps=3, guidance=guidance, controlnet=spec)
    done = of(run_job(project(stage), tmp_path), ev.StageFinished)
    cls_name, arg = CONTROLNET_CASES[fam]
    cn_cls = "ControlNetModel" if fam == "sdxl" else ("SD3ControlNetModel" if fam == "sd3" else "FluxControlNetModel")
    controlnet = getattr(diffusers, cn_cls).from_pretrained(str(cn_dir))
    pipe = getattr(diffusers, cls_name).from_pipe(load(model), controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    import torch

    torch.manual_seed(11)  # SD3's ControlNet pipeline samples the map's latents from the global RNG
    expected = pipe(prompt=PROMPT, num_inference_steps=3, guidance_scale=guidance, height=32, width=32,
                    controlnet_conditioning_scale=0.7, control_guidance_start=0.0, control_guidance_end=1.0,
                    generator=generator(11), **{arg: canny(img)}).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    disc = replace(spec, image=str(control_image(tmp_path / "disc.png", "disc")))
    assert_input_is_live(done[0].image, without=last_image(project(replace(stage, controlnet=None)), tmp_path / "no"),
                         control_image=last_image(project(replace(stage, controlnet=disc)), tmp_path / "disc"))


def test_bad_controlnets_are_refused_before_any_step(tiny_models, tmp_path):
    sd, xl = tiny_models["sd"], tiny_models["sdxl"]
    img = control_image(tmp_path / "control.png")
    xl_cn = build_controlnet(xl, tmp_path / "xl-cn")
    events = run_job(project(Stage(str(sd), steps=2, controlnet=ControlNet(str(xl_cn), str(img)))), tmp_path,
                     on_event=lambda e: None)
    assert "made for SDXL, not Stable Diffusion 1.x/2.x" in failed(events)
    unreadable = tmp_path / "unreadable.png"
    unreadable.write_bytes(b"not an image")
    sd_cn = build_controlnet(sd, tmp_path / "sd-cn")
    events = run_job(project(Stage(str(sd), steps=2, controlnet=ControlNet(str(sd_cn), str(unreadable)))), tmp_path,
                     on_event=lambda e: None)
    assert "control image" in failed(events) and "cannot be read" in failed(events)
    from core.errors import ProjectError
    from core.project import validate

    for spec, expected in [(ControlNet(str(sd_cn), str(tmp_path / "gone.png")), "control image not found"),
                           (ControlNet(str(sd_cn), str(img), scale=3.0), "scale 3 is outside 0..2"),
                           (ControlNet(str(sd_cn), str(img), low=200, high=100), "Canny thresholds 200,100"),
                           (ControlNet(str(sd_cn), str(img), start=0.9, end=0.2), "start 0.9 and end 0.2")]:
        with pytest.raises(ProjectError, match=expected):
            validate(project(Stage(str(sd), steps=2, controlnet=spec)))
    with pytest.raises(ProjectError, match="a ControlNet conditions a stage that generates"):
        validate(project(Stage(str(sd), steps=2), Stage(str(sd), steps=2, handoff="pixel", controlnet=ControlNet(
            str(sd_cn), str(img)))))


# ---------------------------------------------------------------- IP-Adapter


@pytest.mark.parametrize("fam", ["sd", "sdxl"])
def test_ip_adapter_equals_plain_diffusers(fam, tiny_models, tmp_path):
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    sd = tiny_models[fam]
    weights = build_ip_adapter(load(sd), tmp_path / "ip")
    ref, other = tmp_path / "ref.png", tmp_path / "other.png"
    Image.new("RGB", (40, 40), (250, 200, 10)).save(ref)
    Image.new("RGB", (40, 40), (10, 40, 230)).save(other)
    done = of(run_job(project(Stage(str(sd), steps=4, ip_adapters=[IPAdapter(str(weights), str(ref), 0.7)])), tmp_path),
              ev.StageFinished)
    pipe = load(sd)
    encoder = CLIPVisionModelWithProjection.from_pretrained(str(weights.parent / "image_encoder"))
    pipe.register_modules(image_encoder=encoder, feature_extractor=CLIPImageProcessor(size=32, crop_size=32))
    pipe.load_ip_adapter(str(weights.parent), subfolder="", weight_name=weights.name, image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.7)
    expected = pipe(PROMPT, ip_adapter_image=Image.open(ref).convert("RGB"), num_inference_steps=4, guidance_scale=5.0,
                    height=32, width=32, generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    # Unloaded afterwards: the next job on the cached model is the plain one.
    models = ModelCache()
    run_job(project(Stage(str(sd), steps=4, ip_adapters=[IPAdapter(str(weights), str(ref), 0.7)])), tmp_path / "a", models)
    (after,) = of(run_job(project(Stage(str(sd), steps=4)), tmp_path / "b", models), ev.StageFinished)
    plain = load(sd)(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=32, width=32,
                     generator=generator(11)).images[0]
    assert np.array_equal(pixels(after.image), pixels(plain))
    another = project(Stage(str(sd), steps=4, ip_adapters=[IPAdapter(str(weights), str(other), 0.7)]))
    assert_input_is_live(done[0].image, without=plain, reference=last_image(another, tmp_path / "other"))


def test_a_lora_on_qwen_image_equals_plain_diffusers(tmp_path):
    from tests.tiny_qwen import build_qwen

    model = build_qwen(tmp_path / "qwen", seed=0)
    lora = save_lora(lora_tensors(load(model), seed=9), tmp_path / "qwen.safetensors")
    stage = Stage(str(model), steps=3, guidance=1.0, loras=[Lora(str(lora), 0.8)])
    done = of(run_job(project(stage), tmp_path), ev.StageFinished)
    # Guidance 1: no true CFG, so the plain call needs no negative prompt (core.families.qwen).
    expected = plain_with_lora(model, lora, 0.8, num_inference_steps=3, true_cfg_scale=1.0)
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    assert_input_is_live(done[0].image, without=last_image(project(replace(stage, loras=[])), tmp_path / "no"))


def test_parameters_name_loras_and_controlnet_and_a_restore_keeps_what_is_here(tiny_models, sd_lora, tmp_path):
    """A1111's <lora:name:weight> tags and sd-webui-controlnet's ControlNet 0 entry in the
    `parameters` text; restoring the PNG keeps the adapters whose files are here and names
    the others; an A1111 tag resolves through the model library by the file's name."""
    from PIL import Image

    from core.metadata import read_recipe, save_png
    from core.interop import a1111
    from core.model_library import LibraryEntry, ModelLibrary

    img = control_image(tmp_path / "control.png")
    gone = tmp_path / "elsewhere" / "gone.safetensors"
    stage = Stage(str(tiny_models["sd"]), steps=4, loras=[Lora(str(sd_lora), 0.7), Lora(str(gone), 0.3)],
                  controlnet=ControlNet(str(tmp_path / "cn"), str(img), low=80, high=160, scale=0.9))
    png = save_png(Image.new("RGB", (32, 32)), tmp_path / "out.png", project(stage), 0)
    text = a1111.write(project(stage), 0)
    assert "<lora:style:0.7>" in text and "<lora:gone:0.3>" in text
    assert 'ControlNet 0: "Module: canny, Model: cn, Weight: 0.9' in text and "Threshold A: 80" in text
    imported = read_recipe(png)
    assert [(lo.ref, lo.weight) for lo in imported.project.stages[0].loras] == [(str(sd_lora), 0.7)]
    assert any("gone.safetensors" in u for u in imported.unmapped)
    assert imported.project.stages[0].controlnet is None  # its model folder is not here
    # The A1111 text alone: the tag finds the file through the library, by its name.
    library = ModelLibrary.load()
    library.add(LibraryEntry("style", str(sd_lora), "comfyui", None, "lora"))
    library.save()
    from core.interop.model_lookup import ModelLookup

    restored = a1111.read_parameters(text, a1111.Where("out.png"), ModelLookup())
    assert [(lo.ref, lo.weight) for lo in restored.project.stages[0].loras] == [(str(sd_lora), 0.7)]
    assert "<lora" not in restored.project.prompt and any("'gone'" in u for u in restored.unmapped)
