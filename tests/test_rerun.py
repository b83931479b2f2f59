"""Re-running a chain from a later stage: the stored output of the stages before it is
reused (from memory, or from the cache's safetensors after a restart), the result is bit
for bit the whole chain's, and a changed earlier stage makes the stored output stale."""
from __future__ import annotations

import numpy as np

from core import events as ev
from core.models import ModelCache
from core.project import Project, Stage
from core.stage_store import StageStore
from tests.engine_helpers import of, pixels, run_job
from tests.test_flow_ensemble import pair  # noqa: F401  (a fixture)

PROMPT = "a red circle on a blue background"


def chain(first, second, size=32, seed=11) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=[first, second])


def run_from(p, tmp_path, from_stage, store, models=None, sub="again"):
    from core.engine import OutputPlan, run

    return list(run(p, OutputPlan.in_dir(tmp_path / sub, "job"), models=models, from_stage=from_stage, store=store))


def test_pixel_chain_rerun_from_stage_two_is_bit_identical_and_skips_stage_one(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = chain(Stage(sd, steps=6), Stage(sd, steps=8, handoff="pixel", strength=0.5, seed=99))
    store = StageStore(tmp_path / "stages")
    full = of(run_job(p, tmp_path), ev.StageFinished)  # the default store: the test's own home
    first = of(run_from(p, tmp_path, None, store, sub="first"), ev.StageFinished)
    assert np.array_equal(pixels(first[1].image), pixels(full[1].image))

    events = run_from(p, tmp_path, 1, store)
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [True, False]
    assert {s.index for s in of(events, ev.Step)} == {1}, "stage 1 runs no step"
    assert not [n for n in of(events, ev.Notice) if "stale" in n.message]
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))
    assert np.array_equal(pixels(done[1].input_image), pixels(full[0].image))
    assert len(of(events, ev.JobFinished)[0].paths) == 2


def test_a_changed_earlier_stage_is_stale_and_runs_again(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    store = StageStore(tmp_path / "stages")
    p = chain(Stage(sd, steps=6), Stage(sd, steps=8, handoff="pixel", strength=0.5))
    run_from(p, tmp_path, None, store, sub="first")
    p.stages[0].guidance = 2.0
    events = run_from(p, tmp_path, 1, store)
    notices = [n.message for n in of(events, ev.Notice)]
    assert any("stale" in m and "running from stage 1" in m for m in notices), notices
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [False, False]
    fresh = of(run_job(p, tmp_path), ev.StageFinished)
    assert np.array_equal(pixels(done[1].image), pixels(fresh[1].image))
    # Stage 2's own settings are not part of stage 1's key: a new strength reuses stage 1.
    p.stages[1].strength = 0.75
    again = of(run_from(p, tmp_path, 1, store, sub="third"), ev.StageFinished)
    assert again[0].reused


def test_latent_handoff_reuses_the_latents_from_the_cache_file(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = chain(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    models = ModelCache()
    full = of(run_from(p, tmp_path, None, StageStore(tmp_path / "stages"), models, sub="first"), ev.StageFinished)
    assert full[0].preview and full[1].handoff == "latent"
    assert list((tmp_path / "stages").glob("*.safetensors")), "stored in the cache folder"
    # A new store over the same folder: nothing in memory, as after a restart.
    done = of(run_from(p, tmp_path, 1, StageStore(tmp_path / "stages"), models), ev.StageFinished)
    assert done[0].reused and not done[1].reused
    assert not done[0].preview, "stored once decoded, after the first job's final image (core.deferred_decode)"
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))


def test_sdxl_ensemble_rerun_reuses_the_noisy_latents(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = chain(Stage(base_dir, steps=10), Stage(ref_dir, steps=10, handoff="ensemble", switch_at=0.7))
    store, models = StageStore(tmp_path / "stages"), ModelCache()
    full = of(run_from(p, tmp_path, None, store, models, sub="first"), ev.StageFinished)
    done = of(run_from(p, tmp_path, 1, store, models), ev.StageFinished)
    assert done[0].reused
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))
    p.stages[1].switch_at = 0.8  # the base stops elsewhere: its stored output does not fit
    moved = run_from(p, tmp_path, 1, store, models, sub="moved")
    assert not of(moved, ev.StageFinished)[0].reused and of(moved, ev.Notice)


def test_flow_ensemble_rerun_reuses_latents_and_the_base_schedule(pair, tmp_path):  # noqa: F811
    base, turbo = pair
    p = chain(Stage(str(base), steps=6, guidance=0.0),
              Stage(str(turbo), steps=6, guidance=0.0, handoff="ensemble", switch_at=0.5, seed=5))
    store = StageStore(tmp_path / "stages")
    full = of(run_from(p, tmp_path, None, store, sub="first"), ev.StageFinished)
    done = of(run_from(p, tmp_path, 1, StageStore(tmp_path / "stages")), ev.StageFinished)
    assert done[0].reused
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))


def test_cli_run_from_stage_shows_reused_and_rejects_a_bad_stage(tiny_models, tmp_path, capsys):
    from core import project_file
    from core.cli import EXIT_USAGE, main

    sd = str(tiny_models["sd"])
    p = chain(Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5))
    path = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(p))
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--from-stage", "2"]) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("stage 1"))
    assert "reused" in row
    a, b = (np.asarray(__import__("PIL.Image").Image.open(d / "cat-2-stage-2.png")) for d in (tmp_path / "a", tmp_path / "b"))
    assert np.array_equal(a, b)
    assert main(["run", str(path), "--from-stage", "5"]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1


def test_the_key_follows_the_model_files_and_earlier_stages_only(tiny_models, tmp_path):
    import shutil

    from core.models import Digests, parse_ref, resolve
    from core.stage_store import model_fingerprint

    copy = tmp_path / "sd-copy"
    shutil.copytree(tiny_models["sd"], copy)
    digests = Digests(tmp_path / "digests.json")
    same = model_fingerprint(resolve(parse_ref(str(copy))), digests)
    assert same == model_fingerprint(resolve(parse_ref(str(tiny_models["sd"]))), digests), "by content, not path"
    cfg = copy / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace("{", '{"steps_offset": 7, ', 1))
    assert model_fingerprint(resolve(parse_ref(str(copy))), digests) != same
