"""Presets: each is a valid project whose handoffs are the ones it claims, the demo
preset runs end to end, and the family positions come from core.families."""
from __future__ import annotations

from pathlib import Path

import pytest

from core import events as ev
from core.families import FAMILIES
from core.planning import plan
from core.models import ModelRef, ResolvedModel
from core.presets import PRESETS, family_positions, preset
from core.project import Project, validate
from core.errors import ProjectError
from tests.engine_helpers import of, run_job

# Which VAE each model ships (Z-Image, FLUX.1 and Chroma use FLUX.1's; ERNIE-Image uses
# FLUX.2's; SDXL base and refiner share theirs), standing in for weight fingerprints.
VAES = {
    "Tongyi-MAI/Z-Image-Turbo": "flux1", "Tongyi-MAI/Z-Image": "flux1", "black-forest-labs/FLUX.1-dev": "flux1",
    "black-forest-labs/FLUX.1-schnell": "flux1", "lodestones/Chroma1-HD": "flux1", "baidu/ERNIE-Image-Turbo": "flux2",
    "black-forest-labs/FLUX.2-dev": "flux2", "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
    "stabilityai/stable-diffusion-xl-refiner-1.0": "sdxl", "stabilityai/stable-diffusion-3.5-large": "sd3",
    "builtin:demo-base": "demo", "builtin:demo-refiner": "demo",
}


def planned(key: str) -> list:
    p = PRESETS[key]
    project = p.build()
    enabled = project.enabled_stages()
    resolved = [ResolvedModel(ModelRef(s.model, "hub", s.model), Path("/nowhere"), FAMILIES[fam])
                for (_, s), fam in zip(enabled, p.families)]
    return plan(project, resolved, lambda r: VAES[r.ref.raw])


@pytest.mark.parametrize("key", [k for k, p in PRESETS.items() if p.complete])
def test_every_preset_validates_with_its_families_multiples(key):
    p = PRESETS[key]
    project = p.build()
    assert len(p.families) == len(p.handoffs) == len(project.enabled_stages())
    multiples = {i: FAMILIES[f].multiple for (i, _), f in zip(project.enabled_stages(), p.families)}
    validate(project, stage_multiples=multiples)
    assert Project.from_dict(project.to_dict()) == project
    assert p.title and p.note


@pytest.mark.parametrize("key", [k for k, p in PRESETS.items() if p.complete])
def test_preset_handoffs_are_what_it_claims(key):
    plans = planned(key)
    assert tuple(s.handoff for s in plans) == PRESETS[key].handoffs
    assert not any("impossible" in s.note or "not supported" in s.note for s in plans), [s.note for s in plans]
    for s in plans[1:]:
        assert s.family.can_take("refine")
    assert plans[0].family.can_take("base")


def test_refine_presets_run_at_least_one_step():
    for p in PRESETS.values():
        if not p.complete:
            continue
        for s in p.build().stages[1:]:
            if s.handoff in ("pixel", "latent"):
                assert int(s.steps * s.strength) >= 1, (p.key, s)


def test_custom_slot_only_lacks_a_model():
    assert not PRESETS["custom"].complete
    with pytest.raises(ProjectError) as info:
        validate(preset("custom"))
    assert info.value.problems == ["stage 1 has no model"]


def test_presets_are_fresh_and_named():
    a, b = preset("sdxl-ensemble"), preset("sdxl-ensemble")
    a.stages[0].steps = 1
    assert b.stages[0].steps == 40
    assert preset("zimage-base-turbo").stages[1].handoff == "latent"
    with pytest.raises(KeyError, match="no preset"):
        preset("nope")


def test_flux2_and_ernie_take_both_positions():
    assert PRESETS["flux2-zturbo"].families[0] == "flux2"
    assert PRESETS["ernie-flux2"].families == ("ernie", "flux2")
    refine = preset("ernie-flux2").stages[1]
    assert (refine.model, refine.handoff, refine.strength) == ("black-forest-labs/FLUX.2-dev", "latent", 0.3)
    for key in ("flux2", "ernie"):
        assert FAMILIES[key].can_take("base") and FAMILIES[key].can_take("refine")


def test_family_positions_come_from_the_families_table():
    rows = {r.key: r for r in family_positions()}
    assert set(rows) == set(FAMILIES)
    for key, fam in FAMILIES.items():
        assert rows[key].base == (fam.generate is not None)
        assert rows[key].refine == (fam.refine is not None)
        assert rows[key].summary == fam.positions()
    assert (rows["ernie"].base, rows["ernie"].refine) == (True, True)
    assert (rows["sdxl-refiner"].base, rows["sdxl-refiner"].refine) == (False, True)
    assert rows["zimage"].ensemble_group == "zimage"
    with pytest.raises(ValueError):
        FAMILIES["sd"].can_take("middle")


def test_demo_preset_runs_end_to_end(tmp_path):
    events = run_job(preset("demo"), tmp_path)
    done = of(events, ev.StageFinished)
    assert [d.handoff for d in done] == list(PRESETS["demo"].handoffs)
    assert of(events, ev.JobFinished) and all(d.path.is_file() for d in done)
