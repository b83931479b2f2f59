import pytest

from core.defaults import default_project
from core.project import SCHEMA_VERSION, Project, Stage, validate
from core.errors import ProjectError


def problems(project: Project) -> str:
    with pytest.raises(ProjectError) as info:
        validate(project)
    return " | ".join(info.value.problems)


def two_stage(**stage2) -> Project:
    stage2.setdefault("steps", 20)
    return Project(prompt="a cat", width=512, height=512,
                   stages=[Stage("m/base", steps=20), Stage("m/refiner", **stage2)])


def test_default_project_is_valid():
    validate(default_project())


def test_size_not_a_multiple_names_the_multiple_and_a_fix():
    p = two_stage(handoff="pixel")
    p.width = 500
    text = problems(p)
    assert "500x512 is not a multiple of 8" in text and "try 496x512" in text


def test_strength_outside_range():
    assert "strength 1.5 is outside (0, 1]" in problems(two_stage(handoff="pixel", strength=1.5))
    assert "strength 0 is outside (0, 1]" in problems(two_stage(handoff="pixel", strength=0))


def test_strength_that_runs_no_step():
    text = problems(two_stage(handoff="pixel", strength=0.1, steps=4))
    assert "run no denoising step" in text and "at least 10 steps" in text


def test_refine_stage_with_nothing_to_refine():
    p = Project(prompt="x", width=512, height=512, stages=[Stage("m/r", handoff="pixel")])
    assert "nothing to refine" in problems(p)
    p.init_image = "some.png"
    validate(p)


def test_ensemble_switch_point_range_and_init_image_handoff():
    assert "switch point 0 is outside (0, 1]" in problems(two_stage(handoff="ensemble", switch_at=0))
    validate(two_stage(handoff="ensemble", switch_at=1.0))
    # An init image is refined as pixels whatever the first stage asks (core.planning decides
    # it): a latent or ensemble first stage runs, checked as the pixel refine it is.
    p = Project(prompt="x", width=512, height=512, init_image="a.png", stages=[Stage("m", handoff="latent")])
    validate(p)
    p.stages[0].handoff, p.stages[0].switch_at, p.stages[0].upscale = "ensemble", 0, 2.0
    p.stages[0].upscaler = "builtin:demo-upscaler"
    validate(p)
    p.stages[0].strength = 0
    assert problems(p) == "stage 1 (m): strength 0 is outside (0, 1]"


def test_every_problem_is_reported_at_once():
    p = two_stage(handoff="bogus")
    p.prompt, p.seed = "", -1
    text = problems(p)
    assert "prompt is empty" in text and "seed -1" in text and "handoff 'bogus'" in text


def test_round_trip_and_schema():
    p = two_stage(handoff="ensemble", switch_at=0.85, prompt_suffix="sharp")
    d = p.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION
    assert Project.from_dict(d) == p
    newer = dict(d, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ProjectError, match="newer Handoff"):
        Project.from_dict(newer)
    with pytest.raises(ProjectError, match="unknown project field"):
        Project.from_dict(dict(d, colour="red"))


def test_prompts_and_seeds_per_stage():
    s = Stage("m", prompt_suffix="intricate detail")
    assert s.effective_prompt("a knight, ") == "a knight, intricate detail"
    assert Stage("m", prompt="own prompt").effective_prompt("a knight") == "own prompt"
    assert Stage("m").effective_seed(7) == 7 and Stage("m", seed=3).effective_seed(7) == 3


def test_a_version_1_project_reads_with_no_adapters():
    """Schema 1 had no adapter fields: such a project reads back with none, as schema 2."""
    d = Project(prompt="a cat", width=64, height=64, stages=[Stage("m", steps=4)]).to_dict()
    d["schema_version"] = 1
    for stage in d["stages"]:
        for key in ("loras", "controlnet", "ip_adapters"):
            stage.pop(key)
    p = Project.from_dict(d)
    assert (p.stages[0].loras, p.stages[0].controlnet, p.stages[0].ip_adapters) == ([], None, [])
    assert p.to_dict()["schema_version"] == 2
