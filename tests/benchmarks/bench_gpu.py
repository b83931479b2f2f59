"""The memory planner's estimates against a real card: peak VRAM and it/s per placement.

    python -m tests.benchmarks.bench_gpu [--size 1024] [--steps 4] [--model zimage|ernie]

Builds a full-size denoiser from its config with random weights (diffusers'
ZImageTransformer2DModel or ErnieImageTransformer2DModel defaults, bf16; nothing is
downloaded), then for each placement runs `--steps` forward passes at `--size` and
records torch.cuda.max_memory_allocated and steps per second, printed beside
core.memory_plan's estimate for the same placement (the denoiser alone: the weights from
its parameters, activations by the planner's rule). On a machine without CUDA it says so
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


def estimate(m, placement: str, size: int) -> int:
    from core.memory_plan import StageNeeds, activation_bytes, module_bytes, peak

    largest = max(p.numel() * p.element_size() for p in m.parameters())
    needs = StageNeeds("denoiser", "m", {"transformer": module_bytes(m)}, largest,
                       activation_bytes(size, size, 2), 0)
    return peak([needs], placement)


def measure(model: str, placement: str, size: int, steps: int) -> tuple[int, int, float]:
    """(planner's estimate, measured peak bytes, steps per second) for one placement."""
    import torch

    m = build(model)
    planned = estimate(m, placement, size)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--model", choices=["zimage", "ernie"], default="zimage")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu needs a CUDA GPU; none here, nothing measured", file=sys.stderr)
        return 0
    print(f"{'placement':10s} {'planned':>10s} {'measured':>10s} {'ratio':>6s} {'it/s':>7s}")
    for placement in ("resident", "group"):
        planned, peak, rate = measure(args.model, placement, args.size, args.steps)
        print(f"{placement:10s} {planned / 2**30:9.2f}G {peak / 2**30:9.2f}G {peak / planned:6.2f} {rate:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
