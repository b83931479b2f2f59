"""Engine overhead and handoff costs, against plain diffusers calls, in one process.

    python -m tests.benchmarks.bench_engine [--repeats 5] [--size 64] [--steps 20]

Builds a tiny SDXL base + refiner (or uses --base/--refiner folders: on a GPU machine,
point them at full-size models), then times, for each handoff, the same two-stage job
run (a) as the plain diffusers calls a user would write and (b) through Handoff's
engine. The engine's time is to its final image: until the last stage's PNG is on disk
(its StageSaved). What it does after that, the decode of latents a stage handed over
(core.deferred_decode) and the PNG and drift that follow, is printed beside it as "after
final". Prints medians and the engine/plain ratio; the first run of each is a warm-up,
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
    from core.events import JobFailed, JobFinished, StageSaved
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

    def engine(kind: str) -> tuple[float, float]:
        """The wall and CPU clocks when the final image was on disk (the job goes on after it)."""
        project = Project(prompt=prompt, width=size, height=size, seed=0, memory_policy="resident",
                          stages=[Stage(str(args.base), steps=n), Stage(str(args.refiner), steps=n, handoff=kind, strength=0.3, switch_at=0.8)])
        final = None
        for e in run(project, OutputPlan.in_dir(out, kind), models=models):
            if isinstance(e, StageSaved) and e.index == 1 and final is None:
                final = time.perf_counter(), time.process_time()
            if isinstance(e, JobFailed):
                raise SystemExit(e.message)
        assert isinstance(e, JobFinished) and final is not None
        return final

    def timed_pair(kind) -> dict[str, float]:
        # Alternate the two so drift on a shared machine (clock, other load) hits both alike.
        times: dict[str, list[float]] = {k: [] for k in ("plain", "plain_cpu", "engine", "engine_cpu", "after", "after_cpu")}
        for i in range(args.repeats + 1):
            t, c = time.perf_counter(), time.process_time()
            plain(kind)
            times["plain"].append(time.perf_counter() - t)
            times["plain_cpu"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            final_t, final_c = engine(kind)
            end_t, end_c = time.perf_counter(), time.process_time()
            times["engine"].append(final_t - t)
            times["engine_cpu"].append(final_c - c)
            times["after"].append(end_t - final_t)
            times["after_cpu"].append(end_c - final_c)
        return {k: statistics.median(v[1:]) for k, v in times.items()}

    print(f"device {device}, {size}x{size}, {n} steps, median of {args.repeats} after a warm-up, torch threads {torch.get_num_threads()}")
    print("engine: to the final image on disk; after final: the job's work after it (the decode of handed-over latents)")
    print(f"{'handoff':9} {'plain s':>8} {'engine s':>9} {'ratio':>6}   {'plain cpu':>9} {'engine cpu':>10} {'ratio':>6}"
          f"   {'after final s':>13} {'after cpu':>9}")
    for kind in ("ensemble", "latent", "pixel"):
        m = timed_pair(kind)
        print(f"{kind:9} {m['plain']:8.3f} {m['engine']:9.3f} {m['engine'] / m['plain']:6.2f}   {m['plain_cpu']:9.3f} "
              f"{m['engine_cpu']:10.3f} {m['engine_cpu'] / m['plain_cpu']:6.2f}   {m['after']:13.3f} {m['after_cpu']:9.3f}")


if __name__ == "__main__":
    main()
