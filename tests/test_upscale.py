"""Upscale stages (A1111's hires fix, ComfyUI's upscale-then-KSampler): the image a pixel
stage takes in is resized by the stage's factor before it is refined."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import events as ev
from core.interop import a1111
from core.interop.detect import from_chunks
from core.interop.model_lookup import ModelLookup
from core.metadata import read_recipe
from core.project import Project, Stage, stage_sizes, validate
from core.errors import ProjectError
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"


def project(*stages, size=32, seed=11, **kw) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=list(stages), **kw)


def problems(p: Project) -> list[str]:
    with pytest.raises(ProjectError) as info:
        validate(p)
    return info.value.problems


def test_sizes_multiply_through_the_chain_and_snap_to_the_multiple():
    p = Project(prompt="x", width=64, height=48, stages=[
        Stage("a"), Stage("b", handoff="pixel", upscale=1.5), Stage("c", handoff="pixel"),
        Stage("d", handoff="pixel", upscale=2.0, enabled=False), Stage("e", handoff="pixel", upscale=1.25)])
    assert stage_sizes(p) == {0: (64, 48), 1: (96, 72), 2: (96, 72), 4: (120, 88)}
    assert stage_sizes(p, {4: 16}) == {0: (64, 48), 1: (96, 72), 2: (96, 72), 4: (128, 96)}


def test_upscale_validation_says_what_is_wrong():
    assert any("upscale 5 is outside 1..4" in m for m in problems(project(Stage("a"), Stage("b", upscale=5.0))))
    assert any("upscale 0.5 is outside 1..4" in m for m in problems(project(Stage("a"), Stage("b", upscale=0.5))))
    first = problems(project(Stage("a", upscale=2.0)))
    assert any("generates at the project size: upscale applies to a stage that refines" in m for m in first)
    ens = problems(project(Stage("a"), Stage("b", handoff="ensemble", upscale=2.0)))
    assert any("cannot change the size; use a pixel handoff to upscale" in m for m in ens)
    validate(project(Stage("a", upscale=2.0), init_image="x.png"))  # an init image can be upscaled


def test_sd_upscale_equals_plain_img2img_on_the_lanczos_resized_image(tiny_models, tmp_path):
    from diffusers import StableDiffusionImg2ImgPipeline

    sd = str(tiny_models["sd"])
    p = project(Stage(sd, steps=4), Stage(sd, steps=6, handoff="auto", strength=0.5, upscale=2.0))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "pixel"]
    assert done[1].image.size == (64, 64)
    # The viewer compares like with like: the stage's input is the resized image.
    assert done[1].input_image.size == (64, 64)
    assert np.array_equal(pixels(done[1].input_image), pixels(done[0].image.resize((64, 64), Image.LANCZOS)))

    base = load(tiny_models["sd"])
    first = base(PROMPT, num_inference_steps=4, guidance_scale=5.0, height=32, width=32, generator=generator(11)).images[0]
    second = StableDiffusionImg2ImgPipeline.from_pipe(base)(
        PROMPT, image=first.resize((64, 64), Image.LANCZOS), strength=0.5, num_inference_steps=6, guidance_scale=5.0,
        generator=generator(11)).images[0]
    assert np.array_equal(pixels(done[1].image), pixels(second))
    with Image.open(done[1].path) as im:
        assert im.size == (64, 64)
    restored = read_recipe(done[1].path).project
    assert restored.stages[1].upscale == 2.0


def test_flow_img2img_upscale_passes_the_new_size(tiny_models, tmp_path):
    from diffusers import ZImageImg2ImgPipeline

    zb, zt = str(tiny_models["zimage"]), str(tiny_models["zimage_turbo"])
    p = project(Stage(zb, steps=4, guidance=0.0),
                Stage(zt, steps=4, guidance=0.0, handoff="latent", strength=0.5, upscale=1.5))
    events = run_job(p, tmp_path)
    started, finished = of(events, ev.StageStarted), of(events, ev.StageFinished)
    assert started[1].handoff == "pixel" and "upscaling ×1.5 resizes the image" in started[1].note
    assert finished[1].image.size == (48, 48)
    base = load(tiny_models["zimage"])
    first = base(PROMPT, num_inference_steps=4, guidance_scale=0.0, height=32, width=32, generator=generator(11)).images[0]
    second = ZImageImg2ImgPipeline.from_pipe(load(tiny_models["zimage_turbo"]))(
        PROMPT, image=first.resize((48, 48), Image.LANCZOS), strength=0.5, num_inference_steps=4, guidance_scale=0.0,
        height=48, width=48, generator=generator(11)).images[0]
    assert np.array_equal(pixels(finished[1].image), pixels(second))


def test_sdxl_refiner_with_upscale_is_not_an_ensemble(tiny_models, tmp_path):
    p = project(Stage(str(tiny_models["sdxl"]), steps=6),
                Stage(str(tiny_models["sdxl_refiner"]), steps=6, strength=0.5, upscale=2.0))
    done = of(run_job(p, tmp_path), ev.StageFinished)
    assert done[1].handoff == "pixel" and done[1].image.size == (64, 64)


def test_a1111_hires_fix_round_trip():
    p = project(Stage("sdxl-base", steps=20), Stage("sdxl-base", steps=10, handoff="pixel", strength=0.45, upscale=2.0),
                size=512)
    text = a1111.write(p, 1)
    assert "Size: 512x512" in text and "Hires upscale: 2" in text and "Denoising strength: 0.45" in text
    assert "Steps: 20," in text and "Hires steps: 10" in text, "the base pass's steps, then the hires pass's"
    back = from_chunks({"parameters": text}, "x.png", lookup=ModelLookup([])).project
    assert (back.width, back.height) == (512, 512)
    assert [(s.handoff, s.upscale, s.steps) for s in back.stages] == [("auto", 1.0, 20), ("pixel", 2.0, 10)]
    assert back.stages[1].strength == 0.45


def test_cli_upscale(tiny_models, tmp_path, capsys):
    from core.cli import EXIT_USAGE, main

    init = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(init)
    out = tmp_path / "big.png"
    code = main(["generate", "x", "--model", str(tiny_models["sd"]), "--init-image", str(init), "--strength", "0.5",
                 "--steps", "4", "--seed", "1", "--upscale", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (64, 64)
    code = main(["generate", "x", "--model", str(tiny_models["sd"]), "--upscale", "2", "--out", str(out)])
    assert code == EXIT_USAGE
    assert "--upscale resizes an image before it is refined" in capsys.readouterr().err
