"""The one sampler table: every name maps to a diffusers class that takes its options, the
translations to and from A1111, ComfyUI, InvokeAI and NovelAI names agree both ways, and
an unknown sampler is reported, never replaced by a guess."""
from __future__ import annotations

import inspect
import json

import pytest

from core import families
from core.errors import ModelError
from core.interop import samplers
from core.schedulers import SCHEDULERS, check_scheduler, fits, swapped_scheduler


def test_every_choice_builds_with_options_its_class_takes():
    import diffusers

    for name, choice in samplers.CHOICES.items():
        for flow in (False, True):
            cls_name = choice.cls(flow)
            if cls_name is None:
                continue
            cls = getattr(diffusers, cls_name)
            params = inspect.signature(cls.__init__).parameters
            if list(params) == ["self", "args", "kwargs"]:
                assert choice.needs(), f"{name}: {cls_name} is a stand-in, so the table must say what it needs"
                continue
            missing = set(choice.options()) - set(params)
            assert not missing, f"{name} ({'flow' if flow else 'noise'}): {cls_name} takes no {missing}"


def test_a1111_names_both_ways():
    for name, choice in samplers.CHOICES.items():
        sampler, schedule = samplers.to_a1111(name, flow=choice.sampler.noise is None)
        back, notice = samplers.from_a1111(sampler, schedule)
        expected = "Euler" if name == "Flow Euler" else name
        assert back == expected, (name, sampler, schedule, notice)


def test_comfy_names_both_ways():
    for name, choice in samplers.CHOICES.items():
        if not choice.sampler.comfy and name != "Flow Euler" or choice.schedule.comfy is None and not choice.schedule.plain:
            continue
        flow = choice.sampler.noise is None
        sampler_name, scheduler = samplers.to_comfy(name, flow)
        back, _ = samplers.from_comfy(sampler_name, scheduler)
        assert back == ("Euler" if name == "Flow Euler" else name), (name, sampler_name, scheduler)


@pytest.mark.parametrize("given, expected", [
    (("DPM++ 2M Karras", None), "DPM++ 2M Karras"),  # A1111 before 1.9: one combined label
    (("DPM++ 2M", "Karras"), "DPM++ 2M Karras"),  # 1.9 and later: two fields
    (("DPM++ 2M", "Automatic"), "DPM++ 2M Karras"),  # Automatic: the sampler's own default
    (("DPM++ 2M SDE", "Automatic"), "DPM++ 2M SDE Exponential"),
    (("Euler a", "Automatic"), "Euler a"),
    (("k_euler_a", None), "Euler a"),
    (("Euler", "SGM Uniform"), "Euler SGM Uniform"),
])
def test_a1111_labels(given, expected):
    assert samplers.from_a1111(*given)[0] == expected


@pytest.mark.parametrize("tool_name, expected", [
    ("dpmpp_2m_sde_k", "DPM++ 2M SDE Karras"), ("euler_a", "Euler a"), ("k_lms", "LMS"),
    ("k_euler_ancestral", "Euler a"), ("unipc_k", "UniPC Karras"), ("ddim", "DDIM"),
])
def test_invokeai_and_novelai_names(tool_name, expected):
    assert samplers.from_alias(tool_name, "InvokeAI")[0] == expected


def test_an_unknown_sampler_gives_a_notice_not_a_guess():
    for name, notice in (samplers.from_a1111("Restart"), samplers.from_comfy("dpmpp_3m_sde", "exponential"),
                         samplers.from_alias("dpmpp_3m_k", "InvokeAI"), samplers.from_a1111("DPM++ 2M", "Polyexponential")):
        assert name is None and "the stage keeps its model's own scheduler" in notice


def test_an_approximation_is_said():
    name, notice = samplers.from_a1111("DPM++ 2S a", "Karras")
    assert name == "DPM++ 2S a Karras" and "singlestep" in notice


def test_the_model_default_is_named_from_its_config():
    from core.paths import RESOURCES

    demo = json.loads((RESOURCES / "demo" / "demo-base" / "scheduler" / "scheduler_config.json").read_text())
    assert samplers.name_for_config(demo) == "Euler"
    assert samplers.name_for_config({**demo, "use_karras_sigmas": True}) == "Euler Karras"
    assert samplers.name_for_config({**demo, "timestep_spacing": "trailing"}) == "Euler SGM Uniform"
    assert samplers.name_for_config({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++",
                                     "use_karras_sigmas": True}) == "DPM++ 2M SDE Karras"
    assert samplers.name_for_config({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}) == "Euler"
    assert samplers.name_for_config({"_class_name": "SomeNewScheduler"}) is None


def test_schedulers_run_the_table_by_family():
    sd, flux = families.FAMILIES["sd"], families.FAMILIES["flux"]
    assert check_scheduler("Euler", flux) is None and check_scheduler("Euler", sd) is None
    assert "cannot drive" in check_scheduler("Euler a", flux)
    assert "cannot drive" in check_scheduler("Flow Euler", sd)
    assert "unknown scheduler" in check_scheduler("Banana", sd)
    assert fits("Euler SGM Uniform", False) and not fits("Euler SGM Uniform", True)
    assert "DPM++ 2M Karras" in SCHEDULERS and "Flow Euler" in SCHEDULERS


def test_a_scheduler_whose_package_is_missing_says_so(monkeypatch):
    from core import schedulers

    class Pipe:
        scheduler = None

    monkeypatch.setattr(schedulers, "_importable", lambda module: False)
    with pytest.raises(ModelError, match="needs the scipy package"):
        with swapped_scheduler(Pipe(), "LMS", families.FAMILIES["sd"]):
            pass
