"""Seeds are 64-bit, as ComfyUI's and A1111's are: a recipe keeps its seed exactly through
every reader, writer and the project file, and the noise is what torch's CPU generator
draws from that seed (its low 32 bits: see core.project.MAX_SEED)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from core import events as ev
from core import project_file
from core.errors import ProjectError
from core.interop import a1111, comfyui
from core.interop.detect import from_chunks, from_json
from core.project import MAX_SEED, Project, Stage, validate
from core.sweep import SweepError, cells, parse_axis
from tests.engine_helpers import of, pixels, run_job
from tests.interop_helpers import no_models, sample

BIG = 2**63 + 5  # past both 32 and 63 bits: a signed 64-bit int would read it as negative


def test_seed_bounds_are_64_bit():
    assert MAX_SEED == 0xFFFF_FFFF_FFFF_FFFF  # ComfyUI's seed maximum
    p = Project(prompt="x", seed=MAX_SEED, stages=[Stage("m", seed=BIG)])
    validate(p)
    for seed in (-1, 2**64):
        with pytest.raises(ProjectError) as exc:
            validate(Project(prompt="x", seed=seed, stages=[Stage("m")]))
        assert exc.value.problems == [f"seed {seed} is outside 0..{MAX_SEED}"]
        with pytest.raises(ProjectError) as exc:
            validate(Project(prompt="x", stages=[Stage("m", seed=seed)]))
        assert len(exc.value.problems) == 1 and f"seed {seed} is outside" in exc.value.problems[0]


def test_torch_cpu_noise_follows_the_low_32_bits():
    """The finding the design rests on: torch.Generator('cpu').manual_seed takes any seed
    up to 2**64 - 1, and its noise depends on the low 32 bits only."""
    import torch

    def noise(seed):
        return torch.randn(16, generator=torch.Generator("cpu").manual_seed(seed))

    assert torch.Generator("cpu").manual_seed(MAX_SEED).initial_seed() == MAX_SEED
    assert torch.equal(noise(5), noise(5 + 2**32)) and torch.equal(noise(5), noise(BIG - 2**63))
    assert not torch.equal(noise(5), noise(6))
    with pytest.raises((RuntimeError, ValueError)):  # past 64 bits torch refuses ("Overflow")
        torch.Generator("cpu").manual_seed(2**64)


def test_a_64_bit_seed_runs_and_draws_the_noise_of_its_low_bits(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])

    def image(seed):
        p = Project(prompt="a red circle", width=32, height=32, seed=seed, stages=[Stage(sd, steps=2)])
        events = run_job(p, tmp_path / str(seed))
        return pixels(of(events, ev.StageFinished)[-1].image)

    low = image(7)
    assert np.array_equal(low, image(7 + 2**40))  # same low 32 bits: same noise
    assert not np.array_equal(low, image(8))


def test_a_comfyui_graph_keeps_its_64_bit_seed_and_exports_it():
    graph = json.loads(sample("comfyui/default-workflow.json"))
    graph = copy.deepcopy(graph)
    sampler = next(n for n in graph["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][0] = BIG
    imported = from_json(graph, "graph.json", no_models())
    assert imported.project.seed == BIG and not any("seed" in n for n in imported.notes), imported.notes
    validate(imported.project)
    out = comfyui.ui_workflow(imported.project)
    seeds = [n["widgets_values"][0] for n in out["nodes"] if n["type"] == "KSampler"]
    assert seeds == [BIG]
    assert comfyui.api_prompt(imported.project)[next(k for k, v in comfyui.api_prompt(imported.project).items()
                                                     if v["class_type"] == "KSampler")]["inputs"]["seed"] == BIG


def test_an_out_of_range_imported_seed_is_folded_as_torch_does_with_a_note():
    graph = json.loads(sample("comfyui/default-workflow.json"))
    sampler = next(n for n in graph["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][0] = -1
    imported = from_json(graph, "graph.json", no_models())
    assert imported.project.seed == MAX_SEED
    assert any(f"-1 is outside 0..{MAX_SEED}: used {MAX_SEED}" in n for n in imported.notes)


@pytest.mark.parametrize("seed", [2**32, 2**40 + 3, BIG, 2**64 - 1])
def test_an_a1111_text_with_a_big_seed_round_trips(seed):
    p = Project(prompt="a lighthouse", width=512, height=512, seed=seed, stages=[Stage("owner/base", steps=20)])
    text = a1111.write(p)
    assert f"Seed: {seed}," in text
    back = from_chunks({"parameters": text}, "image.png", lookup=no_models())
    assert back.project.seed == seed and not any("seed" in n.lower() for n in back.notes), back.notes


def test_the_project_file_keeps_64_bit_seeds(tmp_path):
    p = Project(prompt="x", seed=BIG, stages=[Stage("m", steps=4), Stage("m", handoff="pixel", strength=0.3, seed=MAX_SEED)])
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p))
    back = project_file.load(path).project
    assert (back.seed, back.stages[1].seed) == (BIG, MAX_SEED)
    validate(back)


def test_a_sweep_takes_64_bit_seeds_and_refuses_others():
    p = Project(prompt="x", width=32, height=32, stages=[Stage("m", steps=4)])
    axis = parse_axis(f"seed=3,{BIG},{MAX_SEED}", p)
    assert axis.values == (3, BIG, MAX_SEED)
    for cell in cells(p, axis):
        validate(cell.project)
    assert [c.project.seed for c in cells(p, axis)] == [3, BIG, MAX_SEED]
    for bad in ("-1", str(2**64)):
        with pytest.raises(SweepError) as exc:
            parse_axis(f"seed=1,{bad}", p)
        assert f"seed {bad} is outside 0..{MAX_SEED}" in str(exc.value) and "\n" not in str(exc.value)
