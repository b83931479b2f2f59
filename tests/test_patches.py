"""Patches a stage's call puts on a cached pipeline (a scheduler swap, an imposed schedule
on an unshifted stand-in scheduler, latents fed into prepare_latents) are context managers
under one ExitStack: a failure anywhere, entering any patch or inside the call, leaves the
cached pipeline exactly as it was."""
from __future__ import annotations

import contextlib

import pytest

from core import schedulers, stage_run
from core.errors import Cancelled
from core.models import ModelCache, parse_ref, resolve
from core.planning import StagePlan
from core.project import Project, Stage
from core.stage_call import Call, StageInput


class Injected(RuntimeError):
    pass


def state(pipe) -> dict:
    """What a patch could leave behind on the pipeline."""
    return {
        "scheduler": pipe.scheduler,
        "config": dict(pipe.scheduler.config),
        "set_timesteps": "set_timesteps" in vars(pipe.scheduler),
        "prepare_latents": "prepare_latents" in vars(pipe),
    }


@pytest.fixture(scope="module")
def zimage(tiny_models):
    """A Z-Image img2img pipeline (flow matching, shifted schedule: every patch applies)."""
    import torch

    resolved = resolve(parse_ref(str(tiny_models["zimage"])))
    return resolved, ModelCache().get(resolved, torch.float32, "cpu").pipeline("refine")


def plan_for(resolved, scheduler: str | None) -> StagePlan:
    stage = Stage(str(resolved.path), steps=4, scheduler=scheduler, handoff="latent", strength=0.5)
    return StagePlan(1, 1, stage, resolved, "latent", steps=4, size=(32, 32), strength=0.5)


def every_patch(pipe) -> Call:
    import torch

    return Call({}, sigmas=[1.0, 0.5], prepared_latents=torch.zeros(1, 16, 4, 4))


def failing_on_enter(*args, **kwargs):
    @contextlib.contextmanager
    def cm():
        raise Injected("entering")
        yield

    return cm()


@pytest.mark.parametrize("where", ["body", "swapped_scheduler", "imposed_schedule", "latents_into_prepare"])
def test_a_failure_anywhere_leaves_the_cached_pipeline_unchanged(zimage, where, monkeypatch):
    resolved, pipe = zimage
    before = state(pipe)
    if where == "swapped_scheduler":
        monkeypatch.setattr(schedulers, "swapped_scheduler", failing_on_enter)
    elif where == "imposed_schedule":
        monkeypatch.setattr(schedulers, "imposed_schedule", failing_on_enter)
    elif where == "latents_into_prepare":
        import core.latents

        monkeypatch.setattr(core.latents, "latents_into_prepare", failing_on_enter)
    seen_inside = {}
    with pytest.raises(Injected):
        with stage_run.patched(pipe, plan_for(resolved, "Flow Euler"), every_patch(pipe)):
            seen_inside = state(pipe)
            raise Injected("inside the call")
    if where == "body":  # every patch was on while the call ran
        assert seen_inside["scheduler"] is not before["scheduler"] and seen_inside["set_timesteps"]
        assert seen_inside["prepare_latents"] and seen_inside["config"]["shift"] == 1.0
    assert state(pipe) == before


def test_the_imposed_schedule_runs_on_a_stand_in(zimage):
    resolved, pipe = zimage
    original = pipe.scheduler
    with schedulers.imposed_schedule(pipe, [1.0, 0.25]):
        pipe.scheduler.set_timesteps(30, mu=0.7)  # whatever the pipeline asks for
        assert pipe.scheduler.sigmas.tolist() == [1.0, 0.25, 0.0]
    assert pipe.scheduler is original and "set_timesteps" not in vars(original)


def test_a_stage_cancelled_mid_call_leaves_the_pipeline_unchanged(zimage):
    """Through run_stage: the step callback raises Cancelled inside the diffusers call."""
    import torch

    from core.stage_call import build_call

    resolved, pipe = zimage
    before = state(pipe)
    p = plan_for(resolved, "Flow Euler")
    p.hands_over = "image"
    side = 32 // pipe.vae_scale_factor
    latents = torch.randn(1, pipe.vae.config.latent_channels, side, side, generator=torch.Generator().manual_seed(0))
    from PIL import Image

    given = StageInput(image=Image.new("RGB", (32, 32)), latents=latents)
    project = Project(prompt="a red circle", width=32, height=32, stages=[p.stage])
    call = build_call(pipe, p, project, given, torch.Generator("cpu").manual_seed(0))
    assert call.prepared_latents is not None
    with pytest.raises(Cancelled):
        stage_run.run_stage(pipe, p, call, given, "cpu", lambda i, n: None, lambda: True)
    assert state(pipe) == before
