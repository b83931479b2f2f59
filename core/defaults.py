"""The project a new window or a bare command starts from: the offline demo family."""
from __future__ import annotations

from core import demo
from core.project import Project, Stage


def default_project() -> Project:
    return Project(
        prompt="a red circle on a blue background",
        negative_prompt="",
        width=demo.NATIVE_SIZE,
        height=demo.NATIVE_SIZE,
        seed=0,
        stages=[
            Stage(model=demo.BASE, steps=20, guidance=5.0, name="base"),
            Stage(model=demo.REFINER, steps=20, guidance=5.0, handoff="ensemble", switch_at=0.8, name="refiner",
                  prompt_suffix="sharp detailed texture"),
        ],
    )
