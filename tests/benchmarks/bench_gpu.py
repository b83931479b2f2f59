"""The memory planner's estimates against a real card: peak VRAM and it/s per placement
and per quantization.

    python -m tests.benchmarks.bench_gpu [--size 1024] [--steps 4] [--model zimage|ernie] [--decode-size 2048]

Builds a full-size denoiser from its config with random weights (diffusers'
ZImageTransformer2DModel or ErnieImageTransformer2DModel defaults, bf16; nothing is
downloaded), then for each placement runs `--steps` forward passes at `--size` and
records torch.cuda.max_memory_allocated and steps per second, printed beside
core.memory_plan's estimate for the same placement (the denoiser alone: the weights from
its header, activations by the planner's rule). Quantized rows go through the engine's own
code: fp8 and int8 through core.denoisers.quantize_module, nf4 through load_denoiser from
a folder the random weights are saved to (bitsandbytes quantizes as it loads); the planner
counts them from the same header as core.memory_plan.tensor_bytes does. A quantization
whose library is missing is reported and skipped. Then the FLUX.1 VAE (Z-Image's; random
weights, bf16) decodes latents for `--decode-size` whole and in tiles (diffusers'
enable_tiling; its tiles are 1024 px, so a smaller image is one tile),
its peak beside core.memory_check's decode_bytes and tiled_decode_bytes (the VAE's weights
added to both). On a machine without CUDA it says so
and exits 0. Not run by the CPU test suite; tests/test_memory_plan.py's `gpu` test runs
measure() once at a small size.
"""
from __future__ import annotations

import argparse
import sys
import time


def build(model: str):
    import torch
    from diffusers import ErnieImageTransformer2DModel, ZImageTransformer2DModel

    cls = {"zimage": ZImageTransformer2DModel, "ernie": ErnieImageTransformer2DModel}[model]
    with torch.device("meta"):
        m = cls()
    m = m.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02)  # random weights: speed and memory, not images
    return m.eval()


def inputs(model: str, size: int, device: str = "cuda"):
    import torch

    side = size // 8
    if model == "zimage":
        x = [torch.randn(16, 1, side, side, dtype=torch.bfloat16, device=device)]
        caps = [torch.randn(128, 2560, dtype=torch.bfloat16, device=device)]
        return (x, torch.tensor([0.5], device=device), caps), {"return_dict": False}
    side //= 2  # ERNIE's VAE patchifies 2x2 into 128 channels
    return ((torch.randn(1, 128, side, side, dtype=torch.bfloat16, device=device),),
            {"timestep": torch.tensor([500.0], device=device),
             "text_bth": torch.randn(1, 128, 2560, dtype=torch.bfloat16, device=device),
             "text_lens": torch.tensor([128], device=device), "return_dict": False})


def place(m, placement: str):
    import torch

    if placement in ("resident", "sequential", "offload"):  # one component: all three hold it whole
        return m.to("cuda")
    m.enable_group_offload(onload_device=torch.device("cuda"), offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=True)
    return m


def header(m) -> dict:
    """A safetensors-style header of a module's tensors (what the planner reads from a file)."""
    names = {"torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32"}
    return {k: {"dtype": names[str(t.dtype)], "shape": list(t.shape)} for k, t in m.state_dict().items()}


def estimate(m, placement: str, size: int, quantize: str = "none") -> int:
    from core.memory_plan import StageNeeds, activation_bytes, peak, quantizer_skips, tensor_bytes

    weights, largest = tensor_bytes(header(m), 2, quantize, quantizer_skips(quantize, type(m).__name__))
    needs = StageNeeds("denoiser", "m", {"transformer": weights}, largest, activation_bytes(size, size, 2), 0)
    return peak([needs], placement)


def quantized(model: str, quantize: str, m, scratch):
    """The module as the engine quantizes it: in place for fp8/int8, reloaded for nf4."""
    import torch

    from core.denoisers import DenoiserSpec, load_denoiser, quantize_module

    if quantize == "nf4":
        m.save_pretrained(scratch / "transformer")
        del m
        return load_denoiser(DenoiserSpec(quantize="nf4"), scratch, "transformer",
                             {"zimage": "ZImageTransformer2DModel", "ernie": "ErnieImageTransformer2DModel"}[model],
                             torch.bfloat16)
    quantize_module(m, quantize, torch.bfloat16)
    return m


