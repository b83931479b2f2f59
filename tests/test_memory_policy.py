"""The memory policy and precision the README promises: `auto` keeps everything resident when
it fits in free VRAM, one model at a time when the largest fits, CPU offload otherwise, and
all resident on a CPU; `resident` keeps both models of a chain loaded; `auto` precision is
fp32 on a CPU, bf16 for flow-matching models and fp16 for SD/SDXL on a GPU. The GPU this
machine lacks is planned for with a VRAM budget (core.memory_plan)."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from core.engine import resolve_policy
from core.memory_plan import peak, stage_needs
from core.families import FAMILIES
from core.models import ModelCache, parse_ref, pick_dtype, resolve
from core.project import Project, Stage
from tests.engine_helpers import run_job


def plans(*folders, size=(64, 64)):
    return [SimpleNamespace(resolved=(r := resolve(parse_ref(str(f)))), family=r.family, kind="diffusion",
                            stage=Stage(str(f)), size=size, index=i) for i, f in enumerate(folders)]


def test_auto_policy_follows_the_budget(tiny_models):
    chain = plans(tiny_models["sd"], tiny_models["sd_other"])
    p = Project(prompt="x", memory_policy="auto", dtype="fp32")
    assert resolve_policy(p, "cpu", chain).placement == "resident"
    # The placements' thresholds with every decode in tiles: a budget short of a placement with
    # whole decodes is met first by tiling them (tests/test_memory_plan.py), then by the next placement.
    one = peak([replace(stage_needs(chain[0], 4), vae_tiling=True)], "sequential")
    needs = [replace(stage_needs(c, 4), vae_tiling=True) for c in chain]
    for budget, expected in [(peak(needs, "resident"), "resident"), (peak(needs, "resident") - 1, "sequential"),
                             (one - 1, "offload")]:
        p.vram_budget = str(budget)
        assert resolve_policy(p, "cuda", chain).placement == expected, budget
    # One model used twice counts once.
    p.vram_budget = str(one)
    assert resolve_policy(p, "cuda", plans(tiny_models["sd"], tiny_models["sd"])).placement == "resident"
    p.memory_policy = "sequential"
    assert resolve_policy(p, "cuda", chain).placement == "sequential"


def test_resident_keeps_both_models_loaded(tiny_models, tmp_path):
    sd, other = str(tiny_models["sd"]), str(tiny_models["sd_other"])
    p = Project(prompt="a red circle", width=32, height=32, memory_policy="resident", stages=[
        Stage(sd, steps=2), Stage(other, steps=2, handoff="pixel", strength=0.5)])
    models = ModelCache()
    run_job(p, tmp_path, models)
    assert sorted(k[0] for k in models.loaded) == sorted([sd, other])


@pytest.mark.parametrize("choice,family,device,expected", [
    ("auto", "zimage", "cpu", "float32"), ("auto", "sdxl", "cpu", "float32"),
    ("auto", "flux", "cuda", "bfloat16"), ("auto", "zimage", "cuda", "bfloat16"), ("auto", "sdxl", "cuda", "float16"),
    ("auto", "sd", "cuda", "float16"), ("fp16", "flux", "cuda", "float16"), ("bf16", "sd", "cuda", "bfloat16"),
    ("fp32", "sdxl", "cuda", "float32"),
])
def test_precision(choice, family, device, expected):
    assert str(pick_dtype(choice, FAMILIES[family], device)) == f"torch.{expected}"
