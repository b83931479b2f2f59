"""InvokeAI (all three formats), Fooocus (both schemes, PNG and JPEG) and NovelAI metadata
restore as projects naming the tool, with what could not be mapped listed."""
from __future__ import annotations

import json

from core.interop.detect import from_chunks
from core.metadata import read_recipe
from tests.interop_helpers import in_library, no_models, png_with, sample, with_exif


def chunks_read(chunks, size=None):
    return from_chunks(chunks, "image.png", size, lookup=no_models())


def test_invokeai_metadata():
    imported = chunks_read({"invokeai_metadata": sample("invokeai/invokeai_metadata-3.3.json")})
    p = imported.project
    assert imported.tool == "InvokeAI"
    assert (p.prompt, p.negative_prompt, p.width, p.height, p.seed) == ("landscape", "low quality", 768, 432, 356120443)
    s = p.stages[0]
    assert (s.model, s.steps, s.guidance, s.scheduler) == ("amixx_3Prunedfp16", 50, 7.5, "DPM++ 2M SDE Karras")
    assert any(u.startswith("vae:") for u in imported.unmapped)


def test_invokeai_sd_metadata_and_dream():
    old = chunks_read({"sd-metadata": sample("invokeai/sd-metadata-2.2.4.json")}).project
    assert old.prompt.startswith("amazing landscape photo") and (old.width, old.height) == (512, 768)
    assert (old.stages[0].model, old.stages[0].guidance, old.stages[0].scheduler, old.seed) == ("analog", 12.0, "Euler a",
                                                                                             2502935700)
    dream = chunks_read({"Dream": sample("invokeai/dream.txt")})
    assert dream.project.prompt == "there's a fly in my soup" and dream.project.seed == 2685670268
    assert "-n 6 (not applied)" in dream.unmapped and any("InvokeAI's defaults" in n for n in dream.notes)


def test_invokeai_2_negative_prompt_in_brackets():
    from core.interop.invokeai import split_negative

    assert split_negative("a lonely robot reading a book [blurry, text]") == ("a lonely robot reading a book", "blurry, text")


def test_the_dream_switches_with_and_without_spaces():
    from core.interop.invokeai import parse_dream
    from core.interop.reading import Where

    prompt, switches = parse_dream('"a cat" -s50 -W 640 -H480 -C7.5 -Ak_euler_a -U 2 0.75', Where("x"))
    assert prompt == "a cat" and switches["-s"] == ["50"] and switches["-W"] == ["640"] and switches["-A"] == ["k_euler_a"]
    assert switches["-U"] == ["2", "0.75"]


def test_fooocus_json_does_not_end_up_in_the_prompt():
    imported = chunks_read({"parameters": sample("fooocus/meta.json"), "fooocus_scheme": "fooocus"})
    p = imported.project
    assert imported.tool == "Fooocus" and not p.prompt.lstrip().startswith("{")
    # The prompt Fooocus encoded: styles and its V2 expansion applied.
    assert p.prompt.startswith("cinematic still A sunflower field") and "ambient background, pristine, creative" in p.prompt
    assert p.negative_prompt.startswith("(worst quality")
    s = p.stages[0]
    assert (s.model, s.steps, s.guidance, s.scheduler, p.width) == ("juggernautXL_v8Rundiffusion", 30, 4.0,
                                                                    "DPM++ 2M SDE Karras", 512)
    assert any("sd_xl_offset_example-lora_1.0" in u for u in imported.unmapped)
    assert sum("LoRA" in u for u in imported.unmapped) == 1, "the same LoRA from `loras` and `lora_combined_1`"


def test_fooocus_legacy_keys_and_a1111_scheme():
    legacy = chunks_read({"parameters": sample("fooocus/meta-legacy.json")})
    assert legacy.tool == "Fooocus" and legacy.project.prompt.startswith("dinosaur leashed, full color")
    assert legacy.project.stages[0].guidance == 1.0 and legacy.project.width == 1024
    assert sum(u.startswith("LoRA") for u in legacy.unmapped) == 2
    a1111 = chunks_read({"parameters": sample("fooocus/a1111-scheme.txt"), "fooocus_scheme": "a1111"})
    assert a1111.tool == "Fooocus" and a1111.project.stages[0].scheduler == "DPM++ 2M SDE Karras"
    assert any("Sharpness" in u for u in a1111.unmapped)


def test_fooocus_jpeg_exif_with_its_scheme_in_the_maker_note(tmp_path):
    path = with_exif(tmp_path / "fooocus.jpg", sample("fooocus/meta.json"), "JPEG", maker_note="fooocus",
                     in_exif_ifd=False)
    imported = read_recipe(path)
    assert imported.tool == "Fooocus" and imported.project.prompt.startswith("cinematic still")


def test_novelai(tmp_path):
    chunks = json.loads(sample("novelai/novelai1-chunks.json"))
    path = png_with(tmp_path / "nai.png", chunks, size=(512, 768))
    imported = read_recipe(path)
    p = imported.project
    assert imported.tool == "NovelAI"
    assert p.prompt == "masterpiece, best quality,  cat, space, icon" and p.negative_prompt.startswith("lowres, bad anatomy")
    assert (p.width, p.height, p.seed) == (512, 768, 2253955223)
    s = p.stages[0]
    assert (s.steps, s.guidance, s.scheduler, s.model) == (50, 10.0, "Euler a", "Stable Diffusion 1D44365E")
    assert any("runs only on NovelAI" in n for n in imported.notes)


def test_a_plain_png_has_no_recipe(tmp_path):
    path = png_with(tmp_path / "plain.png", {"Title": "holiday", "Software": "GIMP"})
    assert read_recipe(path) is None


def test_fooocus_loras_the_library_has_become_the_stages_loras(tmp_path):
    lora = in_library(tmp_path, "lora", "loras/sd_xl_offset_example-lora_1.0.safetensors")
    imported = chunks_read({"parameters": sample("fooocus/meta.json"), "fooocus_scheme": "fooocus"})
    assert [(lo.ref, lo.weight) for lo in imported.project.stages[0].loras] == [(lora, 0.1)]
    assert not any("LoRA" in u for u in imported.unmapped)


def test_invokeai_loras_and_hires_fix(tmp_path):
    lora = in_library(tmp_path, "lora", "loras/detail-tweaker.safetensors")
    esrgan = in_library(tmp_path, "upscaler", "upscale_models/RealESRGAN_x2plus.pth")
    meta = json.loads(sample("invokeai/invokeai_metadata-3.3.json"))
    # InvokeAI 3.x's own keys for these, on the sample: a LoRA and its hires fix at 1536x864.
    meta.update(width=1536, height=864, hrf_enabled=True, hrf_method="ESRGAN", hrf_strength=0.45,
                loras=[{"lora": {"model_name": "detail-tweaker", "base_model": "sd-1"}, "weight": 0.75},
                       {"lora": {"model_name": "not-here", "base_model": "sd-1"}, "weight": 1}])
    imported = chunks_read({"invokeai_metadata": json.dumps(meta)})
    p = imported.project
    base, hires = p.stages
    assert (p.width, p.height) == (680, 384), "InvokeAI's first pass: the SD 1.x native area at the final aspect"
    assert [(lo.ref, lo.weight) for lo in base.loras] == [(lora, 0.75)]
    assert (hires.handoff, hires.strength, hires.upscaler, hires.model) == ("pixel", 0.45, esrgan, base.model)
    assert round(680 * hires.upscale) == 1536
    assert any("LoRA 'not-here'" in u for u in imported.unmapped)
    assert not any(u.startswith(("hrf_", "loras")) for u in imported.unmapped)
