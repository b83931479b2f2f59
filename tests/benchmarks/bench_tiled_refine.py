"""Peak memory of a pixel refine at 1x, 2x and 4x its input, whole and tiled (refine_tile),
in one process, with the tiny SD pipeline (tests/tiny_pipelines.py).

    python -m tests.benchmarks.bench_tiled_refine [--base 64] [--tile 64] [--steps 4]

Each job is one stage refining an init image of --base px at strength 0.5, upscaled by
the factor (Lanczos) first (the tiny model is made for 32 px, so 4x of 64 px is the most an
untiled stage may work at: AREA_FACTOR). Measured on the CPU: the process's resident memory (RSS) over
the job less the RSS before it, read by core.devices.PeakMeter (sampled every 2 ms, and
the OS's own max RSS when the job set it). glibc's mmap threshold is fixed at 64 KiB
first (mallopt), so a freed tensor leaves the RSS at once and each job's peak is its own,
not what an earlier, larger job left cached. On a GPU machine the same jobs would read
torch's allocator peak instead (PeakMeter does that on CUDA).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import tempfile
import time
from pathlib import Path

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold(size: int = 64 * 1024) -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size))
    except OSError:  # not glibc: the peaks may include memory an earlier job left cached
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=64, help="init image side in px")
    ap.add_argument("--tile", type=int, default=64, help="refine_tile in px")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-bench-"))
    fixed = fix_mmap_threshold()

    from diffusers.utils import logging
    from PIL import Image

    logging.set_verbosity_error()
    from core.devices import PeakMeter, process_ram
    from core.engine import OutputPlan, run
    from core.events import JobFailed, StageFinished
    from core.models import ModelCache
    from core.project import Project, Stage
    from tests.tiny_pipelines import build_sd

    root = Path(tempfile.mkdtemp(prefix="bench-tiled-"))
    sd = build_sd(root / "sd")
    init = root / "init.png"
    # A smooth picture to refine: a colour ramp with a disc in it.
    image = Image.radial_gradient("L").resize((args.base, args.base)).convert("RGB")
    image.save(init)
    models = ModelCache()

    def job(factor: int, tile: int) -> tuple[int, float, int]:
        p = Project(prompt="a red circle on a blue background", width=args.base, height=args.base, seed=1,
                    init_image=str(init), stages=[Stage(str(sd), steps=args.steps, strength=0.5,
                                                        upscale=float(factor), refine_tile=tile)])
        gc.collect()
        before = process_ram()
        t0 = time.perf_counter()
        with PeakMeter("cpu", interval=0.002) as meter:
            events = list(run(p, OutputPlan.in_dir(root / "out"), models=models))
        seconds = time.perf_counter() - t0
        failed = [e for e in events if isinstance(e, JobFailed)]
        if failed:
            raise SystemExit(failed[0].message)
        (done,) = [e for e in events if isinstance(e, StageFinished)]
        return meter.peak - before, seconds, done.image.size[0]

    job(1, 0)  # warm-up: loads the model, so no row counts its weights
    print(f"tiny SD refine at strength 0.5, {args.steps} steps, init {args.base} px, refine_tile {args.tile} px; "
          f"memory: process RSS peak over the job less RSS before it (core.devices.PeakMeter)"
          f"{'' if fixed else ' [mmap threshold not fixed: peaks may be understated]'}")
    print(f"{'output':>8} {'tiles':>6} {'whole: peak':>12} {'tiled: peak':>12} {'whole s':>8} {'tiled s':>8}")
    for factor in (1, 2, 4):
        whole, whole_s, side = job(factor, 0)
        tiled, tiled_s, _ = job(factor, args.tile)
        from core.upscalers import refine_overlap, tile_starts

        tiles = len(tile_starts(side, args.tile, refine_overlap(args.tile))) ** 2
        print(f"{f'{factor}x {side}':>8} {tiles:>6} {whole / 2**20:>9.1f} MB {tiled / 2**20:>9.1f} MB "
              f"{whole_s:>8.2f} {tiled_s:>8.2f}")


if __name__ == "__main__":
    main()
