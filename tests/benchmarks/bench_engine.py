"""Engine overhead and handoff costs, against plain diffusers calls, in one process.

    python -m tests.benchmarks.bench_engine [--repeats 5] [--size 64] [--steps 20]

Builds a tiny SDXL base + refiner (or uses --base/--refiner folders: on a GPU machine,
point them at full-size models), then times, for each handoff, the same two-stage job
run (a) as the plain diffusers calls a user would write and (b) through Handoff's
engine. Prints medians and the engine/plain ratio; the first run of each is a warm-up,
and the two alternate. Wall time and this process's CPU time (every thread: the engine's
job and PNG-writer threads too) are both reported: on a shared machine the CPU time is
the steadier measure of the work each side does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--base", type=Path)
    ap.add_argument("--refiner", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-bench-"))

    import torch
    from diffusers.utils import logging

    logging.set_verbosity_error()
    from core.engine import OutputPlan, run
    from core.events import JobFailed, JobFinished
    from core.models import ModelCache
    from core.project import Project, Stage
    from tests.benchmarks.tiny_pair import plain_pair

    base, refiner, device = plain_pair(args)
    prompt, n, size = "a red circle on a blue background", args.steps, args.size

    def g():
        return torch.Generator("cpu").manual_seed(0)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def plain(kind: str) -> None:
        if kind == "ensemble":
            lat = base(prompt, num_inference_steps=n, height=size, width=size, denoising_end=0.8, output_type="latent", generator=g()).images
            refiner(prompt, image=lat, num_inference_steps=n, denoising_start=0.8, generator=g())
        elif kind == "latent":
            lat = base(prompt, num_inference_steps=n, height=size, width=size, output_type="latent", generator=g()).images
            refiner(prompt, image=lat, strength=0.3, num_inference_steps=n, generator=g())
        else:
            img = base(prompt, num_inference_steps=n, height=size, width=size, generator=g()).images[0]
            refiner(prompt, image=img, strength=0.3, num_inference_steps=n, generator=g())
        sync()

    models = ModelCache()
    out = Path(tempfile.mkdtemp(prefix="handoff-bench-out-"))

    def engine(kind: str) -> None:
        project = Project(prompt=prompt, width=size, height=size, seed=0, memory_policy="resident",
                          stages=[Stage(str(args.base), steps=n), Stage(str(args.refiner), steps=n, handoff=kind, strength=0.3, switch_at=0.8)])
        for e in run(project, OutputPlan.in_dir(out, kind), models=models):
            if isinstance(e, JobFailed):
                raise SystemExit(e.message)
        assert isinstance(e, JobFinished)

    def timed_pair(kind) -> tuple[float, float, float, float]:
        # Alternate the two so drift on a shared machine (clock, other load) hits both alike.
        times = {plain: ([], []), engine: ([], [])}
        for i in range(args.repeats + 1):
            for fn in (plain, engine):
                t, c = time.perf_counter(), time.process_time()
                fn(kind)
                times[fn][0].append(time.perf_counter() - t)
                times[fn][1].append(time.process_time() - c)
        med = lambda xs: statistics.median(xs[1:])
        return med(times[plain][0]), med(times[engine][0]), med(times[plain][1]), med(times[engine][1])

    print(f"device {device}, {size}x{size}, {n} steps, median of {args.repeats} after a warm-up, torch threads {torch.get_num_threads()}")
    print(f"{'handoff':9} {'plain s':>8} {'engine s':>9} {'ratio':>6}   {'plain cpu':>9} {'engine cpu':>10} {'ratio':>6}")
    for kind in ("ensemble", "latent", "pixel"):
        a, b, ca, cb = timed_pair(kind)
        print(f"{kind:9} {a:8.3f} {b:9.3f} {b / a:6.2f}   {ca:9.3f} {cb:10.3f} {cb / ca:6.2f}")


if __name__ == "__main__":
    main()
