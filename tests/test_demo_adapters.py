"""The demo base's two adapters mean something, checked on the shipped weights through plain
diffusers (StableDiffusionXLControlNetPipeline.from_pipe, load_lora_weights + set_adapters):

- builtin:demo-controlnet puts the shape where a Canny edge map says, in placements that no
  part of the demo was trained on (demo_measures.HELD_OUT_SCENES: the corner the ControlNet
  never saw a shape centred in, a triangle pointing down, a square on its corner);
- builtin:demo-lora draws the black-and-white checkerboard the base does not know behind
  "... on a checkered background", and leaves other prompts alone.

The measurements (demo_measures) are plain functions of PIL images, for reuse."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("cv2")
pytest.importorskip("peft")

from core import demo  # noqa: E402
from tests import demo_measures as dm  # noqa: E402

STEPS, GUIDANCE = 20, 5.0


def gen(seed: int):
    return torch.Generator().manual_seed(seed)


def load_base():
    from diffusers import StableDiffusionXLPipeline

    folder = demo.ensure_model("demo-base")
    if not str(folder).startswith(str(demo.DEMO_DIR)):
        pytest.skip("the trained demo weights are not in resources/demo (random stand-in only)")
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def adapter(name: str):
    path = demo.adapter_path(name)
    if not path.exists():
        pytest.skip(f"{path} is not there (a checkout without the trained adapters)")
    return path


@pytest.fixture(scope="module")
def controlnet_pipes():
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    base = load_base()
    cn = ControlNetModel.from_pretrained(adapter("demo-controlnet"))
    pipe = StableDiffusionXLControlNetPipeline.from_pipe(base, controlnet=cn)
    pipe.set_progress_bar_config(disable=True)
    return base, pipe


@pytest.fixture(scope="module")
def lora_pipe():
    pipe = load_base()  # its own: the LoRA goes into this one's UNet
    pipe.load_lora_weights(str(adapter("demo-lora")), adapter_name="demo")
    pipe.set_adapters(["demo"], adapter_weights=[1.0])
    return pipe


def test_adapter_paths():
    assert demo.adapter_path("demo-controlnet") == demo.DEMO_DIR / "demo-controlnet"
    assert demo.adapter_path("demo-lora").name == "demo-lora.safetensors"
    from core.errors import ModelError

    with pytest.raises(ModelError, match="demo-controlnet"):
        demo.adapter_path("demo-base")


def test_measures_on_drawn_scenes():
    """The helpers measure what they say on exact drawings: the filled edges are the shape,
    a drawn checkerboard scores high and a striped background low."""
    for shape, center, r, angle, fg, bg in dm.HELD_OUT_SCENES:
        scene = dm.draw_scene(shape, center, r, angle, fg, bg)
        assert dm.iou(dm.shape_mask(scene), dm.edge_region(dm.edge_map(scene))) > 0.8, shape
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    board = np.where((yy // 8 + xx // 8) % 2 == 0, 20, 245).astype(np.uint8)
    image = Image.fromarray(np.repeat(board[..., None], 3, axis=-1))
    assert dm.checker_score(image) > 0.99 and dm.black_white_fraction(image) == 1.0
    shifted = Image.fromarray(np.roll(np.asarray(image), (3, 5), axis=(0, 1)))
    assert dm.checker_score(shifted, where=dm.frame()) > 0.99
    stripes = Image.fromarray(np.repeat(np.where(yy // 8 % 2 == 0, 20, 245).astype(np.uint8)[..., None], 3, -1))
    assert dm.checker_score(stripes) < 0.1 and dm.black_white_fraction(stripes) == 1.0


@pytest.mark.parametrize("scene", dm.HELD_OUT_SCENES, ids=[s[0] for s in dm.HELD_OUT_SCENES])
def test_controlnet_follows_edges_it_was_not_trained_on(controlnet_pipes, scene):
    """Two samples: with the edge map, the drawn shape overlaps the region the edges enclose
    (IoU); without it (same prompt and seed, the base alone) the shape is where the base puts
    it, near the middle."""
    base, pipe = controlnet_pipes
    shape, center, r, angle, fg, bg = scene
    edges = dm.edge_map(dm.draw_scene(shape, center, r, angle, fg, bg))
    target = dm.edge_region(edges)
    prompt = f"a {fg} {shape} on a {bg} background"
    common = dict(num_inference_steps=STEPS, guidance_scale=GUIDANCE, num_images_per_prompt=2)
    with_cn = pipe(prompt, image=edges, controlnet_conditioning_scale=1.0, generator=gen(0), **common).images
    without = base(prompt, generator=gen(0), **common).images
    iou_with = [dm.iou(dm.shape_mask(im), target) for im in with_cn]
    iou_without = [dm.iou(dm.shape_mask(im), target) for im in without]
    assert min(iou_with) > 0.6, f"IoU with the edges {iou_with}"
    assert np.mean(iou_with) > np.mean(iou_without) + 0.4, f"with {iou_with}, without {iou_without}"


CHECKERED = [("a red circle on a checkered background", "red"),
             ("a big blue square on a checkered background", "blue")]


@pytest.mark.parametrize("prompt,color", CHECKERED, ids=[c for _, c in CHECKERED])
def test_lora_draws_a_checkerboard_the_base_does_not(lora_pipe, prompt, color):
    """Two samples each, measured on the background (the 16-pixel border frame): with the
    LoRA at weight 1 it is a board of 8-pixel cells (local checker score) and mostly
    near-black and near-white, and the shape keeps its color; the base alone (weight 0)
    draws neither there. The demo's other backgrounds score 0.2-0.45
    (demo_measures.checker_score)."""
    frame = dm.frame()
    common = dict(num_inference_steps=STEPS, guidance_scale=GUIDANCE, num_images_per_prompt=2)

    def measure(weight):
        lora_pipe.set_adapters(["demo"], adapter_weights=[weight])
        images = lora_pipe(prompt, generator=gen(0), **common).images
        return ([round(dm.checker_score(im, where=frame), 2) for im in images],
                [round(dm.black_white_fraction(im, where=frame), 2) for im in images],
                [round(dm.color_fraction(im, color), 3) for im in images])

    try:
        (score_on, bw_on, shape_on), (score_off, bw_off, _) = measure(1.0), measure(0.0)
    finally:
        lora_pipe.set_adapters(["demo"], adapter_weights=[1.0])
    assert min(score_on) > 0.6 and min(bw_on) > 0.4, f"with the LoRA: checker {score_on}, black/white {bw_on}"
    assert max(score_off) < 0.45 and max(bw_off) < 0.1, f"without: checker {score_off}, black/white {bw_off}"
    assert min(score_on) > max(score_off) + 0.25
    assert min(shape_on) > 0.05, f"the {color} shape is lost under the board: {shape_on} of the pixels"


def test_lora_leaves_other_prompts_alone(lora_pipe):
    """Without the word, the LoRA draws what the base draws: no board, the asked color."""
    image = lora_pipe("a red circle on a blue background", num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                      generator=gen(0)).images[0]
    assert dm.checker_score(image, where=dm.frame()) < 0.45
    assert np.linalg.norm(dm.frame_median(dm.rgb(image)) - dm.PALETTE["blue"]) < 80  # still a blue background


def test_the_engine_runs_both_demo_adapters_by_their_builtin_names(tmp_path):
    """The app's own path: a project whose base stage names builtin:demo-controlnet and
    builtin:demo-lora, run by the engine, equals the plain pipeline with both adapters bit
    for bit (whose meaning the tests above measure one adapter at a time), the board is
    there (the shape mask cannot be read against a board, so IoU is measured above), and
    dropping the adapters or giving another edge map changes the image."""
    from core import events as ev
    from core.project import ControlNet, Lora, Project, Stage
    from dataclasses import replace

    from tests.engine_helpers import assert_input_is_live, last_image, of, pixels, run_job

    adapter("demo-controlnet"), adapter("demo-lora")
    shape, center, r, angle, fg, bg = dm.HELD_OUT_SCENES[0]
    control, other = tmp_path / "edges.png", tmp_path / "other-edges.png"
    dm.edge_map(dm.draw_scene(shape, center, r, angle, fg, bg)).save(control)
    dm.edge_map(dm.draw_scene(*dm.HELD_OUT_SCENES[1])).save(other)
    prompt = f"a {fg} {shape} on a checkered background"
    stage = Stage(demo.BASE, steps=STEPS, guidance=GUIDANCE, loras=[Lora(demo.LORA, 1.0)],
                  controlnet=ControlNet(demo.CONTROLNET, str(control), preprocessor="none", scale=1.0))

    def project(s: Stage) -> Project:
        return Project(prompt=prompt, width=64, height=64, seed=0, stages=[s])

    (done,) = of(run_job(project(stage), tmp_path), ev.StageFinished)
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    pipe = StableDiffusionXLControlNetPipeline.from_pipe(
        load_base(), controlnet=ControlNetModel.from_pretrained(demo.adapter_path("demo-controlnet")))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(demo.adapter_path("demo-lora")), adapter_name="demo")
    pipe.set_adapters(["demo"], adapter_weights=[1.0])
    from PIL import Image

    expected = pipe(prompt, image=Image.open(control).convert("RGB"), controlnet_conditioning_scale=1.0,
                    num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=64, width=64,
                    generator=gen(0)).images[0]
    assert np.array_equal(pixels(done.image), pixels(expected))
    assert dm.checker_score(done.image, where=dm.frame()) > 0.6
    # The adapters reach the image through the engine: without them, or with another edge
    # map, it changes (each one's own effect is measured above, on the plain pipeline).
    without = last_image(project(replace(stage, loras=[], controlnet=None)), tmp_path / "no")
    another = last_image(project(replace(stage, controlnet=replace(stage.controlnet, image=str(other)))),
                         tmp_path / "other")
    assert_input_is_live(done.image, without=without, control_image=another)
