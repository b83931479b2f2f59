"""A stage's own scheduler (A1111 names) drives its call, and is restored afterwards so a
shared pipeline's next stage gets the model's default again."""
from __future__ import annotations

import numpy as np

from core import events as ev
from core.models import ModelCache
from core.project import Project, Stage
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"


def test_stage_scheduler_equals_plain_diffusers_with_that_scheduler(tiny_models, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    sd = str(tiny_models["sd"])
    p = Project(prompt=PROMPT, width=32, height=32, seed=5, stages=[
        Stage(sd, steps=6, guidance=5.0, scheduler="DPM++ 2M Karras"),
        Stage(sd, steps=6, guidance=5.0, handoff="pixel", strength=0.5),
    ])
    models = ModelCache()
    done = of(run_job(p, tmp_path, models), ev.StageFinished)

    pipe = load(tiny_models["sd"])
    default_scheduler = type(pipe.scheduler)
    karras = pipe.components | {"scheduler": DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, use_karras_sigmas=True)}
    expected = type(pipe)(**karras)(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32,
                                    generator=generator(5)).images[0]
    plain = pipe(PROMPT, num_inference_steps=6, guidance_scale=5.0, height=32, width=32,
                 generator=generator(5)).images[0]
    assert np.array_equal(pixels(done[0].image), pixels(expected))
    assert not np.array_equal(pixels(expected), pixels(plain)), "the scheduler must make a difference"
    # The shared pipeline is back on its own scheduler for the next stage and the next job.
    (loaded,) = models.loaded.values()
    assert type(loaded.pipe.scheduler) is default_scheduler


def test_a_scheduler_that_cannot_drive_the_model_fails_readably(tiny_models, tmp_path):
    p = Project(prompt=PROMPT, width=32, height=32, seed=5,
                stages=[Stage(str(tiny_models["sd"]), steps=2, scheduler="Flow Euler")])
    failed = of(run_job(p, tmp_path, on_event=lambda e: None), ev.JobFailed)
    assert len(failed) == 1
    assert "scheduler 'Flow Euler' cannot drive Stable Diffusion 1.x/2.x" in failed[0].message
