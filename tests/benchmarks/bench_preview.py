"""What live previews cost: the same job with and without them, in one process.

    python -m tests.benchmarks.bench_preview [--repeats 5] [--size 128] [--steps 40]

Builds a tiny SDXL base (tests/tiny_pipelines.py; or --base FOLDER for a real model on a
GPU machine), runs a one-stage job through core.engine.execute with live_previews off and
on, alternating, the first of each a warm-up. Prints the median denoise seconds of each,
the number of previews, the time spent inside core.previews.preview, and the ratios;
the budget is previews costing at most 5% (a ratio of 1.05).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--base", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HANDOFF_HOME", tempfile.mkdtemp(prefix="handoff-bench-"))

    from diffusers.utils import logging

    logging.set_verbosity_error()
    from core.engine import OutputPlan, execute
    from core.events import JobFinished, StageFinished, StagePreview
    from core.models import ModelCache
    from core.project import Project, Stage

    from tests.benchmarks.tiny_pair import ensure_pair

    ensure_pair(args)
    project = Project(prompt="a red circle on a blue background", width=args.size, height=args.size, seed=1,
                      stages=[Stage(model=str(args.base), steps=args.steps, guidance=5.0)])
    models = ModelCache()
    out = OutputPlan.in_dir(Path(tempfile.mkdtemp(prefix="handoff-bench-out-")))

    def job(previews: bool) -> tuple[float, float, int]:
        events = []
        execute(project, events.append, out, models=models, live_previews=previews)
        done = [e for e in events if isinstance(e, JobFinished)]
        assert done, [e for e in events if not isinstance(e, StagePreview)][-1]
        stage = next(e for e in events if isinstance(e, StageFinished))
        return stage.denoise_seconds, done[0].seconds, sum(isinstance(e, StagePreview) for e in events)

    import time

    import core.previews

    spent = [0.0]
    real_preview = core.previews.preview

    def timed_preview(*a, **k):
        t = time.perf_counter()
        try:
            return real_preview(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    core.previews.preview = timed_preview  # stage_run imports it at each use
    plain, live, counts, inside = [], [], [], []
    for i in range(args.repeats + 1):
        # Alternating which goes first, so a machine getting busier mid-pair evens out.
        if i % 2:
            a = job(False)
        spent[0] = 0.0
        b = job(True)
        if not i % 2:
            a = job(False)
        if i:
            inside.append(spent[0])  # the first pair warms the caches (and fits the preview map once)
            plain.append(a[0])
            live.append(b[0])
            counts.append(b[2])
    p, l = statistics.median(plain), statistics.median(live)
    print(f"{args.steps} steps at {args.size}px, {args.repeats} repeats (median denoise seconds)")
    print(f"  without previews: {p:.3f} s ({args.steps / p:.1f} it/s)")
    print(f"  with previews:    {l:.3f} s, {statistics.median(counts):.0f} previews per job")
    print(f"  time inside core.previews.preview: {statistics.median(inside):.3f} s per job "
          f"({statistics.median(inside) / l * 100:.1f}% of the denoise time)")
    print(f"  ratio: {l / p:.3f} of medians, {min(live) / min(plain):.3f} of the fastest runs (budget ≤ 1.05)")
    # On a shared machine the whole-job ratio is mostly other people's load; the time
    # measured inside the preview itself is the cost previews add.


if __name__ == "__main__":
    main()
