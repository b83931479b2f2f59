"""Candidates: the first stage runs with N seeds, a scorer rates each image, and the best K
continue through the chain.

Each candidate is the project at its own seed (candidate_project), run by the engine as a
job of its own up to its first stage, which the stage store keeps under a key that holds
the seed. The chosen ones then run from the second stage, reusing that stored output, and
picking another candidate later (repick) is the same re-run from stage 2. Every
candidate's first-stage PNG records its score in its recipe chunk:
`"score": {"scorer": REF, "value": V}`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

from core import events as ev
from core.project import MAX_SEED, Project


def candidate_seeds(project: Project) -> list[int]:
    """seed, seed+1, ... from the first stage's seed, one per candidate."""
    _, first = project.enabled_stages()[0]
    base = first.effective_seed(project.seed)
    return [(base + k) % (MAX_SEED + 1) for k in range(project.candidates)]


def candidate_project(project: Project, seed: int) -> Project:
    """The project one candidate is: the first stage at `seed`, and no candidates of its own
    (so its recipe restores that image). A first stage with no seed of its own takes the
    project's, as the stages after it do."""
    out = project.copy()
    out.candidates, out.keep = 1, 1
    index, first = out.enabled_stages()[0]
    if first.seed is None:
        out.seed = seed
    else:
        out.stages[index].seed = seed
    return out


def repick(project: Project, seed: int) -> tuple[Project, int | None]:
    """Another candidate continues: its project and the stage to run it from (the second
    enabled stage; None for a one-stage chain, where the candidate is the final image)."""
    enabled = project.enabled_stages()
    return candidate_project(project, seed), enabled[1][0] if len(enabled) > 1 else None


def ranked(candidates: list[ev.Candidate]) -> list[ev.Candidate]:
    """Best score first; equal scores keep seed order."""
    return sorted(candidates, key=lambda c: -c.score)


def run_candidates(project: Project, emit: Callable, run_one: Callable, out, cancel, models) -> None:
    """The candidate job on this thread. `run_one(project, emit, **engine options)` runs one
    engine job (core.engine.execute, bound to this job's cancel token, models and store)."""
    from core.devices import best_device
    from core.scorer_refs import resolve_scorer

    from core.project import validate

    started = time.perf_counter()
    validate(project)  # before the scorer resolves: a project with no stage has no candidates
    spec = resolve_scorer(project.scorer or "", cancel.event)
    device = best_device()
    first_index, first = project.enabled_stages()[0]
    prompt = first.effective_prompt(project.prompt)
    scores: dict[int, float] = {}
    finished: list[ev.StageFinished] = []
    state: dict = {"started": False, "ended": False}

    def annotate_for(seed: int):
        def annotate(plan, image) -> dict | None:
            if plan.position != 0:
                return None
            # On the engine's (torch's) thread; again when a handed-over preview is replaced by
            # its decode after the job (core.deferred_decode), so the score is the real image's.
            scores[seed] = models.scorers.get(spec, device).score(image, prompt)
            return {"score": {"scorer": spec.ref, "value": scores[seed]}}
        return annotate

    def forward(e) -> None:
        if isinstance(e, ev.JobStarted):
            if state["started"]:
                return  # one job, as the window and the command line see it
            state["started"] = True
        if isinstance(e, ev.JobFinished):
            finished.extend(e.stages)
            return
        if isinstance(e, (ev.JobFailed, ev.JobCancelled)):
            state["ended"] = True
        emit(e)

    def plan_for(seed: int, final=None):
        return dataclasses.replace(out, stem=f"{out.stem}-seed{seed}", final=final)

    candidates = []
    for seed in candidate_seeds(project):
        emit(ev.Notice(f"candidate seed {seed} ({len(candidates) + 1} of {project.candidates})"))
        run_one(candidate_project(project, seed), forward, out=plan_for(seed), until=0, annotate=annotate_for(seed))
        if state["ended"]:
            return
        done = [f for f in finished if f.index == first_index][-1]
        candidates.append(ev.Candidate(seed, done.path, scores[seed], done.image))
    kept = [c.seed for c in ranked(candidates)[:project.keep]]
    written: list = []  # a one-stage chain's best, copied to the path the caller named
    emit(ev.CandidatesScored(spec.ref, candidates, kept, project))
    for seed in kept:
        chosen, from_stage = repick(project, seed)
        final = out.final if project.keep == 1 else None
        if from_stage is None:
            if final is not None:
                from core.atomic import write_bytes

                path = next(c.path for c in candidates if c.seed == seed)
                write_bytes(final, path.read_bytes())
                written.append(final)
            continue
        run_one(chosen, forward, out=plan_for(seed, final), from_stage=from_stage, annotate=annotate_for(seed))
        if state["ended"]:
            return
    emit(ev.JobFinished([f.path for f in finished] + written, time.perf_counter() - started, finished))
