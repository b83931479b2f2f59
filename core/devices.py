"""The compute device, and memory readings that say what they measure.

Readings fall back in order: NVML (the whole GPU, as nvidia-smi shows it), torch's
allocator (this process's tensors on the GPU), then this process's RAM on a machine
with no GPU. Only the torch reading imports torch, and only once torch is loaded.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryReading:
    used: int  # bytes
    total: int  # bytes, 0 when unknown
    label: str  # what is measured, e.g. "VRAM (NVML)", "process RAM"


def best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def describe_device(device: str) -> str:
    if device == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return device


CUDA_INDEX = "https://download.pytorch.org/whl/cu128"


def runtime_summary(torch=None) -> str:
    """One line for the status bar: what the engine runs on (CUDA with the GPU's name and
    VRAM, ROCm, Apple MPS or the CPU), and on a CPU what to do about it. `torch` is for
    tests (a stand-in module); otherwise torch is imported here, never at module load."""
    if torch is None:
        import torch
    version = f"torch {torch.__version__}"
    hip = getattr(torch.version, "hip", None)
    if torch.cuda.is_available():
        what = f"ROCm {hip}" if hip else f"CUDA {torch.version.cuda}"
        try:
            props = torch.cuda.get_device_properties(0)
            count = torch.cuda.device_count()
        except Exception as exc:  # a driver that lists a GPU and then fails to open it
            return f"Runs on {what} ({version}), but the GPU could not be read: {exc}"
        more = f" (+{count - 1} more)" if count > 1 else ""
        return f"Runs on {what}: {props.name}{more}, {props.total_memory / 2**30:.1f} GiB VRAM ({version})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return f"Runs on Apple MPS (Metal), in the Mac's unified memory ({version})"
    if hip or torch.version.cuda:
        why = f"this {'ROCm' if hip else 'CUDA'} build of torch sees no GPU (is the driver loaded? nvidia-smi / rocm-smi)"
        return f"Runs on the CPU ({version}): {why}; real models will be slow"
    from core import paths

    if sys.platform == "darwin":
        fix = "a Mac's GPU needs Apple silicon and macOS 12.3 or later (MPS)"
    elif paths.FROZEN:
        fix = "for an NVIDIA GPU use a bundle built with a CUDA torch (README: A self-contained app)"
    else:
        fix = (f"for an NVIDIA GPU install a CUDA build: pip install torch=={torch.__version__.split('+')[0]} "
               f"--index-url {CUDA_INDEX} (the cuXXX of your driver: pytorch.org/get-started)")
    return f"Runs on the CPU ({version}, a CPU-only build): real models will be slow; {fix}"


def _nvml_reading() -> MemoryReading | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return MemoryReading(int(info.used), int(info.total), "VRAM (NVML)")
    except Exception:  # no driver, no GPU: NVML says so with its own error types
        return None


def _torch_reading() -> MemoryReading | None:
    torch = sys.modules.get("torch")  # never import torch just to read a gauge
    if torch is None or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return MemoryReading(int(total - free), int(total), "VRAM (torch)")


def process_ram() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def _ram_reading() -> MemoryReading:
    import psutil

    return MemoryReading(process_ram(), int(psutil.virtual_memory().total), "process RAM")


def memory_now() -> MemoryReading:
    return _nvml_reading() or _torch_reading() or _ram_reading()


def _max_rss() -> int | None:
    """The process's peak resident memory so far, from the OS (bytes), where it keeps one."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS says bytes, Linux KiB


class PeakMeter:
    """Peak memory over one stage: the CUDA allocator's peak on a GPU, otherwise the
    process's resident memory. The OS keeps a peak that cannot be reset: when the stage
    raised it, that is exact; when not, a small thread's samples tell (every 0.1 s, which
    costs the stage next to nothing)."""

    def __init__(self, device: str, interval: float = 0.1):
        self.device = device
        self.interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return "VRAM peak (torch)" if self.device == "cuda" else "process RAM peak"

    def __enter__(self) -> "PeakMeter":
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._peak = process_ram()
            self._max_rss_before = _max_rss()
            self._thread = threading.Thread(target=self._sample, name="peak-meter", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, process_ram())

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self._peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            if self._thread:
                self._thread.join()
            self._peak = max(self._peak, process_ram())
            after = _max_rss()
            if after is not None and self._max_rss_before is not None and after > self._max_rss_before:
                self._peak = max(self._peak, after)  # this stage set the process's peak: the OS knows it exactly

    @property
    def peak(self) -> int:
        return self._peak


def synchronize(device: str) -> None:
    """Wait for queued GPU work so a clock read after it means something."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    elif device == "mps":
        import torch

        torch.mps.synchronize()
