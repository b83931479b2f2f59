"""The tiled refine (core.tiled_refine): a pixel refine stage with `refine_tile` refines
overlapping tiles and blends them with feathered seams, with the tiny SD pipeline."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core import events as ev
from core.engine import CancelToken, OutputPlan, execute
from core.errors import ProjectError
from core.models import ModelCache, parse_ref, resolve
from core.planning import plan
from core.project import Project, Stage, validate
from core.tiled_refine import tile_seed
from core.upscalers import refine_overlap, tile_starts
from tests.engine_helpers import generator, load, of, pixels, run_job

PROMPT = "a red circle on a blue background"
STRENGTH = 0.5
TILE = 80  # over a 128 px image: tiles at 0 and 48 on each side, a 2x2 grid sharing 32 px


def project(sd, tile: int, size: int = 64, handoff: str = "pixel", **refine) -> Project:
    second = Stage(sd, steps=4, handoff=handoff, strength=STRENGTH, upscale=2.0, refine_tile=tile, **refine)
    return Project(prompt=PROMPT, width=size, height=size, seed=11, stages=[Stage(sd, steps=4), second])


def test_an_image_that_fits_one_tile_is_the_untiled_refine_bit_for_bit(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    models = ModelCache()
    untiled = of(run_job(project(sd, 0, size=32), tmp_path / "a", models), ev.StageFinished)[1]
    events = run_job(project(sd, 64, size=32), tmp_path / "b", models)
    tiled = of(events, ev.StageFinished)[1]
    assert tiled.image.size == (64, 64)
    assert np.array_equal(pixels(tiled.image), pixels(untiled.image))
    steps = [e for e in of(events, ev.Step) if e.index == 1]
    assert (steps[-1].step, steps[-1].total) == (2, 2)  # one tile: the stage's own steps


def plain_tile(sd_pipe, crop: Image.Image, seed: int) -> np.ndarray:
    from diffusers import StableDiffusionImg2ImgPipeline

    refine = StableDiffusionImg2ImgPipeline.from_pipe(sd_pipe)
    return pixels(refine(PROMPT, image=crop, strength=STRENGTH, num_inference_steps=4, guidance_scale=5.0,
                         generator=generator(seed)).images[0])


def steepest_switch(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """How abruptly `image` goes from tile `a` to tile `b` across their shared columns: per
    column, the share t = |image - a| / (|image - a| + |image - b|) (0: all a, 1: all b),
    and the largest change of t between neighbouring columns. A seam is a jump of t. Left of
    the shared columns the image is `a` alone (t = 0), right of them `b` alone (t = 1)."""
    da = np.abs(image - a).mean(axis=(0, 2))
    db = np.abs(image - b).mean(axis=(0, 2))
    t = np.concatenate([[0.0], da / np.maximum(da + db, 1e-9), [1.0]])
    return float(np.abs(np.diff(t)).max())


def test_a_2x2_tiling_is_seeded_per_tile_and_blends_its_seams(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    models = ModelCache()
    events = run_job(project(sd, TILE), tmp_path / "a", models)
    first, tiled = of(events, ev.StageFinished)
    assert tiled.image.size == (128, 128)
    starts = tile_starts(128, TILE, refine_overlap(TILE))
    assert starts == [0, 48]
    # Per-tile progress through the stage's Step events: 4 tiles of 2 steps.
    steps = [(e.step, e.total) for e in of(events, ev.Step) if e.index == 1]
    assert steps == [(i, 8) for i in range(1, 9)]
    got = pixels(tiled.image)
    # Where one tile alone has weight, the image is that tile's own img2img with seed 11 + k.
    sd_pipe = load(tiny_models["sd"])
    resized = first.image.resize((128, 128), Image.LANCZOS)
    tiles = {}
    for k, (y, x) in enumerate((y, x) for y in starts for x in starts):
        tiles[(y, x)] = plain_tile(sd_pipe, resized.crop((x, y, x + TILE, y + TILE)), tile_seed(11, k))
    assert np.array_equal(got[:48, :48], tiles[(0, 0)][:48, :48])
    assert np.array_equal(got[80:, 80:], tiles[(48, 48)][32:, 32:])
    assert np.array_equal(got[:48, 80:], tiles[(0, 48)][:48, 32:])
    assert tile_seed(11, 3) == 14 and tile_seed(2**64 - 1, 1) == 0  # wraps within the 64-bit seeds
    # The seams: across the 32 px two tiles share, the image goes over from one to the
    # other over many pixels (at most a quarter of the way per pixel, the ramp rising over
    # 16 px), where pasting one tile over the other switches all the way at one pixel.
    pasted = np.zeros_like(got)
    for (y, x), tile in tiles.items():
        pasted[y:y + TILE, x:x + TILE] = tile
    left, right, top, bottom = tiles[(0, 0)], tiles[(0, 48)], tiles[(0, 0)], tiles[(48, 0)]
    for image, bound in ((got, 0.25), (pasted, None)):
        across = steepest_switch(image[:48, 48:80], left[:48, 48:80], right[:48, :32])
        down = steepest_switch(image[48:80, :48].transpose(1, 0, 2), top[48:80, :48].transpose(1, 0, 2),
                               bottom[:32, :48].transpose(1, 0, 2))
        if bound is None:
            assert min(across, down) > 0.9  # the measure sees a pasted seam
        else:
            assert max(across, down) <= bound, f"a seam: the image switches tiles by {max(across, down):.2f} in one pixel"
    # Stable: a second run makes the same image.
    again = of(run_job(project(sd, TILE), tmp_path / "b", models), ev.StageFinished)[1]
    assert np.array_equal(pixels(again.image), got)


def test_cancel_between_tiles_stops_the_stage(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    cancel = CancelToken()
    events = []

    def emit(e):  # on the job's own thread: the cancel lands exactly after tile 1's last step
        events.append(e)
        if isinstance(e, ev.Step) and e.index == 1 and e.step == 2:
            cancel.cancel()

    execute(project(sd, TILE), emit, out=OutputPlan.in_dir(tmp_path / "out", "job"), cancel=cancel)
    assert isinstance(events[-1], ev.JobCancelled) and events[-1].at_stage == 1
    assert [e.step for e in of(events, ev.Step) if e.index == 1] == [1, 2]
    assert [f.index for f in of(events, ev.StageFinished)] == [0]


def plans(p: Project):
    models = ModelCache()
    resolved = [resolve(parse_ref(s.model)) for _, s in p.enabled_stages()]
    return plan(p, resolved, lambda r: r.vae_fingerprint(models.digests))


def test_latent_and_ensemble_handoffs_around_a_tiled_stage_run_as_pixels(tiny_models):
    sd = str(tiny_models["sd"])
    latent = project(sd, TILE, handoff="latent")
    latent.stages[1].upscale = 1.0
    ran = plans(latent)[1].ran()
    assert (ran.asked, ran.ran, ran.why) == ("latent", "pixel", "a tiled refine refines pixels: latent handed over as pixels")
    untiled = project(sd, 0, handoff="latent")
    untiled.stages[1].upscale = 1.0
    assert plans(untiled)[1].handoff == "latent"  # the same chain untiled hands over latents
    after = Project(prompt=PROMPT, width=64, height=64, seed=1, stages=[
        Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", refine_tile=64),
        Stage(sd, steps=4, handoff="latent")])
    third = plans(after)[2]
    assert third.handoff == "pixel" and "a tiled refine hands over an image" in third.note
    sdxl, refiner = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    ens = Project(prompt=PROMPT, width=64, height=64, seed=1, stages=[
        Stage(sdxl, steps=10), Stage(refiner, steps=10, handoff="ensemble", switch_at=0.8, refine_tile=64)])
    base, fine = plans(ens)
    assert (fine.handoff, fine.strength, base.stop_at) == ("pixel", 0.2, None)
    assert "ensemble handed over as pixels at strength 0.2" in fine.note


def test_refine_tile_is_validated():
    def problems(**kw):
        p = Project(prompt=PROMPT, width=64, height=64, stages=[Stage("a"), Stage("b", handoff="pixel", **kw)])
        with pytest.raises(ProjectError) as info:
            validate(p)
        return info.value.problems

    assert any("refine tile 32 px is outside 64..8192" in m for m in problems(refine_tile=32))
    assert any("refine tile 100 px is not a multiple of 8" in m for m in problems(refine_tile=100))
    first = Project(prompt=PROMPT, width=64, height=64, stages=[Stage("a", refine_tile=64)])
    with pytest.raises(ProjectError) as info:
        validate(first)
    assert any("a tiled refine refines an image; this stage generates" in m for m in info.value.problems)
    validate(Project(prompt=PROMPT, width=64, height=64, stages=[Stage("a"), Stage("b", refine_tile=64)]))


def test_a_tiled_stage_is_bounded_by_its_tile_area_not_the_whole_image():
    def sized(tile: int) -> Project:
        return Project(prompt=PROMPT, width=64, height=64, stages=[
            Stage("a"), Stage("b", handoff="pixel", upscale=4.0, refine_tile=tile)])

    with pytest.raises(ProjectError) as info:
        validate(sized(0), stage_natives={0: 16, 1: 16})
    assert any("more than 64 times the area its model was made for (16x16)" in m for m in info.value.problems)
    validate(sized(64), stage_natives={0: 16, 1: 16})  # 256x256 in 64 px tiles: each call at 16x the area


def test_cli_refines_in_tiles(tiny_models, tmp_path, capsys):
    from core.cli import EXIT_USAGE, main
    from core.metadata import read_recipe

    sd, out = str(tiny_models["sd"]), tmp_path / "tiled.png"
    common = ["generate", PROMPT, "--model", sd, "--steps", "2", "--size", "32x32", "--out", str(out)]
    assert main(common + ["--refiner", sd, "--refiner-strength", "0.5", "--upscale", "2",
                          "--refine-tile", "64"]) == 0, capsys.readouterr().err
    stages = read_recipe(out).project.stages
    assert (stages[0].refine_tile, stages[1].refine_tile) == (0, 64)
    assert main(common + ["--refine-tile", "64"]) == EXIT_USAGE
    assert "--refine-tile tiles a refine: it needs --refiner or --init-image" in capsys.readouterr().err
