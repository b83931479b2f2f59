"""A stage's transformer from one file (GGUF, bf16 .safetensors in the original or ComfyUI
layout), and fp8 quantization: each gives the image plain diffusers gives with the same
file or setting, bit for bit, and a file that cannot be used is refused in one line
before anything loads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import events as ev
from core.errors import ProjectError
from core.models import ModelCache
from core.project import Project, Stage
from tests.engine_helpers import generator, of, pixels, run_job
from tests.gguf_export import export_gguf, export_safetensors, forge_gguf

PROMPT = "a red circle on a blue background"
STEPS, GUIDANCE, SEED = 3, 2.0, 11


def project(*stages) -> Project:
    return Project(prompt=PROMPT, width=32, height=32, seed=SEED, stages=list(stages))


def plain_zimage(folder: Path, transformer=None):
    """Plain diffusers: the pipeline over the folder, its transformer given."""
    from diffusers import ZImagePipeline

    extra = {} if transformer is None else {"transformer": transformer}
    pipe = ZImagePipeline.from_pretrained(str(folder), **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=32, width=32,
                generator=generator(SEED)).images[0]


def plain_transformer(folder: Path, path: Path, gguf: bool):
    import torch
    from diffusers import GGUFQuantizationConfig, ZImageTransformer2DModel

    extra = {"quantization_config": GGUFQuantizationConfig(compute_dtype=torch.float32)} if gguf else {}
    return ZImageTransformer2DModel.from_single_file(str(path), config=str(folder), subfolder="transformer",
                                                     torch_dtype=torch.float32, local_files_only=True, **extra)


def image(stages, tmp_path, models=None):
    return of(run_job(project(*stages), tmp_path, models), ev.StageFinished)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
def test_a_gguf_transformer_equals_diffusers_loading_it(tiny_models, tmp_path, quant):
    z = tiny_models["zimage"]
    gguf = export_gguf(tiny_models["zimage_turbo"], tmp_path / f"zit-{quant}.gguf", quant)
    done = image([Stage(str(z), steps=STEPS, guidance=GUIDANCE, transformer=str(gguf))], tmp_path / "job")
    expected = plain_zimage(z, plain_transformer(z, gguf, gguf=True))
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    # The file's weights ran, not the folder's own transformer.
    assert not np.array_equal(pixels(done[0].image), pixels(plain_zimage(z)))


def test_a_bf16_safetensors_in_either_layout_equals_diffusers(tiny_models, tmp_path):
    import torch

    z = tiny_models["zimage"]
    original = export_safetensors(tiny_models["zimage_turbo"], tmp_path / "zit.safetensors", torch.bfloat16)
    comfy = export_safetensors(tiny_models["zimage_turbo"], tmp_path / "zit-comfy.safetensors", torch.bfloat16,
                               comfyui=True)
    runs = [image([Stage(str(z), steps=STEPS, guidance=GUIDANCE, transformer=str(f))], tmp_path / f.stem)
            for f in (original, comfy)]
    expected = plain_zimage(z, plain_transformer(z, original, gguf=False))
    assert np.array_equal(pixels(runs[0][0].image), pixels(expected))
    assert np.array_equal(pixels(runs[1][0].image), pixels(expected))
    assert not np.array_equal(pixels(expected), pixels(plain_zimage(z)))


def test_a_refiner_transformer_leaves_stage_one_untouched(tiny_models, tmp_path, capsys):
    """--refiner-transformer on the CLI: the refine stage takes its transformer from the
    GGUF; stage 1 gives the image it gives without it."""
    from core.cli import main

    z, zit = tiny_models["zimage"], tiny_models["zimage_turbo"]
    gguf = export_gguf(z, tmp_path / "z-q8.gguf", "Q8_0")  # stage 2: the base's weights, as a GGUF

    def run(name, *extra):
        out = tmp_path / name / "final.png"
        code = main([str(a) for a in ("generate", PROMPT, "--model", z, "--refiner", zit, "--handoff", "pixel",
                                      "--refiner-strength", "0.6", "--steps", STEPS, "--guidance", GUIDANCE,
                                      "--seed", SEED, "--size", "32x32", "--out", out, *extra)])
        assert code == 0, capsys.readouterr().err
        return [pixels(Image.open(f)) for f in (out.parent / "final-1-base.png", out)]

    plain_base, plain_final = run("plain")
    base, final = run("gguf", "--refiner-transformer", gguf)
    assert np.array_equal(base, plain_base)
    assert not np.array_equal(final, plain_final)
    # The refine stage is plain diffusers' img2img with the GGUF's transformer, on stage 1's image.
    from diffusers import ZImageImg2ImgPipeline

    pipe = ZImageImg2ImgPipeline.from_pretrained(str(zit), transformer=plain_transformer(zit, gguf, gguf=True))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(PROMPT, image=Image.open(tmp_path / "gguf" / "final-1-base.png").convert("RGB"), strength=0.6,
                    num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=32, width=32,
                    generator=generator(SEED)).images[0]
    assert np.array_equal(final, pixels(expected))
    code = main(["generate", PROMPT, "--model", str(z), "--refiner-transformer", str(gguf), "--out",
                 str(tmp_path / "x.png")])
    assert code != 0 and "--refiner-transformer and --refiner-quantize need --refiner" in capsys.readouterr().err


def _boosted(folder: Path, dest: Path) -> Path:
    """A copy of the Z-Image folder with its transformer's weights scaled up, so that fp8
    rounding (3 mantissa bits) shows in the image."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, dest)
    f = dest / "transformer" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(f))
    save_file({k: (v * 3.7 if v.ndim == 2 else v) for k, v in sd.items()}, str(f))
    return dest


