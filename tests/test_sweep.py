"""Sweeps: axes parsed from specs, cells that share the stages before the swept one share
their stored output, a labelled grid, each cell's PNG with its recipe, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core import events as ev
from core import project_file
from core.cli import EXIT_USAGE, main
from core.interop.image_text import read_texts
from core.metadata import RECIPE_KEY, read_recipe
from core.models import ModelCache
from core.project import Lora, Project, Stage
from core.stage_store import StageStore
from core.sweep import SweepError, parse_axis, reuse_from, run_sweep
from tests.engine_helpers import of, pixels, run_job


def chain(sd, **second) -> Project:
    return Project(prompt="a red circle", width=32, height=32, seed=3, stages=[
        Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5, **second)])


def test_axis_specs(tiny_models):
    p = chain("m")
    p.stages[1].loras = [Lora("a.safetensors", 1.0)]
    a = parse_axis("2.strength=0.1,0.2", p)
    assert (a.stage, a.param, a.values) == (1, "strength", (0.1, 0.2))
    assert parse_axis("seed=1,2,3", p).stage is None
    assert parse_axis("1.steps=4,8", p).values == (4, 8)
    assert parse_axis("2.lora1.weight=0.5,1", p).param == "lora_weight"
    assert parse_axis("2.prompt_suffix=sharp|film, 35mm", p).values == ("sharp", "film, 35mm")
    for bad, why in [("strength=0.1", "stage number"), ("3.strength=0.1", "stages 1..2"),
                     ("2.colour=1", "cannot be swept"), ("2.strength=a,b", "numbers"),
                     ("2.lora2.weight=1", "1 LoRA"), ("nonsense", "PARAM=VALUES"), ("2.steps=4,,5", "empty")]:
        with pytest.raises(SweepError, match=why):
            parse_axis(bad, p)
    assert reuse_from(p) == 1


def test_strength_sweep_runs_the_base_once_per_seed_and_matches_single_runs(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = chain(sd)
    x, y = parse_axis("2.strength=0.25,0.5,0.75", p), parse_axis("seed=3,4", p)
    seen = []
    result = run_sweep(p, x, y, tmp_path / "sweep", seen.append, models=ModelCache(),
                       store=StageStore(tmp_path / "stages"))
    assert len(result.cells) == 6 and not any(c.error for c in result.cells)
    base_runs = [e for c, e in seen if isinstance(e, ev.StageFinished) and e.index == 0 and not e.reused]
    assert len(base_runs) == 2, "stage 1 runs once per seed"
    assert [c.reused for c in result.cells] == [0, 1, 1, 0, 1, 1]
    # Each cell is bit for bit a fresh single run of its project, and the six differ.
    for n, cell in enumerate(result.cells):
        alone = of(run_job(cell.project, tmp_path / f"alone-{n}"), ev.StageFinished)[-1]
        assert np.array_equal(pixels(cell.image), pixels(alone.image)), cell.labels
    assert len({pixels(c.image).tobytes() for c in result.cells}) == 6
    cell = result.cells[4]  # strength 0.5, seed 4
    # Each cell's PNG carries its full recipe, and its drift.
    assert read_recipe(cell.path).project.stages[1].strength == 0.5 and read_recipe(cell.path).project.seed == 4
    assert "drift" in json.loads(read_texts(cell.path).chunks[RECIPE_KEY])
    grid = Image.open(result.grid)
    assert grid.width >= 3 * 160 and grid.height >= 2 * 160
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["x"] == "2.strength" and len(summary["cells"]) == 6
    assert summary["cells"][2]["drift"]["warning"].startswith("strength 0.75")


def test_an_auto_handoff_offers_the_axis_of_what_the_plan_makes_of_it():
    """demo base → demo refiner is an ensemble under "auto" (core.planning), demo refiner →
    demo base a latent or pixel refine: each offers its own knob, not both."""
    from core import demo
    from core.sweep import auto_knob, stage_params

    p = Project(prompt="a red circle", stages=[Stage(demo.BASE), Stage(demo.REFINER, handoff="auto"),
                                              Stage(demo.BASE, handoff="auto")])
    assert "switch_at" in stage_params(p, 1) and "strength" not in stage_params(p, 1)
    assert "strength" in stage_params(p, 2) and "switch_at" not in stage_params(p, 2)
    with pytest.raises(SweepError, match="runs as an ensemble for these models, so it has no strength"):
        parse_axis("2.strength=0.2,0.4", p)
    assert parse_axis("2.switch_at=0.6,0.8", p).param == "switch_at"
    # Upscaling, the plan resizes the image: a pixel refine at a strength.
    p.stages[1].upscale = 2.0
    assert auto_knob(p, 1) == "strength" and "switch_at" not in stage_params(p, 1)
    # Stage 2 off: stage 3 follows the base, another base (no ensemble into it).
    p.stages[1].upscale, p.stages[1].enabled = 1.0, False
    assert auto_knob(p, 2) == "strength"
    # A model whose family is not known yet: the plan decides later, so both stay.
    p.stages[2].model = "gone.safetensors"
    assert auto_knob(p, 2) is None
    assert {"strength", "switch_at"} <= set(stage_params(p, 2))


def _readme_sweeps() -> list[list[str]]:
    """The README's `main.py sweep` commands, as argument lists (continuation lines joined)."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text().replace("\\\n", " ")
    return [shlex.split(line.split("main.py", 1)[1]) for line in text.splitlines() if "main.py sweep " in line]


