"""The memory planner (core.memory_plan): its byte counts are the bytes actually loaded
(tiny pipelines, exactly), its estimates for full-size models (built on the meta device,
no weights) stand beside the VRAM table of the ERNIE + Z-Image seed, it picks the
cheapest placement that fits a budget (a decode in tiles before a costlier placement), and
refuses a job that cannot fit with the numbers.

Full-size configs and their sources:
- ERNIE-Image transformer: diffusers' ErnieImageTransformer2DModel defaults (2.8B).
- Z-Image Turbo transformer: diffusers' ZImageTransformer2DModel defaults (6.15B).
- Z-Image's text encoder: Qwen3-4B's public config (hidden 2560, 36 layers, MLP 9728,
  32 heads, 8 KV heads, vocab 151936, tied embeddings).
- ERNIE-Image's text encoder (a Mistral3Model): a Ministral-3-3B-sized text model written
  here from memory of its public config (26 layers, MLP 9216, 32/8 heads, vocab 131072),
  its width set to the transformer's text_in_dim (2560) which it must feed; Pixtral vision
  tower at transformers' defaults. An approximation: stated, not verified against a file.
- VAEs: AutoencoderKLFlux2 defaults (ERNIE, 128 latent channels after patching) and
  AutoencoderKL with the FLUX.1 VAE config (Z-Image uses FLUX's VAE).
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from core.errors import ProjectError
from core.memory_check import decode_bytes, tiled_decode_bytes, vae_tile
from core.memory_plan import (StageNeeds, activation_bytes, choose, module_bytes, parse_budget, peak,
                              stage_needs)
from core.models import parse_ref, resolve
from core.project import Stage
from tests.benchmarks.bench_gpu import ROWS, estimate, measure, missing_library

GB = 10 ** 9
TOLERANCE = 0.25  # the planner's estimate against the seed's figure
FLUX_VAE_TILE = (1024, 8)  # the FLUX.1 VAE's sample_size and its 8x latent scale
SEED = {"ernie_alone": 12 * GB, "both_resident": 24 * GB}  # "VRAM Requirements", ernie-zimage seed


def _meta(build):
    import torch

    with torch.device("meta"):
        return build().to(torch.bfloat16)


def _full_size() -> dict[str, dict[str, object]]:
    from diffusers import AutoencoderKL, AutoencoderKLFlux2, ErnieImageTransformer2DModel, ZImageTransformer2DModel
    from transformers import Mistral3Config, Mistral3Model, Qwen3Config, Qwen3Model

    qwen3_4b = Qwen3Config(hidden_size=2560, num_hidden_layers=36, intermediate_size=9728, num_attention_heads=32,
                           num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)
    ministral = Mistral3Config(text_config=dict(model_type="ministral", hidden_size=2560, num_hidden_layers=26,
                                                intermediate_size=9216, num_attention_heads=32, num_key_value_heads=8,
                                                head_dim=128, vocab_size=131072, tie_word_embeddings=True))
    flux_vae = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                    layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False)
    return {
        "ernie": {"text_encoder": _meta(lambda: Mistral3Model(ministral)),
                  "transformer": _meta(ErnieImageTransformer2DModel), "vae": _meta(AutoencoderKLFlux2)},
        "zimage_turbo": {"text_encoder": _meta(lambda: Qwen3Model(qwen3_4b)),
                         "transformer": _meta(ZImageTransformer2DModel),
                         "vae": _meta(lambda: AutoencoderKL(**flux_vae))},
    }


def _needs(label: str, model: str, modules: dict, size=(1024, 1024), itemsize=2, denoiser_share=1.0) -> StageNeeds:
    components = {n: module_bytes(m) for n, m in modules.items()}
    components["transformer"] = int(components["transformer"] * denoiser_share)
    largest = max(p.numel() * p.element_size() for m in modules.values() for p in m.parameters())
    return StageNeeds(label, model, components, largest, activation_bytes(*size, itemsize),
                      decode_bytes(*size, 128, itemsize),
                      tiled_decode=tiled_decode_bytes(*size, 128, itemsize, FLUX_VAE_TILE))


@pytest.fixture(scope="module")
def full_size():
    return _full_size()


def test_estimates_stand_beside_the_seeds_table(full_size):
    ernie = _needs("stage 1", "ernie", full_size["ernie"])
    zit = _needs("stage 2", "zimage_turbo", full_size["zimage_turbo"])
    ernie_alone, both = peak([ernie], "resident"), peak([ernie, zit], "resident")
    fp8 = _needs("stage 1", "ernie", full_size["ernie"], denoiser_share=0.5)  # fp8: one byte, not two
    q4 = _needs("stage 1", "ernie", full_size["ernie"], denoiser_share=0.25)  # a 4-bit GGUF, about a quarter
    rows = [("ERNIE-Image Turbo alone (bf16)", ernie_alone, SEED["ernie_alone"]),
            ("ERNIE + Z-Image Turbo resident", both, SEED["both_resident"]),
            ("ERNIE + Z-Image Turbo, text encoders released", both - ernie.components["text_encoder"]
             - zit.components["text_encoder"], SEED["both_resident"]),
            ("ERNIE-Image Turbo alone, fp8 denoiser", peak([fp8], "resident"), None),
            ("ERNIE-Image Turbo alone, 4-bit GGUF denoiser", peak([q4], "resident"), None)]
    print()
    for name, estimate, seed in rows:
        print(f"{name:48s} planner {estimate / GB:6.1f} GB   seed {'—' if seed is None else f'~{seed / GB:.0f} GB'}")
    for name, n in (*ernie.components.items(), *(("zit " + k, v) for k, v in zit.components.items())):
        print(f"  {name:20s} {n / GB:6.2f} GB")
    assert abs(ernie_alone - SEED["ernie_alone"]) <= TOLERANCE * SEED["ernie_alone"]
    # The seed's 24 GB keeps both denoisers and VAEs (ComfyUI frees a text encoder after use);
    # the planner keeps every component resident, so its figure is higher, never lower.
    assert abs(rows[2][1] - SEED["both_resident"]) <= TOLERANCE * SEED["both_resident"]
    assert both > SEED["both_resident"]
    weights = ernie.components["transformer"]
    assert peak([fp8], "resident") == ernie_alone - weights // 2
    assert peak([q4], "resident") == ernie_alone - weights + weights // 4


def test_budget_picks_the_cheapest_placement_that_fits(full_size):
    ernie = _needs("stage 1", "ernie", full_size["ernie"])
    zit = _needs("stage 2", "zimage_turbo", full_size["zimage_turbo"])
    job = [ernie, zit]
    for budget, expected in [(80 * GB, "resident"), (24 * GB, "sequential"), (16 * GB, "offload"),
                             (6 * GB, "group")]:
        plan = choose(job, budget, "VRAM budget")
        assert plan.placement == expected, budget
        assert plan.peak() <= budget
    table = choose(job, 24 * GB, "VRAM budget").table()
    print("\n" + table)
    assert "stage 2  transformer" in table and "sequential" in table.splitlines()[-1]
    assert choose(job, 0, "RAM", device="cpu").placement == "resident"
    assert "no GPU" in choose(job, 0, "RAM", device="cpu").table()
    assert choose(job, 6 * GB, "VRAM budget", policy="resident").placement == "resident"  # asked for


def test_under_offload_each_stage_that_fits_more_of_itself_gets_the_lighter_placement(full_size):
    """ERNIE-Image Turbo then Z-Image Turbo on a card that holds ERNIE's whole stage but not
    Z-Image's (its 4B text encoder and 6B transformer): ERNIE runs whole on the GPU for its
    turn, Z-Image one component at a time; on a smaller card each stage one layer at a time
    only where one component does not fit."""
    ernie = _needs("stage 1", "ernie", full_size["ernie"])
    zit = _needs("stage 2", "zimage_turbo", full_size["zimage_turbo"])
    budget = ernie.weights + ernie.working + 2**30
    assert zit.weights + zit.working > budget  # Z-Image's stage does not fit whole: no sequential job
    plan = choose([ernie, zit], budget, "VRAM budget")
    assert plan.placement == "offload"
    assert (plan.placement_of(0), plan.placement_of(1)) == ("sequential", "offload")
    assert plan.peak() <= budget
    table = plan.table()
    print("\n" + table)
    assert re.search(r"stage 1 +transformer +\S+ GiB +GPU \(its stage\)", table)
    assert re.search(r"stage 2 +transformer +\S+ GiB +CPU, to GPU when used", table)
    assert "; stage 1 whole on the GPU for its turn;" in table.splitlines()[-1]
    # One layer at a time only for the stage whose largest component does not fit.
    budget = max(ernie.components.values()) + ernie.working + 2**20
    assert max(zit.components.values()) + zit.working > budget
    plan = choose([ernie, zit], budget, "VRAM budget")
    assert (plan.placement, plan.placement_of(0), plan.placement_of(1)) == ("group", "offload", "group")
    # Resident and sequential jobs place every stage alike.
    assert {choose([ernie, zit], 80 * GB, "VRAM budget").placement_of(i) for i in (0, 1)} == {"resident"}


def test_a_decode_that_fits_only_in_tiles_is_tiled_before_a_costlier_placement(full_size):
    """Z-Image Turbo at 2048 px: the whole decode (4 GiB) is most of what the job needs beyond its
    weights; in the FLUX VAE's 1024 px tiles it is about a quarter of that."""
    zit = _needs("stage 1", "zimage_turbo", full_size["zimage_turbo"], size=(2048, 2048))
    assert zit.tiled_decode < zit.decode // 3 and zit.activations < zit.tiled_decode
    weights, biggest = zit.weights, max(zit.components.values())
    # Room for the tiled decode beside every weight: resident, tiled, although the whole decode
    # would fit one component at a time (offload): tiling is the cheaper remedy.
    plan = choose([zit], weights + 2 * 2**30, "VRAM budget")
    assert (plan.placement, plan.stages[0].vae_tiling) == ("resident", True)
    assert peak([zit], "offload") <= plan.budget < peak([zit], "resident") and plan.peak() <= plan.budget
    assert plan.vae_tiling(0) and not plan.vae_tiling(1)
    table = plan.table()
    print("\n" + table)
    assert re.search(r"stage 1 +vae decode +1\.1 GiB .*\(tiled: the whole image at once, 4\.0 GiB, would not fit\)",
                     table)
    assert "plan: resident — every model of the job fits at once, the VAE decoding in tiles (stage 1)" in table
    # Room for the whole decode: untiled.
    plan = choose([zit], weights + 5 * 2**30, "VRAM budget")
    assert (plan.placement, plan.stages[0].vae_tiling) == ("resident", False)
    assert re.search(r"stage 1 +vae decode +4\.0 GiB .*\(untiled: fits\)", plan.table())
    # One layer at a time, tiled, rather than refused.
    plan = choose([zit], zit.largest_tensor + 2 * 2**30, "VRAM budget")
    assert (plan.placement, plan.stages[0].vae_tiling) == ("group", True) and plan.peak() <= plan.budget
    # An asked placement decodes in tiles where its budget needs them; a CPU job where the RAM does.
    asked = choose([zit], biggest + 2 * 2**30, "VRAM budget", policy="offload")
    assert (asked.placement, asked.stages[0].vae_tiling) == ("offload", True)
    assert not choose([zit], 64 * 2**30, "available RAM", device="cpu").stages[0].vae_tiling
    cpu = choose([zit], 2 * 2**30, "available RAM", device="cpu")
    assert (cpu.placement, cpu.stages[0].vae_tiling) == ("resident", True) and "tiled:" in cpu.table()