def test_fp8_equals_diffusers_layerwise_casting(tiny_models, tmp_path):
    import torch
    from diffusers import ZImageTransformer2DModel

    z = _boosted(tiny_models["zimage"], tmp_path / "boosted")
    done = image([Stage(str(z), steps=STEPS, guidance=GUIDANCE, quantize="fp8")], tmp_path / "fp8")
    transformer = ZImageTransformer2DModel.from_pretrained(str(z), subfolder="transformer", torch_dtype=torch.float32)
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert np.array_equal(pixels(done[0].image), pixels(plain_zimage(z, transformer)))
    assert not np.array_equal(pixels(done[0].image), pixels(plain_zimage(z)))


def test_an_fp8_safetensors_stays_fp8_and_equals_diffusers(tiny_models, tmp_path):
    import torch

    z = tiny_models["zimage"]
    fp8 = export_safetensors(_boosted(tiny_models["zimage_turbo"], tmp_path / "boosted"), tmp_path / "zit-fp8.safetensors",
                             torch.float8_e4m3fn, comfyui=True)
    models = ModelCache()
    done = image([Stage(str(z), steps=STEPS, guidance=GUIDANCE, transformer=str(fp8))], tmp_path / "job", models)
    transformer = plain_transformer(z, fp8, gguf=False)
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert np.array_equal(pixels(done[0].image), pixels(plain_zimage(z, transformer)))
    loaded = next(iter(models.loaded.values())).pipe.transformer
    assert torch.float8_e4m3fn in {p.dtype for p in loaded.parameters()}, "the weights are kept in fp8"


def test_quantized_pipelines_are_cached_by_setting(tiny_models, tmp_path):
    z = tiny_models["zimage"]
    models = ModelCache()
    image([Stage(str(z), steps=2, quantize="fp8")], tmp_path / "a", models)
    image([Stage(str(z), steps=2)], tmp_path / "b", models)
    image([Stage(str(z), steps=2, quantize="fp8")], tmp_path / "c", models)
    assert len(models.loaded) == 2
    import torch

    stored = {str(p.dtype) for m in models.loaded.values() for p in m.pipe.transformer.parameters()}
    assert str(torch.float8_e4m3fn) in stored and str(torch.float32) in stored


