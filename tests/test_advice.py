"""The advice core gives before a job runs, for the window and the command line alike:
a refine's strength (core.strength), an init image's size (core.init_size), and both as
the command line's notes (core.advice)."""
from __future__ import annotations

from core import advice, demo, init_size, strength
from core.project import Project, Stage


def test_strength_advice_names_the_range_the_steps_run_and_the_warnings():
    said = strength.advice(0.5, 30, False)
    assert "0.40–0.60" in said.hint and "15 of 30" in said.hint and not said.warning and said.effective == 15
    said = strength.advice(0.2, 20, True)
    assert said.hint.startswith("Same family: 0.10–0.25") and said.effective == 4 and not said.warning
    assert "drift" in strength.advice(0.6, 20, None).warning  # above core.drift's limit
    said = strength.advice(0.02, 10, None)
    assert said.effective == 0 and said.warning == "10 steps × 0.02 runs no step: raise steps or strength."


def test_effective_steps_is_diffusers_cut_and_validation_says_the_steps_needed():
    import pytest

    from core.errors import ProjectError
    from core.project import validate

    # int(), not round(): 7 × 0.3 runs 2 steps, as diffusers' img2img pipelines cut it.
    assert strength.effective_steps(7, 0.3) == 2 and strength.effective_steps(10, 0.05) == 0
    assert strength.steps_needed(0.05) == 20 and strength.effective_steps(20, 0.05) == 1
    p = Project(width=64, height=64, stages=[Stage(demo.BASE, steps=4), Stage(demo.REFINER, steps=10, handoff="pixel",
                                                                              strength=0.05)])
    with pytest.raises(ProjectError, match="use at least 20 steps"):
        validate(p)


def test_init_size_snaps_a_far_size_to_the_native_area_keeping_its_shape():
    assert init_size.size_to_snap(1000, 1000, 1024, 8) is None  # near enough
    assert init_size.size_to_snap(200, 150, 1024, 8) == init_size.snapped(200, 150, 1024, 8) == (1184, 888)
    assert init_size.size_to_snap(4000, 3000, 512, 64) == (576, 448)
    assert init_size.snapped(10, 10000, 64, 8) == (8, 2024)  # never below one multiple


def test_init_size_for_a_project_uses_the_first_enabled_stage_model(tmp_path):
    p = Project(width=200, height=150, stages=[Stage(demo.REFINER, handoff="pixel")])
    assert init_size.for_project(p) is None  # no init image: the size is the user's to pick
    p.init_image = str(tmp_path / "photo.png")
    said = init_size.for_project(p)  # the demo models were made for 64×64
    assert said == init_size.InitSizeAdvice((200, 150), demo.NATIVE_SIZE, (72, 56))
    assert said.note() == "200×150 is far from the model's 64×64 area: expect mush or repeats"
    p.width, p.height = 72, 56
    assert init_size.for_project(p) is None


def test_notes_warn_of_a_far_init_size_and_each_refine_strength_that_drifts_or_runs_nothing(tmp_path):
    p = Project(width=64, height=64, stages=[Stage(demo.BASE, steps=20),
                                             Stage(demo.REFINER, steps=20, handoff="pixel", strength=0.6, name="refine")])
    assert advice.notes(p) == ["stage 2 (refine): Above 0.5 the text and composition may drift from the previous stage."]
    said = advice.stage_strength_advice(p)
    assert list(said) == [1] and said[1] == strength.advice(0.6, 20, True)  # one family: demo base and refiner
    # An ensemble (told from the families) switches, it has no strength to advise on.
    p.stages[1].handoff = "auto"
    assert advice.stage_strength_advice(p) == {}
    # An init image: the first stage refines it at its strength, and the size is far from 64².
    p.init_image, p.width, p.height = str(tmp_path / "photo.png"), 200, 150
    p.stages[0].strength = 0.04
    assert advice.notes(p) == [
        "200×150 is far from the model's 64×64 area: expect mush or repeats (the same shape at that area: 72x56)",
        "stage 1 (" + demo.BASE + "): 20 steps × 0.04 runs no step: raise steps or strength."]