def test_the_tiles_are_read_from_the_vae_config(tiny_models, tmp_path):
    import json

    assert vae_tile(tiny_models["sd"]) == (32, 2)  # tests/tiny_pipelines: sample_size 32, two blocks
    assert vae_tile(None) == (512, 8)  # a single-file checkpoint: SD's
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLQwenImage"}))
    assert vae_tile(tmp_path) is None  # tiles of its own: never planned
    # An image within one tile decodes whole; beyond, the tiled estimate barely grows with the size.
    assert tiled_decode_bytes(1024, 1024, 128, 2, FLUX_VAE_TILE) == decode_bytes(1024, 1024, 128, 2)
    assert tiled_decode_bytes(4096, 4096, 128, 2, FLUX_VAE_TILE) < 2 * tiled_decode_bytes(2048, 2048, 128, 2,
                                                                                           FLUX_VAE_TILE)


def test_a_job_that_cannot_fit_one_layer_at_a_time_is_refused(full_size):
    big = _needs("stage 1", "zimage_turbo", full_size["zimage_turbo"], size=(4096, 4096))
    with pytest.raises(ProjectError) as err:
        choose([big], 2 * GB, "VRAM budget")
    message = str(err.value)
    assert "stage 1 cannot fit in 1.9 GiB of VRAM budget" in message and "\n" not in message
    assert "largest layer" in message
    assert "its activations or decode (2.0 GiB, the decode in tiles)" in message  # refused only tiled too


