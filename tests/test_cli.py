"""The command line: outputs, the timing table, exit codes and one-line reasons."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from core import project_file
from core.cli import EXIT_FAILED, EXIT_USAGE, main
from core.project import Project, Stage
from tests.engine_helpers import generator, load, pixels

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_writes_every_stage_and_prints_timings(tiny_models, tmp_path, capsys):
    out = tmp_path / "final.png"
    code, stdout, stderr = cli(capsys, "generate", "a red circle", "--model", tiny_models["sdxl"], "--refiner",
                               tiny_models["sdxl_refiner"], "--switch-at", "0.8", "--steps", "10", "--seed", "3",
                               "--size", "32x32", "--out", out)
    assert code == 0, stderr
    assert out.is_file() and (tmp_path / "final-1-base.png").is_file()
    header = stdout.splitlines()[0].split()
    assert header[:7] == ["stage", "handoff", "steps", "load", "s", "denoise", "s"]
    assert "ensemble" in stdout and "refiner" in stderr


def test_init_image_on_a_local_sdxl_folder_matches_plain_diffusers(tiny_models, tmp_path, capsys):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    init = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)).save(init)
    out = tmp_path / "refined.png"
    code, _, stderr = cli(capsys, "generate", "a red circle", "--model", tiny_models["sdxl"], "--init-image", init,
                          "--strength", "0.3", "--steps", "10", "--seed", "42", "--out", out)
    assert code == 0, stderr
    with Image.open(out) as im:
        assert im.size == (32, 48), "no --size: the output takes the init image's size"
        ours = pixels(im)
    pipe = StableDiffusionXLImg2ImgPipeline.from_pipe(load(tiny_models["sdxl"]))
    with Image.open(init) as im:
        plain = pipe("a red circle", image=im.convert("RGB"), strength=0.3, num_inference_steps=10, guidance_scale=5.0,
                     generator=generator(42)).images[0]
    assert np.array_equal(ours, pixels(plain))


def test_run_a_saved_project(tiny_models, tmp_path, capsys):
    p = Project(prompt="a cat", width=32, height=32, seed=1,
                stages=[Stage(str(tiny_models["sd"]), steps=4), Stage(str(tiny_models["sd"]), steps=4, handoff="pixel", strength=0.5)])
    path = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(p))
    code, stdout, stderr = cli(capsys, "run", path, "--out", tmp_path / "outs")
    assert code == 0, stderr
    assert sorted(f.name for f in (tmp_path / "outs").iterdir()) == ["cat-1-stage-1.png", "cat-2-stage-2.png"]


def test_bad_input_exits_nonzero_with_one_line(tiny_models, tmp_path, capsys, monkeypatch):
    sd = tiny_models["sd"]
    img = tmp_path / "i.png"
    Image.new("RGB", (32, 32)).save(img)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    cases = [
        (["--model", sd, "--init-image", img, "--strength", "1.5"], EXIT_USAGE, "strength 1.5 is outside (0, 1]"),
        (["--model", sd, "--init-image", tmp_path / "broken.png"], EXIT_USAGE, "cannot be read as an image"),
        (["--model", sd, "--init-image", tmp_path / "absent.png"], EXIT_USAGE, "init image not found"),
        (["--model", tmp_path / "no-such-model", "--size", "32x32"], EXIT_USAGE,
         f"stage 1: model '{tmp_path / 'no-such-model'}' is not a file or folder here"),
        (["--model", sd, "--size", "33x32"], EXIT_USAGE, "not a multiple of 8"),
        (["--model", sd, "--size", "big"], EXIT_USAGE, "not WIDTHxHEIGHT"),
    ]
    for extra, expected, reason in cases:
        code, _, stderr = cli(capsys, "generate", "a cat", *extra, "--out", tmp_path / "o.png")
        last = [line for line in stderr.splitlines() if line.startswith("handoff:")]
        assert code == expected, (extra, stderr)
        assert len(last) == 1 and reason in last[0], (extra, stderr)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, stderr = cli(capsys, "generate", "a cat", "--model", "someone/uncached-model", "--size", "32x32",
                          "--out", tmp_path / "o.png")
    # Refused before torch loads, with the window's line.
    assert code == EXIT_USAGE and stderr.strip() == ("handoff: stage 1: someone/uncached-model is not in the local "
                                                     "Hugging Face cache and offline mode is on (HF_HUB_OFFLINE=1): go "
                                                     "online once to download it, or choose a local folder")


def test_a_recipe_whose_models_are_missing_is_refused_with_the_names_its_tool_wrote(tmp_path, capsys):
    from tests.interop_helpers import png_with, sample

    png = png_with(tmp_path / "ComfyUI_00001_.png", {"prompt": sample("comfyui/default_graph_sdxl1_0.json")})
    code, _, stderr = cli(capsys, "run", png, "--out", tmp_path / "outs")
    last = stderr.strip().splitlines()[-1]
    assert code == EXIT_USAGE and not list(tmp_path.glob("outs/*.png"))
    assert last.startswith("handoff: stage 1: model 'sd_xl_base_1.0.safetensors' (as ComfyUI named it) is not a file "
                           "or folder here, in your model library or in the Hugging Face cache: add the folder that "
                           "holds sd_xl_base_1.0.safetensors with Models > Model Library, or set the stage's model to "
                           "stabilityai/stable-diffusion-xl-base-1.0 to download it; stage 2: model "
                           "'sd_xl_refiner_1.0.safetensors' (as ComfyUI named it)"), last


def test_entry_point_exit_code():
    result = subprocess.run([sys.executable, "main.py", "generate", "x", "--model", "builtin:nothing", "--size", "64x64",
                             "--out", "/tmp/never.png", "--strength", "0.5", "--switch-at", "0.5"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_USAGE and result.stderr.strip() == "handoff: --switch-at needs --refiner"


def test_adapter_flags_put_loras_a_controlnet_and_ip_adapters_on_their_stages(tiny_models, tmp_path, capsys):
    from core import project_file
    from tests.tiny_adapters import build_controlnet, lora_tensors, save_lora

    sd = tiny_models["sd"]
    lora = save_lora(lora_tensors(load(sd), seed=1), tmp_path / "style.safetensors")
    cn = build_controlnet(sd, tmp_path / "cn")
    control = tmp_path / "control.png"
    Image.new("RGB", (32, 32), "white").save(control)
    out = tmp_path / "out.png"
    code, _, stderr = cli(capsys, "generate", "a red circle", "--model", sd, "--refiner", sd, "--steps", "4",
                          "--refiner-strength", "0.5", "--handoff", "pixel", "--size", "32x32", "--seed", "1",
                          "--lora", f"{lora}:0.6", "--refiner-lora", lora, "--controlnet", cn, "--control-image", control,
                          "--canny", "50,150", "--control-scale", "1.2", "--out", out)
    assert code == 0, stderr
    stages = project_file.load(out).project.stages
    assert [(x.ref, x.weight) for x in stages[0].loras] == [(str(lora), 0.6)]
    assert [(x.ref, x.weight) for x in stages[1].loras] == [(str(lora), 1.0)]
    c = stages[0].controlnet
    assert (c.model, c.image, c.preprocessor, c.low, c.high, c.scale) == (str(cn), str(control), "canny", 50, 150, 1.2)


def test_bad_adapter_flags_exit_2_with_one_line(tiny_models, tmp_path, capsys):
    sd = tiny_models["sd"]
    out = tmp_path / "o.png"
    base = ["generate", "x", "--model", sd, "--size", "32x32", "--steps", "2", "--out", out]
    cases = [
        (["--controlnet", "some/cn"], "--controlnet and --control-image go together"),
        (["--controlnet", "some/cn", "--control-image", tmp_path / "gone.png"], "control image not found"),
        (["--controlnet", "a/b", "--control-image", out, "--canny", "ten"], "--canny 'ten' is not two numbers"),
        (["--ip-adapter", "x.safetensors"], "--ip-adapter and --ip-image go together"),
        (["--refiner-lora", "x.safetensors"], "--refiner-lora needs --refiner"),
        (["--lora", "x.safetensors:9"], "LoRA weight 9 is outside"),
    ]
    for extra, expected in cases:
        code, _, err = cli(capsys, *base, *extra)
        assert code == EXIT_USAGE and expected in err and err.count("\n") == 1, (extra, err)


def test_a_sweep_checks_its_models_here_unless_ray_nodes_run_it(tmp_path, capsys):
    import socket

    p = Project(prompt="a cat", width=64, height=64, stages=[Stage("gone.safetensors", steps=2)])
    path = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(p))
    code, _, stderr = cli(capsys, "sweep", path, "--x", "seed=1,2", "--out", tmp_path / "s")
    assert code == EXIT_USAGE and "handoff: stage 1: model 'gone.safetensors' is not a file or folder here" in stderr
    # On a cluster the nodes hold the models (paths that exist on every node): not asked here,
    # so the next check (nothing listens at the address) is what refuses it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, stderr = cli(capsys, "sweep", path, "--x", "seed=1,2", "--out", tmp_path / "s", "--ray", f"127.0.0.1:{port}")
    assert code == EXIT_USAGE and "gone.safetensors" not in stderr and "cannot reach the Ray cluster" in stderr


def test_generate_with_an_init_image_notes_a_far_size_and_a_drifting_strength(tmp_path, capsys):
    """The window's advice (core.advice), said before the job runs; the job still runs."""
    init = tmp_path / "photo.png"
    Image.new("RGB", (192, 160), (200, 40, 40)).save(init)
    out = tmp_path / "refined.png"
    code, _, stderr = cli(capsys, "generate", "a red circle", "--model", "builtin:demo-refiner", "--init-image", init,
                          "--strength", "0.6", "--steps", "2", "--seed", "1", "--out", out)
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if line.startswith("handoff: note:")]
    assert notes == [
        "handoff: note: 192×160 is far from the model's 64×64 area: expect mush or repeats "
        "(the same shape at that area: 72x56)",
        "handoff: note: stage 1 (refine): Above 0.5 the text and composition may drift from the previous stage."]
    with Image.open(out) as im:
        assert im.size == (192, 160)