def test_the_readmes_sweep_examples_run_on_the_demo(tmp_path, capsys):
    """Each sweep in the README fits the demo's chain (its refiner is an ensemble, so a
    strength axis was refused with exit 2); the first runs, small and with few steps."""
    from core.defaults import default_project
    from core.sweep import cells

    demo = default_project()
    demo.width = demo.height = 128
    for stage in demo.stages:
        stage.steps = 4
    path = project_file.save(tmp_path / "my-project.handoff", project_file.ProjectDocument(demo))
    commands = _readme_sweeps()
    assert len(commands) == 2
    for args in commands:
        x, y = args[args.index("--x") + 1], args[args.index("--y") + 1]
        cells(demo, parse_axis(x, demo), parse_axis(y, demo))  # what the CLI checks before anything loads
    args = [str(path) if a == "my-project.handoff" else str(tmp_path / "sweep") if a == "sweep/" else a
            for a in commands[0]]
    y = args.index("--y") + 1
    args[y] = args[y].split(",")[0]  # one seed: a row of the grid is enough to know it runs
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [c["labels"] for c in summary["cells"]] == [["2.switch_at=0.6", "seed=1"], ["2.switch_at=0.7", "seed=1"],
                                                        ["2.switch_at=0.8", "seed=1"]]
    assert all(c["path"] and not c["error"] for c in summary["cells"])


def test_cli_sweep_writes_a_grid_and_bad_specs_exit_2(tiny_models, tmp_path, capsys):
    p = chain(str(tiny_models["sd"]))
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p))
    assert main(["sweep", str(path), "--x", "2.steps=4,6", "--out", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "s" / "grid.png").is_file() and "2.steps=6" in out and "SSIM" in out
    for spec in ("2.strength=2", "9.steps=1", "bogus"):
        assert main(["sweep", str(path), "--x", spec, "--out", str(tmp_path / "t")]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("handoff: "), err


def test_axes_offer_only_what_a_stage_position_takes(tiny_models, tmp_path, capsys):
    from core.sweep import stage_params

    p = chain("m")  # stage 1 generates from noise, stage 2 takes pixels
    assert "strength" not in stage_params(p, 0) and "switch_at" not in stage_params(p, 0)
    assert "strength" in stage_params(p, 1) and "switch_at" not in stage_params(p, 1)
    p.stages[1].handoff = "ensemble"
    assert "switch_at" in stage_params(p, 1) and "strength" not in stage_params(p, 1)
    for bad, why in [("1.strength=0.2", "generates from noise"), ("1.switch_at=0.5", "no switch_at"),
                     ("2.strength=0.2", "'ensemble' handoff")]:
        with pytest.raises(SweepError, match=why):
            parse_axis(bad, p)
    p.init_image = str(tmp_path / "init.png")  # stage 1 now refines that image: it has a strength
    assert parse_axis("1.strength=0.2,0.4", p).param == "strength"
    # The CLI's sweep refuses the same axes, before anything loads.
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(chain(str(tiny_models["sd"]))))
    for spec in ("1.strength=0.2,0.4", "2.switch_at=0.5"):
        assert main(["sweep", str(path), "--x", spec, "--out", str(tmp_path / "t")]) == EXIT_USAGE
        assert "so it has no" in capsys.readouterr().err
