"""Running jobs in tests, and the plain diffusers calls an engine run must equal."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core import events as ev
from core.engine import CancelToken, OutputPlan, run
from core.models import ModelCache


def run_job(project, tmp_path: Path, models: ModelCache | None = None, cancel: CancelToken | None = None,
            on_event=None) -> list:
    events = []
    for e in run(project, OutputPlan.in_dir(tmp_path / "out", "job"), cancel=cancel, models=models):
        events.append(e)
        if on_event:
            on_event(e)
    failed = [e for e in events if isinstance(e, ev.JobFailed)]
    assert not failed or on_event is not None or cancel is not None, failed[0].message + "\n" + failed[0].detail
    return events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def load(path: Path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def last_image(project, tmp_path: Path, models: ModelCache | None = None):
    """The last stage's image of a run of the project."""
    return of(run_job(project, tmp_path, models), ev.StageFinished)[-1].image


def assert_input_is_live(image, without, **others) -> None:
    """An adapter and its inputs reach the image: it differs from the run without the
    adapter and from each run with another of its inputs (`control_image=`, `reference=`).
    A bit-identity test alone passes when an input is dead (a zero-initialised control
    embedding ignores the map) or dropped on both sides; this is the other half."""
    got = pixels(image)
    cases = {"without the adapter": without}
    cases.update({f"with another {name.replace('_', ' ')}": other for name, other in others.items()})
    for what, other in cases.items():
        assert not np.array_equal(got, pixels(other)), f"the image is the same {what}: that input never reached it"
