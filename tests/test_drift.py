"""The drift meter: SSIM and colour shift between a refine stage's input and output."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from core import drift
from core import events as ev
from core.interop.image_text import read_texts
from core.metadata import RECIPE_KEY
from core.project import Project, Stage
from tests.engine_helpers import of, run_job


def noise_image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def test_identical_images_have_ssim_one_and_no_colour_shift():
    im = noise_image(1)
    d = drift.measure(im, im)
    assert d.ssim == 1.0 and d.delta_e == 0.0 and not d.warning


def test_ssim_matches_the_gaussian_reference_on_a_known_case():
    # A constant offset leaves structure alone: SSIM depends only on the luminance term.
    x = np.full((16, 16), 100.0)
    y = x + 10
    c1 = (0.01 * 255) ** 2
    assert abs(drift.ssim(x, y) - (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)) < 1e-12
    # Unrelated noise has almost no structure in common.
    a, b = (np.asarray(noise_image(s).convert("L"), dtype=float) for s in (1, 2))
    assert drift.ssim(a, b) < 0.1


def test_lab_and_delta_e_of_known_colours():
    white = np.array([[[255.0, 255.0, 255.0]]])
    assert np.allclose(drift.to_lab(white), [[[100.0, 0.0, 0.0]]], atol=0.01)
    red = np.array([[[255.0, 0.0, 0.0]]])
    assert np.allclose(drift.to_lab(red), [[[53.24, 80.09, 67.20]]], atol=0.05)
    assert abs(drift.delta_e(white, red) - np.linalg.norm([46.76, 80.09, 67.20])) < 0.1


def test_the_warning_band_follows_strength_and_thresholds():
    im = noise_image(3)
    assert "strength 0.6 > 0.5" in drift.measure(im, im, strength=0.6).warning
    assert drift.measure(im, im, strength=0.5).warning == ""
    far = drift.measure(im, noise_image(4), strength=0.3)
    assert "structure changed" in far.warning


def test_refine_stages_report_drift_in_events_png_and_table(tiny_models, tmp_path):
    from core.cli import timing_table

    sd = str(tiny_models["sd"])
    p = Project(prompt="a red circle", width=32, height=32, seed=3,
                stages=[Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.75)])
    events = run_job(p, tmp_path)
    done = of(events, ev.StageFinished)
    assert done[0].drift is None
    d = done[1].drift
    expected = drift.measure(done[0].image, done[1].image, 0.75)
    assert d == expected and 0 < d.ssim <= 1
    assert done[1].ssim == d.ssim and done[1].color_shift == d.delta_e
    assert "strength 0.75" in d.warning
    recipe = json.loads(read_texts(done[1].path).chunks[RECIPE_KEY])
    assert recipe["drift"]["ssim"] == round(d.ssim, 4) and "warning" in recipe["drift"]
    assert "drift" not in json.loads(read_texts(done[0].path).chunks[RECIPE_KEY])
    table = timing_table(done, 1.0)
    assert f"SSIM {d.ssim:.3f}" in table and "strength 0.75" in table
