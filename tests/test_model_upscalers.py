"""Model upscalers (core.upscalers, core.upscale_stage): tiny random-weight ESRGAN (RRDBNet)
and Real-ESRGAN Compact (SRVGGNetCompact) files, saved as plain .pth state dicts and as
.safetensors, run by Handoff and compared with spandrel's own output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import events as ev
from core.engine import OutputPlan, run
from core.errors import ModelError, ProjectError
from core.metadata import read_recipe
from core.models import ModelCache, parse_ref, resolve
from core.project import Project, Stage, validate
from core.upscalers import UpscalerCache, import_spandrel, tile_starts, upscale_image
from tests.engine_helpers import of, pixels, run_job

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle on a blue background"
# Tiled against untiled, in 0..255 levels, measured on the tiny random models below at
# tile 64 (overlap 16) over a 170x150 image: max 1, mean < 0.0001 for both (see the README).
TILED_MAX, TILED_MEAN = 2, 0.01


def _save(net, dest: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    if dest.suffix == ".pth":
        torch.save(sd, dest)
    else:
        save_file(sd, str(dest))
    return dest


def build_esrgan(dest: Path, scale: int = 4, seed: int = 0) -> Path:
    import torch

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return _save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale), dest)


def build_compact(dest: Path, scale: int = 2, seed: int = 0) -> Path:
    import torch

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale)
    with torch.no_grad():  # PReLU starts at 0.25 everywhere: make every parameter random
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return _save(net, dest)


class NotAStateDict:
    """A pickled object: torch.load(weights_only=True) refuses to build it."""

    def __init__(self):
        self.weights = {"conv_first.weight": 1}


@pytest.fixture(scope="module")
def upscaler_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upscalers")
    return {
        "esrgan4.pth": build_esrgan(root / "esrgan4.pth", 4),
        "esrgan4.safetensors": build_esrgan(root / "esrgan4.safetensors", 4),
        "compact2.pth": build_compact(root / "compact2.pth", 2),
        "compact2.safetensors": build_compact(root / "compact2.safetensors", 2),
        "compact4.pth": build_compact(root / "compact4.pth", 4, seed=3),
    }


def image(width=40, height=36, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def spandrel_own(path: Path, img: Image.Image) -> Image.Image:
    """spandrel's loader on the file, its model on NCHW 0..1, rounded to uint8."""
    import torch

    model = import_spandrel().ModelLoader().load_from_file(str(path)).eval()
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    out = model(x)
    array = (out[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


@pytest.mark.parametrize("name, scale", [("esrgan4.pth", 4), ("esrgan4.safetensors", 4), ("compact2.pth", 2),
                                         ("compact2.safetensors", 2), ("compact4.pth", 4)])
def test_one_tile_equals_spandrels_own_output_bit_for_bit(upscaler_files, name, scale):
    path = upscaler_files[name]
    img = image()
    model = UpscalerCache().get(path, "cpu")
    tiles = []
    ours = upscale_image(model, img, (40 * scale, 36 * scale), "cpu", tile=64, on_tile=lambda i, n: tiles.append(n))
    assert tiles == [1]
    assert ours.size == (40 * scale, 36 * scale)
    assert np.array_equal(pixels(ours), pixels(spandrel_own(path, img)))


@pytest.mark.parametrize("name, scale", [("compact2.pth", 2), ("esrgan4.pth", 4)])
def test_tiles_blend_within_the_stated_tolerance(upscaler_files, name, scale):
    path = upscaler_files[name]
    img = image(170, 150, seed=4)
    model = UpscalerCache().get(path, "cpu")
    counts = []
    tiled = upscale_image(model, img, (170 * scale, 150 * scale), "cpu", tile=64,
                          on_tile=lambda i, n: counts.append(n))
    whole = spandrel_own(path, img)
    assert counts[-1] == len(tile_starts(150, 64, 16)) * len(tile_starts(170, 64, 16)) > 1
    diff = np.abs(pixels(tiled) - pixels(whole))
    print(f"tiled vs whole (levels): max {diff.max()}, mean {diff.mean():.4f}")
    assert diff.max() <= TILED_MAX and diff.mean() <= TILED_MEAN


def test_tile_starts_cover_the_side_with_whole_tiles():
    for length, tile, overlap in [(150, 64, 16), (64, 64, 16), (65, 64, 16), (1000, 256, 32)]:
        starts = tile_starts(length, tile, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            assert 0 <= s and s + min(tile, length) <= length
            covered[s:s + tile] = True
        assert covered.all()


def test_a_pickled_pth_is_refused_with_one_line(tmp_path):
    import torch

    bad = tmp_path / "sneaky.pth"
    torch.save(NotAStateDict(), bad)
    with pytest.raises(ModelError) as info:
        resolve(parse_ref(str(bad)))
    message = str(info.value)
    assert message.startswith("sneaky.pth holds pickled Python objects") and "weights_only=True" in message
    assert "\n" not in message


def test_an_unknown_architecture_is_refused_by_name(tmp_path):
    import torch
    from safetensors.torch import save_file

    torch.save({"mystery.weight": torch.zeros(3, 3)}, tmp_path / "mystery.pth")
    save_file({"mystery.weight": torch.zeros(3, 3)}, str(tmp_path / "mystery.safetensors"))
    for name in ("mystery.pth", "mystery.safetensors"):
        with pytest.raises(ModelError) as info:
            resolve(parse_ref(str(tmp_path / name)))
        assert str(info.value).startswith(f"{name}: an unknown architecture") and "\n" not in str(info.value)


def test_refusals_come_before_any_stage_runs(tiny_models, upscaler_files, tmp_path):
    import torch

    bad = tmp_path / "sneaky.pth"
    torch.save(NotAStateDict(), bad)
    sd = str(tiny_models["sd"])
    for stages in ([Stage(sd, steps=2), Stage(str(bad), upscale=2.0)],
                   [Stage(sd, steps=2), Stage(sd, steps=2, handoff="pixel", strength=0.5, upscale=2.0, upscaler=str(bad))]):
        events = run_job(Project(prompt=PROMPT, width=32, height=32, stages=stages), tmp_path, on_event=lambda e: None)
        assert not of(events, ev.StageStarted)
        assert "sneaky.pth holds pickled Python objects" in of(events, ev.JobFailed)[0].message


def test_an_upscaler_cannot_start_a_chain(upscaler_files, tmp_path):
    p = Project(prompt=PROMPT, width=32, height=32, stages=[Stage(str(upscaler_files["compact2.pth"]))])
    failed = of(run_job(p, tmp_path, on_event=lambda e: None), ev.JobFailed)
    assert "an upscaler resizes an image, it cannot start a chain" in failed[0].message


def test_upscaler_fields_are_validated():
    p = Project(prompt="x", width=32, height=32, stages=[
        Stage("a"), Stage("b", upscale=2.0, upscaler="/no/such/4x.pth", tile=8)])
    with pytest.raises(ProjectError) as info:
        validate(p)
    assert any("upscaler file not found: /no/such/4x.pth" in m for m in info.value.problems)
    assert any("tile 8 px is outside 64..8192" in m for m in info.value.problems)


def test_chain_generate_refine_with_upscaler_then_upscale_stage(tiny_models, upscaler_files, tmp_path):
    """Tiny SD generates 32 px; an SD refine upscales ×2 with a 4× model (128 px, then
    Lanczos to 64); an upscale stage with a 4× ESRGAN at ×1.5 makes 96 px exactly."""
    sd = str(tiny_models["sd"])
    compact4, esrgan4 = upscaler_files["compact4.pth"], upscaler_files["esrgan4.safetensors"]
    p = Project(prompt=PROMPT, width=32, height=32, seed=5, stages=[
        Stage(sd, steps=3),
        Stage(sd, steps=4, handoff="pixel", strength=0.5, upscale=2.0, upscaler=str(compact4)),
        Stage(str(esrgan4), upscale=1.5, name="esrgan")])
    models = ModelCache()
    events = run_job(p, tmp_path, models=models)
    done = of(events, ev.StageFinished)
    assert [d.handoff for d in done] == ["generate", "pixel", "upscale"]
    assert [d.image.size for d in done] == [(32, 32), (64, 64), (96, 96)]
    # The refine took the model-upscaled image (4x, then Lanczos down to its 64 px).
    want_in = spandrel_own(compact4, done[0].image).resize((64, 64), Image.LANCZOS)
    assert np.array_equal(pixels(done[1].input_image), pixels(want_in))
    # The upscale stage is the model's own output, Lanczos'd from 4x to 1.5x.
    want_out = spandrel_own(esrgan4, done[1].image).resize((96, 96), Image.LANCZOS)
    assert np.array_equal(pixels(done[2].image), pixels(want_out))
    assert done[2].input_image is done[1].image and done[2].total_seconds > 0 and done[2].peak_memory > 0
    final = of(events, ev.JobFinished)[0].paths[-1]
    assert Image.open(final).size == (96, 96)
    # The PNG's recipe carries the new fields, so the image restores its chain.
    restored = read_recipe(final).project
    assert restored.stages[1].upscaler == str(compact4) and restored.stages[2].model == str(esrgan4)
    # Loaded once, kept for the next job; a re-run from the upscale stage reuses the
    # stored refine and gives the same image.
    assert len(models.upscalers.loaded) == 2
    again = of(list(run(p, OutputPlan.in_dir(tmp_path / "again", "job"), models=models, from_stage=2)),
               ev.StageFinished)
    assert [d.reused for d in again] == [True, True, False] and len(models.upscalers.loaded) == 2
    assert np.array_equal(pixels(again[2].image), pixels(done[2].image))


def test_stored_output_key_covers_the_upscalers_contents(tiny_models, upscaler_files, tmp_path):
    from core.engine import _prefix_keys
    from core.planning import plan

    sd = str(tiny_models["sd"])
    up = tmp_path / "swap.pth"
    up.write_bytes(upscaler_files["compact2.pth"].read_bytes())
    p = Project(prompt=PROMPT, width=32, height=32, stages=[
        Stage(sd, steps=2), Stage(sd, steps=2, handoff="pixel", strength=0.5, upscale=2.0, upscaler=str(up))])
    models = ModelCache()

    def key() -> str:
        resolved = [resolve(parse_ref(s.model)) for s in p.stages]
        return _prefix_keys(p, plan(p, resolved, lambda r: None), "cpu", models)(1)

    before = key()
    build_compact(up, 2, seed=9)  # same path, other contents
    assert key() != before


def test_cli_generate_with_upscale_and_upscaler(tiny_models, upscaler_files, tmp_path, capsys):
    from core.cli import EXIT_USAGE, main

    sd, up, out = str(tiny_models["sd"]), str(upscaler_files["compact2.pth"]), tmp_path / "hires.png"
    common = ["generate", PROMPT, "--model", sd, "--refiner", sd, "--steps", "2", "--refiner-strength", "0.5",
              "--size", "32x32", "--out", str(out)]
    assert main(common + ["--upscale", "2", "--upscaler", up]) == 0, capsys.readouterr().err
    assert Image.open(out).size == (64, 64)
    stages = read_recipe(out).project.stages
    assert stages[1].upscale == 2.0 and stages[1].upscaler == up and stages[0].upscaler is None
    assert main(common + ["--upscaler", up]) == EXIT_USAGE
    assert "--upscaler does the --upscale resize: give --upscale too" in capsys.readouterr().err


def test_a1111_text_names_the_hires_upscaler():
    from core.interop import a1111

    p = Project(prompt=PROMPT, width=32, height=32, stages=[
        Stage("a/b", steps=2), Stage("a/b", steps=2, handoff="pixel", upscale=2.0, upscaler="/m/4x-UltraSharp.pth")])
    assert "Hires upscaler: 4x-UltraSharp" in a1111.write(p)


def test_library_lists_upscalers_from_comfyui_and_a1111_folders(upscaler_files, tmp_path):
    from core import model_library as ml

    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "upscale_models").mkdir()
    (comfy / "upscale_models" / "4x-tiny.pth").write_bytes(upscaler_files["esrgan4.pth"].read_bytes())
    found = [e for e in ml.scan_comfyui(comfy) if e.kind == ml.UPSCALER_KIND]
    assert [(e.name, e.source) for e in found] == [("4x-tiny", "comfyui")] and found[0].usable
    webui = tmp_path / "webui" / "models"
    (webui / "Stable-diffusion").mkdir(parents=True)
    for sub in ("ESRGAN", "RealESRGAN", "SwinIR", "DAT"):
        (webui / sub).mkdir()
        (webui / sub / f"{sub}-x2.safetensors").write_bytes(upscaler_files["compact2.safetensors"].read_bytes())
    names = sorted(e.name for e in ml.upscalers(ml.scan_a1111(webui.parent)))
    assert names == ["DAT-x2", "ESRGAN-x2", "RealESRGAN-x2", "SwinIR-x2"]


def test_spandrel_imports_beside_a_torchvision_that_fails_to_load(upscaler_files, tmp_path):
    """A torchvision whose compiled ops do not match torch (PyPI's CUDA build beside a CPU
    torch) raises on import: Handoff still imports spandrel, runs an upscaler, and leaves
    no stand-in torchvision behind."""
    broken = tmp_path / "site" / "torchvision"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    script = f"""
import sys
from core.errors import ModelError
from core.upscalers import UpscalerCache, import_spandrel, upscale_image
from PIL import Image
spandrel = import_spandrel()
# no stand-in left behind: torchvision reads as absent (core.torchvision_guard)
assert sys.modules["torchvision"] is None and "torchvision.transforms.functional" not in sys.modules
m = UpscalerCache().get({str(upscaler_files['compact2.pth'])!r}, "cpu")
assert upscale_image(m, Image.new("RGB", (8, 8)), (16, 16), "cpu", 64).size == (16, 16)
from spandrel.architectures.RestoreFormer import tv_normalize
try:
    tv_normalize(None, [0.5], [0.5])
except ModelError as exc:
    print("refused:", exc)
try:
    import torchvision
except ImportError as exc:
    print("torchvision reads as absent:", exc)
"""
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "refused: this spandrel architecture needs torchvision" in out.stdout
    assert "torchvision reads as absent" in out.stdout


BROKEN_TORCHVISION_IMPORTS = """
import sys
{first}
from transformers.utils import is_torchvision_available
from transformers import CLIPImageProcessor
from diffusers import StableDiffusionPipeline
print("imported; torchvision available:", is_torchvision_available())
"""


def test_a_torchvision_built_for_another_torch_reads_as_absent_to_transformers_and_diffusers(tmp_path):
    """pip installs torchvision with spandrel; PyPI's is built for the CUDA torch, and beside a
    CPU torch it raises on import. Imported after core (core.torchvision_guard), transformers
    and diffusers see no torchvision and their pipelines import; without core they fail."""
    broken = tmp_path / "site" / "torchvision"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")

    def run(first: str):
        return subprocess.run([sys.executable, "-c", BROKEN_TORCHVISION_IMPORTS.format(first=first)], cwd=tmp_path,
                              env=env, capture_output=True, text=True)

    guarded = run("import core")
    assert guarded.returncode == 0, guarded.stderr
    assert "imported; torchvision available: False" in guarded.stdout
    unguarded = run("")
    assert unguarded.returncode != 0 and "CLIPImageProcessor" in unguarded.stderr, "the test's torchvision must break"