def _refused(stage, tmp_path) -> str:
    events = run_job(project(stage), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    assert failed and not of(events, ev.StageStarted)
    return failed[0].message


def test_a_gguf_of_another_family_is_refused_in_one_line(tiny_models, tmp_path):
    flux = forge_gguf(tmp_path / "flux-q8.gguf", {"double_blocks.0.img_attn.qkv.weight": (96, 32),
                                                  "single_blocks.0.linear1.weight": (96, 32)}, "Q8_0")
    message = _refused(Stage(str(tiny_models["zimage"]), transformer=str(flux)), tmp_path)
    assert "flux-q8.gguf is a Flux.1 denoiser; the stage's model is Z-Image" in message
    assert "\n" not in message.strip() or message.count("\n") <= 1


def test_a_unet_gguf_tells_sdxl_from_sd_by_its_names(tmp_path):
    from core.denoisers import describe_denoiser

    unet = {"input_blocks.0.0.weight": (32, 64), "out.2.weight": (32, 64), "time_embed.0.weight": (32, 64)}
    sd = forge_gguf(tmp_path / "sd15-q8.gguf", unet, "Q8_0")
    sdxl = forge_gguf(tmp_path / "sdxl-q8.gguf", {**unet, "label_emb.0.0.weight": (32, 64)}, "Q8_0")
    assert (describe_denoiser(sd).family, describe_denoiser(sd).quant) == ("sd", "Q8_0")
    assert describe_denoiser(sdxl).family == "sdxl"


def test_an_unknown_quant_type_is_refused_in_one_line(tiny_models, tmp_path):
    from tests.gguf_export import zimage_original

    _, state = zimage_original(tiny_models["zimage"])
    # Z-Image's tensor names, typed IQ2_XXS (256-wide blocks), which diffusers cannot dequantize.
    odd = forge_gguf(tmp_path / "z-iq2.gguf", {k: (v.shape[0], 256) for k, v in state.items() if v.ndim == 2},
                     "IQ2_XXS")
    message = _refused(Stage(str(tiny_models["zimage"]), transformer=str(odd)), tmp_path)
    assert "z-iq2.gguf: quant type IQ2_XXS cannot be read" in message


def test_int8_equals_diffusers_torchao_weight_only(tiny_models, tmp_path):
    pytest.importorskip("torchao")
    import torch
    from diffusers import TorchAoConfig, ZImageTransformer2DModel
    from torchao.quantization import Int8WeightOnlyConfig

    z = _boosted(tiny_models["zimage"], tmp_path / "boosted")
    done = image([Stage(str(z), steps=STEPS, guidance=GUIDANCE, quantize="int8")], tmp_path / "int8")
    transformer = ZImageTransformer2DModel.from_pretrained(
        str(z), subfolder="transformer", torch_dtype=torch.float32,
        quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    assert np.array_equal(pixels(done[0].image), pixels(plain_zimage(z, transformer)))
    assert not np.array_equal(pixels(done[0].image), pixels(plain_zimage(z)))


def test_quantize_settings_that_cannot_run_here_are_refused(tiny_models, tmp_path, monkeypatch):
    import sys

    message = _refused(Stage(str(tiny_models["zimage"]), quantize="nf4"), tmp_path / "nf4")
    assert "nf4 needs a CUDA GPU and bitsandbytes" in message
    gguf = export_gguf(tiny_models["zimage"], tmp_path / "z-q8.gguf", "Q8_0")
    message = _refused(Stage(str(tiny_models["zimage"]), transformer=str(gguf), quantize="fp8"), tmp_path / "twice")
    assert "z-q8.gguf is already quantized (Q8_0): set quantize to none" in message
    monkeypatch.setitem(sys.modules, "torchao", None)  # as where torchao is not installed
    message = _refused(Stage(str(tiny_models["zimage"]), quantize="int8"), tmp_path / "int8")
    assert "int8 needs torchao (pip install '.[quant]')" in message
    with pytest.raises(ProjectError, match="quantize 'int4' is not one of none, fp8, int8, nf4"):
        from core.project import validate

        validate(project(Stage(str(tiny_models["zimage"]), quantize="int4")))


def test_the_library_lists_a_gguf_in_unet_with_family_and_quant(tiny_models, tmp_path):
    from core.model_library import scan_comfyui

    root = tmp_path / "ComfyUI" / "models"
    (root / "checkpoints").mkdir(parents=True)
    export_gguf(tiny_models["zimage"], root / "unet" / "z-image-q4.gguf", "Q4_0")
    entries = {e.name: e for e in scan_comfyui(root)}
    entry = entries["z-image-q4"]
    assert entry.family == "zimage" and entry.quant == "Q4_0" and entry.kind == "denoiser"
    assert entry.ref == str((root / "unet" / "z-image-q4.gguf").resolve())
