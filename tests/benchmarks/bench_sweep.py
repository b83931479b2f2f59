"""What a sweep and a re-run cost, against the plain diffusers calls, in one process.

    python -m tests.benchmarks.bench_sweep [--repeats 5] [--size 64] [--steps 20] [--k 4]

A k-value strength sweep of an SDXL base + refiner (pixel handoff) should cost one base
plus k refines: the base runs once for the sweep's seed and every cell reuses its stored
output. Plain is the same work written as diffusers calls (one base, k img2img refines).
A re-run from stage 2 should cost no stage-1 time: it is compared with the plain refine
alone. Builds tiny models, or takes --base/--refiner folders (full-size models on a GPU).
Each repeat uses a new seed, so no stored output from an earlier repeat is reused; the
first repeat is a warm-up and the two sides alternate. Prints medians and ratios.
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
    ap.add_argument("--k", type=int, default=4)
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
    from core.sweep import Axis, run_sweep

    base, refiner, device = plain_pair(args)
    prompt, n, size = "a red circle on a blue background", args.steps, args.size
    strengths = tuple(round(0.2 + 0.1 * i, 2) for i in range(args.k))

    def g(seed):
        return torch.Generator("cpu").manual_seed(seed)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def project(seed):
        return Project(prompt=prompt, width=size, height=size, seed=seed, memory_policy="resident", stages=[
            Stage(str(args.base), steps=n), Stage(str(args.refiner), steps=n, handoff="pixel", strength=0.3)])

    models = ModelCache()
    out = Path(tempfile.mkdtemp(prefix="handoff-bench-out-"))
    parts = {"base": [], "refine": []}

    def plain_sweep(seed):
        t = time.perf_counter()
        img = base(prompt, num_inference_steps=n, height=size, width=size, generator=g(seed)).images[0]
        sync()
        parts["base"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for s in strengths:
            refiner(prompt, image=img, strength=s, num_inference_steps=n, generator=g(seed))
        sync()
        parts["refine"].append(time.perf_counter() - t)

    outside = []

    def sweep(seed):
        from core.events import StageFinished

        seen = []
        t = time.perf_counter()
        result = run_sweep(project(seed), Axis("strength", strengths, stage=1), None, out / f"sweep-{seed}",
                           emit=seen.append, models=models)
        ran = [e for _, e in seen if isinstance(e, StageFinished) and not e.reused]
        outside.append((time.perf_counter() - t) - sum(e.denoise_seconds + e.decode_seconds for e in ran))
        assert all(c.image is not None and not c.error for c in result.cells), [c.error for c in result.cells]
        assert sum(c.reused for c in result.cells) == len(strengths) - 1

    def plain_refine(seed):
        img = base(prompt, num_inference_steps=n, height=size, width=size, generator=g(seed)).images[0]
        t = time.perf_counter()
        refiner(prompt, image=img, strength=0.3, num_inference_steps=n, generator=g(seed))
        sync()
        return time.perf_counter() - t

    stage1_in_rerun = []

    def rerun(seed):
        p = project(seed)
        for e in run(p, OutputPlan.in_dir(out, f"full-{seed}"), models=models):
            pass
        t = time.perf_counter()
        for e in run(p, OutputPlan.in_dir(out, f"again-{seed}"), models=models, from_stage=1):
            if isinstance(e, JobFailed):
                raise SystemExit(e.message)
        assert isinstance(e, JobFinished) and e.stages[0].reused
        stage1_in_rerun.append(e.stages[0].total_seconds)
        return time.perf_counter() - t

    plain_t, sweep_t, refine_t, rerun_t = [], [], [], []
    for r in range(args.repeats + 1):
        seed = 1000 + r
        for fn, times in ((plain_sweep, plain_t), (sweep, sweep_t)):
            t = time.perf_counter()
            fn(seed)
            times.append(time.perf_counter() - t)
        refine_t.append(plain_refine(seed + 500))
        rerun_t.append(rerun(seed + 500))
    med = lambda xs: statistics.median(xs[1:])  # noqa: E731
    print(f"device {device}, {size}x{size}, {n} steps, k={args.k} strengths {strengths}, median of {args.repeats} "
          f"after a warm-up, torch threads {torch.get_num_threads()}")
    print(f"plain: one base {med(parts['base']):.3f} s + {args.k} refines {med(parts['refine']):.3f} s "
          f"= {med(plain_t):.3f} s")
    print(f"sweep of {args.k} cells: {med(sweep_t):.3f} s  ratio {med(sweep_t) / med(plain_t):.2f} (target <= 1.10)")
    print(f"sweep time outside the diffusers calls (planning, stored outputs, PNGs, drift, grid): "
          f"{med(outside):.3f} s = {med(outside) / med(sweep_t):.1%} of the sweep")
    print(f"re-run from stage 2: {med(rerun_t):.3f} s vs plain refine alone {med(refine_t):.3f} s  ratio "
          f"{med(rerun_t) / med(refine_t):.2f}; stage-1 time in the re-run {max(stage1_in_rerun):.3f} s")


if __name__ == "__main__":
    main()
