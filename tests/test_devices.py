"""What the status bar says the engine runs on (core.devices.runtime_summary): the real
torch of this machine, and stand-ins for CUDA, ROCm, MPS and a CUDA build without a GPU."""
from __future__ import annotations

import sys
from types import SimpleNamespace

from core import devices, paths

GiB = 2**30


def fake_torch(cuda: bool = False, cuda_version: str | None = None, hip: str | None = None, mps: bool = False,
               name: str = "NVIDIA H100 80GB HBM3", vram: int = 80 * GiB, count: int = 1, broken: bool = False):
    def props(index):
        if broken:
            raise RuntimeError("CUDA error: unknown error")
        return SimpleNamespace(name=name, total_memory=vram)

    return SimpleNamespace(
        __version__="2.13.0+test",
        version=SimpleNamespace(cuda=cuda_version, hip=hip),
        cuda=SimpleNamespace(is_available=lambda: cuda, get_device_properties=props, device_count=lambda: count),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
    )


def test_this_machine_says_what_it_runs_on():
    import torch

    text = devices.runtime_summary()
    assert text.startswith("Runs on ") and f"torch {torch.__version__}" in text
    if not torch.cuda.is_available() and torch.version.cuda is None and sys.platform.startswith("linux"):
        # The CPU-only build here: slow for real models, and how to get a CUDA build.
        assert text.startswith("Runs on the CPU") and "slow" in text
        assert "pip install torch==" in text and "--index-url https://download.pytorch.org/whl/cu" in text


def test_cuda_names_the_gpu_and_its_vram():
    text = devices.runtime_summary(fake_torch(cuda=True, cuda_version="12.8"))
    assert text == "Runs on CUDA 12.8: NVIDIA H100 80GB HBM3, 80.0 GiB VRAM (torch 2.13.0+test)"
    two = devices.runtime_summary(fake_torch(cuda=True, cuda_version="12.8", count=2, vram=24 * GiB, name="RTX 4090"))
    assert two.startswith("Runs on CUDA 12.8: RTX 4090 (+1 more), 24.0 GiB VRAM")


def test_rocm_is_told_apart_from_cuda():
    text = devices.runtime_summary(fake_torch(cuda=True, hip="6.4.1", name="AMD Instinct MI300X", vram=192 * GiB))
    assert text.startswith("Runs on ROCm 6.4.1: AMD Instinct MI300X, 192.0 GiB VRAM")


def test_mps():
    assert devices.runtime_summary(fake_torch(mps=True)).startswith("Runs on Apple MPS")


def test_a_gpu_build_without_a_gpu_says_so_and_suggests_no_reinstall():
    text = devices.runtime_summary(fake_torch(cuda_version="12.8"))
    assert text.startswith("Runs on the CPU") and "sees no GPU" in text and "pip install" not in text


def test_a_gpu_that_cannot_be_read_is_reported_not_raised():
    text = devices.runtime_summary(fake_torch(cuda=True, cuda_version="12.8", broken=True))
    assert text.startswith("Runs on CUDA 12.8") and "could not be read: CUDA error" in text


def test_cpu_advice_fits_how_handoff_was_installed(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert "pip install torch==2.13.0 --index-url" in devices.runtime_summary(fake_torch())
    monkeypatch.setattr(paths, "FROZEN", True)  # a pip install cannot change a bundle's torch
    bundle = devices.runtime_summary(fake_torch())
    assert "pip install" not in bundle and "bundle built with a CUDA torch" in bundle
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "CUDA" not in devices.runtime_summary(fake_torch())



def test_cpu_peak_meter_sees_memory_freed_before_the_stage_ends():
    import time

    import numpy as np

    from core.devices import PeakMeter, process_ram

    before = process_ram()
    with PeakMeter("cpu") as meter:
        block = np.ones(300 * 2**20, dtype=np.uint8)  # touched: resident, 300 MiB
        time.sleep(0.35)  # the sampler looks every 0.1 s
        del block
    assert meter.peak >= before + 250 * 2**20 and meter.label == "process RAM peak"
