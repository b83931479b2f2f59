"""The memory policy and precision the README promises: `auto` keeps everything resident when
it fits in free VRAM, one model at a time when the largest fits, CPU offload otherwise, and
all resident on a CPU; `resident` keeps both models of a chain loaded; `auto` precision is
fp32 on a CPU, bf16 for flow-matching models and fp16 for SD/SDXL on a GPU. The free VRAM of
a GPU this machine lacks is the one stand-in: torch.cuda.mem_get_info."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.engine import estimate_bytes, resolve_policy
from core.families import FAMILIES
from core.models import ModelCache, parse_ref, pick_dtype, resolve
from core.project import Project, Stage
from tests.engine_helpers import run_job


def plans(*folders):
    return [SimpleNamespace(resolved=resolve(parse_ref(str(f)))) for f in folders]


def test_auto_policy_follows_free_vram(tiny_models, monkeypatch):
    import torch

    chain = plans(tiny_models["sd"], tiny_models["sd_other"])
    one = estimate_bytes(chain[0].resolved)
    assert one > 0 and estimate_bytes(chain[1].resolved) == one  # the same config, other weights
    assert resolve_policy("auto", "cpu", chain) == "resident"
    for free, expected in [(3 * one, "resident"), (2 * one, "sequential"), (one, "offload")]:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda free=free: (free, 80 * 2**30))
        assert resolve_policy("auto", "cuda", chain) == expected, free
    # One model used twice counts once.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2 * one, 80 * 2**30))
    assert resolve_policy("auto", "cuda", plans(tiny_models["sd"], tiny_models["sd"])) == "resident"
    assert resolve_policy("sequential", "cuda", chain) == "sequential"


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