def missing_library(quantize: str) -> str | None:
    import importlib.util

    needs = {"int8": "torchao", "nf4": "bitsandbytes"}.get(quantize)
    return needs if needs and importlib.util.find_spec(needs) is None else None


def measure(model: str, placement: str, size: int, steps: int, quantize: str = "none") -> tuple[int, int, float]:
    """(planner's estimate, measured peak bytes, steps per second) for one placement and quantization."""
    import tempfile
    from pathlib import Path

    import torch

    m = build(model)
    planned = estimate(m, placement, size, quantize)
    with tempfile.TemporaryDirectory() as scratch:
        if quantize != "none":
            m = quantized(model, quantize, m, Path(scratch))
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if quantize != "nf4":  # an nf4 model is on the GPU already: bitsandbytes quantizes it there as it loads
            m = place(m, placement)
        args, kwargs = inputs(model, size)
        with torch.no_grad():
            m(*args, **kwargs)  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                m(*args, **kwargs)
            torch.cuda.synchronize()
        rate = steps / (time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated()
        del m, args, kwargs
    torch.cuda.empty_cache()
    return planned, peak, rate


ROWS = [("resident", "none"), ("group", "none"), ("resident", "fp8"), ("resident", "int8"), ("resident", "nf4")]
QUANTIZED = [q for _, q in ROWS if q != "none"]


FLUX_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False, sample_size=1024)


def measure_decode(size: int, tiled: bool) -> tuple[int, int, float]:
    """(planner's estimate, measured peak bytes, seconds) of one VAE decode at `size`."""
    import torch
    from diffusers import AutoencoderKL

    from core.memory_check import decode_bytes, tiled_decode_bytes
    from core.memory_plan import module_bytes

    with torch.device("meta"):
        vae = AutoencoderKL(**FLUX_VAE)
    vae = vae.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.02)
    vae = vae.to("cuda").eval()
    vae.enable_tiling() if tiled else vae.disable_tiling()
    tile = (FLUX_VAE["sample_size"], 2 ** (len(FLUX_VAE["block_out_channels"]) - 1))
    decode = tiled_decode_bytes(size, size, 128, 2, tile) if tiled else decode_bytes(size, size, 128, 2)
    planned = module_bytes(vae) + decode
    z = torch.randn(1, 16, size // 8, size // 8, dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        vae.decode(z, return_dict=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    del vae, z
    torch.cuda.empty_cache()
    return planned, peak, seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--model", choices=["zimage", "ernie"], default="zimage")
    ap.add_argument("--decode-size", type=int, default=2048)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu needs a CUDA GPU; none here, nothing measured", file=sys.stderr)
        return 0
    print(f"{torch.cuda.get_device_name()}, {args.model}, {args.size} px, bf16")
    print(f"{'placement':10s} {'quantize':8s} {'planned':>10s} {'measured':>10s} {'ratio':>6s} {'it/s':>7s}")
    for placement, quantize in ROWS:
        if (lib := missing_library(quantize)) is not None:
            print(f"{placement:10s} {quantize:8s} skipped: {lib} is not installed")
            continue
        planned, peak, rate = measure(args.model, placement, args.size, args.steps, quantize)
        print(f"{placement:10s} {quantize:8s} {planned / 2**30:9.2f}G {peak / 2**30:9.2f}G {peak / planned:6.2f} "
              f"{rate:7.2f}")
    print(f"{'vae decode':10s} {'planned':>10s} {'measured':>10s} {'ratio':>6s} {'s':>7s}")
    for tiled in (False, True):
        planned, peak, seconds = measure_decode(args.decode_size, tiled)
        print(f"{'tiled' if tiled else 'whole':10s} {planned / 2**30:9.2f}G {peak / 2**30:9.2f}G "
              f"{peak / planned:6.2f} {seconds:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
