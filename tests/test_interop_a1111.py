"""Automatic1111/Forge `parameters`: real infotexts restore as projects (PNG text chunk,
JPEG and WebP EXIF UserComment), and what Handoff writes describes the whole job and keeps
every field through A1111's own parsing logic."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.interop import a1111
from core.interop.detect import from_chunks
from core.metadata import read_recipe
from core.project import Project, Stage
from tests.interop_helpers import no_models, png_with, sample, user_comment, with_exif


# ---------------------------------------------------------------- A1111's parser, reimplemented
# From A1111's documented behaviour (modules/infotext_utils.py, parse_generation_parameters):
# the last line holds the fields when A1111's field pattern finds at least three there; the
# lines before are the prompt, up to one starting "Negative prompt:", then the negative; a
# value in double quotes is JSON and is unquoted; a WIDTHxHEIGHT value becomes KEY-1, KEY-2.

_A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_parse_generation_parameters(x: str) -> dict[str, str]:
    res: dict[str, str] = {}
    all_lines = x.strip().split("\n")
    last = all_lines[-1]
    body = all_lines[:-1]
    if len(_A1111_PARAM.findall(last)) < 3:
        body, last = all_lines, ""
    positive: list[str] = []
    negative: list[str] = []
    target = positive
    for raw in body:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[16:].strip()
        target.append(line)
    res["Prompt"], res["Negative prompt"] = "\n".join(positive), "\n".join(negative)
    for key, value in _A1111_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        size = re.match(r"^(\d+)x(\d+)$", value)
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    return res


# ---------------------------------------------------------------- reading real infotexts


def read(text: str, **chunks):
    return from_chunks({"parameters": text, **chunks}, "image.png", lookup=no_models())


def test_hires_fix_with_the_latent_upscaler_and_extensions():
    imported = read(sample("a1111/landscape-hires-latent-adetailer.txt"))
    p = imported.project
    assert imported.tool == "Automatic1111"
    assert (p.prompt, p.negative_prompt, p.width, p.height, p.seed) == ("landscape,", "", 640, 384, 2541958852)
    base, hires = p.stages
    assert (base.model, base.steps, base.guidance, base.scheduler) == ("dreamshaper_8", 30, 7.0, "DPM++ 2M SDE Karras")
    # A latent upscale ×1.5 becomes a pixel upscale (Handoff resizes pixels), and says so.
    assert (hires.handoff, hires.upscale, hires.strength, hires.steps) == ("pixel", 1.5, 0.5, 30)
    assert any("Handoff upscales pixels only" in n for n in imported.notes)
    unmapped = "\n".join(imported.unmapped)
    assert "ADetailer (10 fields" in unmapped and "FreeU" in unmapped and "Clip skip: 2" in unmapped
    assert "not in your model library" in "\n".join(imported.notes) and "dreamshaper_8.safetensors" in "\n".join(imported.notes)


def test_old_latent_upscaler_at_twice_and_an_upscaler_model():
    latent = read(sample("a1111/hires-latent-antialiased.txt"))
    assert [(s.handoff, s.upscale, s.steps) for s in latent.project.stages] == [("auto", 1.0, 20), ("pixel", 2.0, 1)]
    assert any("Denoising strength' 0 cannot run" in n for n in latent.notes)  # kept, and said: validation refuses it
    model = read(sample("a1111/hires-ultrasharp.txt"))
    hires = model.project.stages[1]
    assert (hires.handoff, hires.upscale, hires.steps, hires.strength) == ("pixel", 2.0, 30, 0.45)
    assert any("upscaler model '4x-UltraSharp' not applied" in n for n in model.notes)
    assert "Image noise multiplier: 0.2 (not applied)" in model.unmapped


def test_lora_tags_are_removed_from_the_prompt_and_listed():
    imported = read(sample("a1111/sdcpp-lora-tags.txt"))
    p = imported.project
    assert "<lora" not in p.prompt and p.prompt.startswith("score_9, score_8_up") and p.prompt.endswith("(poppy seeds:1.2)")
    loras = [u for u in imported.unmapped if u.startswith("LoRA")]
    assert len(loras) == 2 and "'SDXL/size_slider_v1' at weight 1.7" in loras[1]
    # stable-diffusion.cpp's sampler name is no A1111 sampler: a notice, and the model's own scheduler.
    assert p.stages[0].scheduler is None and any("euler_a karras" in n for n in imported.notes)


def test_the_parser_docstring_sample_and_an_sdxl_one():
    p = read(sample("a1111/parse-docstring.txt")).project
    assert p.negative_prompt.startswith("ugly, fat") and p.stages[0].scheduler == "Euler a" and p.seed == 965400086
    p = read(sample("a1111/wiki-hero.txt")).project
    assert (p.width, p.stages[0].steps, p.stages[0].guidance, p.stages[0].scheduler) == (1024, 50, 5.0, "DPM++ 2M Karras")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
@pytest.mark.parametrize("charset", ["unicode-be", "unicode-le"])
def test_jpeg_and_webp_user_comment(tmp_path, fmt, suffix, charset):
    text = sample("a1111/hires-ultrasharp.txt")
    path = with_exif(tmp_path / f"a1111.{suffix}", user_comment(text, charset), fmt)
    imported = read_recipe(path)
    assert imported.tool == "Automatic1111" and imported.project.prompt.startswith("hakurei reimu")
    assert imported.project.stages[1].upscale == 2.0


def test_a_png_with_a1111_parameters(tmp_path):
    path = png_with(tmp_path / "a.png", {"parameters": sample("a1111/wiki-hero.txt")})
    imported = read_recipe(path)
    assert imported.tool == "Automatic1111" and imported.project.seed == 42


# ---------------------------------------------------------------- what Handoff writes


def _written(project: Project, index: int | None = None) -> dict[str, str]:
    return a1111_parse_generation_parameters(a1111.write(project, index))


def test_a_base_plus_hires_job_is_described_by_its_base_pass():
    p = Project(prompt="a castle", negative_prompt="", width=512, height=768, seed=3, stages=[
        Stage("sd-model.safetensors", steps=20, guidance=6.0, scheduler="DPM++ 2M Karras"),
        Stage("sd-model.safetensors", steps=12, guidance=6.0, handoff="pixel", strength=0.4, upscale=2.0)])
    f = _written(p)
    assert (f["Steps"], f["Sampler"], f["Schedule type"], f["CFG scale"]) == ("20", "DPM++ 2M", "Karras", "6")
    assert (f["Size-1"], f["Size-2"], f["Model"]) == ("512", "768", "sd-model")
    assert (f["Hires upscale"], f["Hires steps"], f["Denoising strength"], f["Hires upscaler"]) == ("2", "12", "0.4", "Lanczos")
    assert "Hires checkpoint" not in f and f["Negative prompt"] == ""
    assert "\nNegative prompt: " in a1111.write(p), "always a Negative prompt line (ComfyUI's importer needs it)"


def test_an_sdxl_ensemble_is_a1111s_refiner():
    p = Project(prompt="a lighthouse", seed=5, stages=[
        Stage("stabilityai/stable-diffusion-xl-base-1.0", steps=40),
        Stage("stabilityai/stable-diffusion-xl-refiner-1.0", steps=40, handoff="ensemble", switch_at=0.8)])
    f = _written(p)
    assert (f["Refiner"], f["Refiner switch at"], f["Steps"]) == ("stabilityai/stable-diffusion-xl-refiner-1.0", "0.8", "40")
    assert "Hires upscale" not in f
    back = read(a1111.write(p)).project
    assert [(s.model, s.handoff, s.switch_at) for s in back.stages] == [
        ("stabilityai/stable-diffusion-xl-base-1.0", "auto", 0.8), ("stabilityai/stable-diffusion-xl-refiner-1.0", "ensemble", 0.8)]


def test_a_cross_family_chain_names_both_passes():
    p = Project(prompt="a knight", seed=77, stages=[
        Stage("black-forest-labs/FLUX.1-dev", steps=28, guidance=3.5),
        Stage("Tongyi-MAI/Z-Image-Turbo", steps=8, guidance=0.0, handoff="pixel", strength=0.5,
              prompt_suffix="intricate metal detail")])
    f = _written(p)
    assert (f["Model"], f["Steps"], f["CFG scale"]) == ("black-forest-labs/FLUX.1-dev", "28", "3.5")
    assert (f["Hires checkpoint"], f["Hires steps"], f["Hires CFG Scale"]) == ("Tongyi-MAI/Z-Image-Turbo", "8", "0")
    assert f["Hires prompt"] == "a knight, intricate metal detail"
    assert f["Sampler"] == "Euler" and f["Schedule type"] == "Simple"  # a flow-matching model's own scheduler
    stages = f["Handoff stages"]
    assert "1 generate | black-forest-labs/FLUX.1-dev | 28 steps" in stages and "2 pixel at 0.5 | Tongyi-MAI/Z-Image-Turbo" in stages


def test_a_stage_png_describes_the_job_up_to_that_stage():
    p = Project(prompt="x", seed=1, stages=[Stage("a/base", steps=10), Stage("a/refine", steps=4, handoff="pixel")])
    first = _written(p, 0)
    assert first["Model"] == "a/base" and "Hires checkpoint" not in first and "Handoff stages" not in first
    assert first["Handoff stage"] == "1/2"


def test_the_model_default_scheduler_is_named_from_its_files():
    # The built-in demo ships EulerDiscreteScheduler: that is the sampler written, not "Default".
    p = Project(prompt="a red circle", seed=1, width=64, height=64, stages=[Stage("builtin:demo-base", steps=8)])
    f = _written(p)
    assert (f["Sampler"], f["Schedule type"]) == ("Euler", "Normal")


def test_the_model_hash_is_written_when_known(tmp_path):
    from core.models import Digests

    ckpt = tmp_path / "my-model.safetensors"
    ckpt.write_bytes(b"\0" * 64)
    p = Project(prompt="x", seed=1, stages=[Stage(str(ckpt), steps=10)])
    assert "Model hash" not in _written(p), "never hashed while writing"
    digest = Digests().of(ckpt)
    assert _written(p)["Model hash"] == digest[:10]


_LINE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).map(str.strip).filter(
    lambda s: s and not s.startswith("Negative prompt:"))
_TEXT = st.lists(_LINE, min_size=1, max_size=3).map("\n".join)


@settings(max_examples=60, deadline=None)
@given(prompt=_TEXT, negative=st.one_of(st.just(""), _TEXT), suffix=st.one_of(st.just(""), _LINE),
       steps=st.integers(1, 150), hires_steps=st.integers(1, 150), guidance=st.floats(0, 30).map(lambda x: round(x, 2)) | st.floats(0, 30),
       seed=st.integers(0, 2**64 - 1), strength=st.floats(0.01, 1).map(lambda x: round(x, 3)),
       upscale=st.sampled_from([1.0, 1.25, 1.5, 2.0, 4.0]), scheduler=st.sampled_from([None, "Euler a", "DPM++ 2M SDE Karras", "UniPC"]),
       refiner=st.booleans())
def test_every_field_survives_a1111s_parser(prompt, negative, suffix, steps, hires_steps, guidance, seed, strength, upscale,
                                            scheduler, refiner):
    stages = [Stage("owner/base-model", steps=steps, guidance=guidance, scheduler=scheduler)]
    if refiner:
        stages.append(Stage("owner/refiner: v2, final", steps=steps, handoff="ensemble", switch_at=0.75))
    stages.append(Stage("owner/hires", steps=hires_steps, guidance=round(guidance + 1, 2), handoff="pixel", strength=strength,
                        upscale=upscale, prompt_suffix=suffix))
    p = Project(prompt=prompt, negative_prompt=negative, width=512, height=640, seed=seed, stages=stages)
    f = _written(p)
    assert f["Prompt"] == prompt and f["Negative prompt"] == negative
    assert (f["Steps"], f["Seed"], f["Size-1"], f["Size-2"], f["Model"]) == (str(steps), str(seed), "512", "640",
                                                                             "owner/base-model")
    assert float(f["CFG scale"]) == guidance and float(f["Hires CFG Scale"]) == round(guidance + 1, 2)
    assert (f["Hires checkpoint"], f["Hires steps"]) == ("owner/hires", str(hires_steps))
    assert float(f["Denoising strength"]) == strength and float(f["Hires upscale"]) == upscale
    assert f.get("Hires prompt", prompt) == stages[-1].effective_prompt(prompt)
    if refiner:
        assert (f["Refiner"], f["Refiner switch at"]) == ("owner/refiner: v2, final", "0.75")
    # And Handoff's own reader takes back what the fields hold.
    back = read(a1111.write(p)).project
    assert (back.prompt, back.negative_prompt, back.seed, back.stages[0].steps) == (prompt, negative, seed, steps)
    assert back.stages[0].scheduler == (scheduler or "Euler")
    assert (back.stages[-1].upscale, back.stages[-1].strength, back.stages[-1].steps) == (upscale, strength, hires_steps)


def test_a_prompt_that_starts_with_a_brace_is_a1111_not_json(tmp_path):
    """Dynamic prompts write {a|b}: such a `parameters` text is A1111's, not a JSON document."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from core.metadata import read_recipe

    info = PngInfo()
    info.add_text("parameters", "{red|blue} circle\nNegative prompt: \nSteps: 12, Sampler: Euler, CFG scale: 5, "
                                "Seed: 3, Size: 64x64, Model: demo")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", pnginfo=info)
    imported = read_recipe(tmp_path / "x.png")
    assert imported.tool == "Automatic1111" and imported.project.prompt == "{red|blue} circle"