@pytest.mark.parametrize("text,expected", [("12G", 12 * 2**30), ("12GiB", 12 * 2**30), ("800M", 800 * 2**20),
                                           ("1.5g", int(1.5 * 2**30)), ("4096", 4096), ("64KB", 64 * 1024)])
def test_budget_sizes(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["", "twelve", "-1G", "0", "12X"])
def test_bad_budget_is_one_line(text):
    with pytest.raises(ProjectError, match="is not a size like 12G"):
        parse_budget(text)


@pytest.mark.parametrize("name,dtype", [("sd", "float32"), ("sdxl", "bfloat16"), ("zimage_turbo", "bfloat16")])
def test_header_counts_equal_the_loaded_parameters(tiny_models, name, dtype):
    """The planner reads only headers; its counts are the bytes of what loads, exactly."""
    import torch
    from diffusers import DiffusionPipeline

    resolved = resolve(parse_ref(str(tiny_models[name])))
    p = SimpleNamespace(resolved=resolved, stage=Stage(str(tiny_models[name])), size=(64, 64), index=0)
    needs = stage_needs(p, getattr(torch, dtype).itemsize)  # saved in fp32: loading casts them
    pipe = DiffusionPipeline.from_pretrained(str(tiny_models[name]), dtype=getattr(torch, dtype))
    loaded = {n: sum(t.numel() * t.element_size() for t in c.state_dict().values())
              for n, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert needs.components == loaded
    assert needs.weights > 0


def _loaded_bytes(module) -> int:
    """Bytes a loaded module holds, counting a quantized tensor subclass by its inner tensors."""
    import torch

    def size(t) -> int:
        if type(t) in (torch.Tensor, torch.nn.Parameter):
            return t.numel() * t.element_size()
        inner, _ = t.__tensor_flatten__()
        return sum(size(getattr(t, name)) for name in inner)

    return sum(size(t) for t in module.state_dict().values())


@pytest.mark.parametrize("quantize", ["fp8", "int8"])
@pytest.mark.parametrize("name", ["sd", "zimage_turbo"])
def test_a_quantized_denoiser_is_counted_as_the_quantizer_stores_it(tiny_models, name, quantize):
    """fp8 (diffusers' layerwise casting) and int8 (torchao): the planner's header count of
    the denoiser equals the bytes the quantized model holds once loaded, exactly, and is
    smaller than the unquantized count."""
    import torch
    from diffusers import DiffusionPipeline

    from core.denoisers import denoiser_component, quantize_module

    if quantize == "int8":
        pytest.importorskip("torchao")
    dtype = torch.bfloat16
    resolved = resolve(parse_ref(str(tiny_models[name])))
    component = denoiser_component(resolved.index)[0]
    plain = stage_needs(SimpleNamespace(resolved=resolved, stage=Stage(str(tiny_models[name])), size=(64, 64),
                                        index=0), dtype.itemsize)
    stage = Stage(str(tiny_models[name]), quantize=quantize)
    needs = stage_needs(SimpleNamespace(resolved=resolved, stage=stage, size=(64, 64), index=0), dtype.itemsize)
    pipe = DiffusionPipeline.from_pretrained(str(tiny_models[name]), dtype=dtype)
    denoiser = getattr(pipe, component)
    quantize_module(denoiser, quantize, dtype)
    assert needs.components[component] == _loaded_bytes(denoiser)
    assert needs.components[component] < plain.components[component]
    table = choose([needs], 2**40, "VRAM budget").table()
    assert any(line.split()[2] == component and line.endswith(f"(quantized {quantize})")
               for line in table.splitlines() if line.startswith("stage 1"))
    others = {n: b for n, b in needs.components.items() if n != component}
    assert others == {n: b for n, b in plain.components.items() if n != component}


def test_cli_prints_the_plan_and_refuses_what_cannot_fit(tiny_models, tmp_path, capsys):
    from core.cli import main

    args = ["generate", "a red circle", "--model", str(tiny_models["sd"]), "--steps", "2", "--size", "32x32"]
    code = main([*args, "--vram-budget", "12G", "--out", str(tmp_path / "a.png")])
    _, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "memory plan" in stderr and "stage 1  unet" in stderr
    assert "plan: resident — every model of the job fits at once" in stderr and "of 12.0 GiB VRAM budget" in stderr
    code = main([*args, "--vram-budget", "1K", "--out", str(tmp_path / "b.png")])
    _, stderr = capsys.readouterr()
    lines = [line for line in stderr.splitlines() if line.startswith("handoff:")]
    assert code != 0 and not (tmp_path / "b.png").exists()
    assert len(lines) == 1 and "stage 1 cannot fit in 0 MiB of VRAM budget even one layer at a time" in lines[0]
    code = main([*args, "--vram-budget", "lots", "--out", str(tmp_path / "c.png")])
    assert code == 2 and "VRAM budget 'lots' is not a size like 12G" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("placement,quantize", ROWS)
def test_full_size_denoiser_peaks_near_the_plan_on_a_gpu(placement, quantize):
    """On CUDA: a full-size random-weight Z-Image transformer, under each placement and each
    quantization the bench measures, peaks within the planner's tolerance of its estimate
    (tests/benchmarks/bench_gpu.py prints the table)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if (library := missing_library(quantize)) is not None:
        pytest.skip(f"{quantize} needs {library}")
    planned, measured, rate = measure("zimage", placement, 512, 1, quantize)
    print(f"\n{placement} {quantize}: planned {planned / 2**30:.2f} GiB, measured {measured / 2**30:.2f} GiB, "
          f"{rate:.2f} it/s")
    assert abs(measured - planned) <= TOLERANCE * planned


@pytest.mark.parametrize("quantize", ["fp8", "int8"])
def test_the_gpu_bench_plans_a_quantized_denoiser_as_it_is_stored(quantize):
    """The bench's quantized rows, on this CPU: its estimate of a quantized Z-Image
    transformer (from the module's header, through the planner) is the bytes the engine's
    quantizer leaves it holding, plus the planner's activations."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from core.denoisers import quantize_module

    if quantize == "int8":
        pytest.importorskip("torchao")
    torch.manual_seed(0)
    m = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=64, n_layers=2, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=32, axes_dims=[16, 8, 8], axes_lens=[256, 32, 32]).to(torch.bfloat16)
    planned = estimate(m, "resident", 64, quantize)
    quantize_module(m, quantize, torch.bfloat16)
    assert planned == _loaded_bytes(m) + activation_bytes(64, 64, 2)


@pytest.mark.gpu
def test_a_tiled_decode_peaks_below_a_whole_one_on_a_gpu():
    """On CUDA: the FLUX.1 VAE at 2048 px decodes in its 1024 px tiles in far less memory than
    whole, as the planner's two estimates say (tests/benchmarks/bench_gpu.py prints them)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from tests.benchmarks.bench_gpu import measure_decode

    (whole_planned, whole, _), (tiled_planned, tiled, _) = (measure_decode(2048, t) for t in (False, True))
    print(f"\nwhole: planned {whole_planned / 2**30:.2f} GiB, measured {whole / 2**30:.2f} GiB; "
          f"tiled: planned {tiled_planned / 2**30:.2f} GiB, measured {tiled / 2**30:.2f} GiB")
    assert tiled < whole / 2 and tiled_planned < whole_planned / 2
