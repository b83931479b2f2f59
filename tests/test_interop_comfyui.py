"""ComfyUI graphs: real API prompts and UI workflows restore as stage chains; Handoff's
chains are written as graphs that read back to the same project; every PNG Handoff writes
carries both chunks; the CLI and the window export a workflow."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from core.interop import comfyui
from core.interop.comfyui_check import graph_problems
from core.interop.comfyui_write import graph_for
from core.interop.comfyui_nodes import from_api, from_ui, to_api, to_ui
from core.interop.detect import from_chunks, from_json
from core.interop.reading import Where
from core.metadata import read_recipe, save_png
from core.project import Project, Stage
from tests.interop_helpers import comfyui_object_info, in_library, lookup_of, no_models, png_with, sample

OBJECT_INFO = comfyui_object_info()


def graph(name: str):
    return json.loads(sample(f"comfyui/{name}"))


def test_sdxl_base_and_refiner_split_one_schedule():
    imported = from_json(graph("default_graph_sdxl1_0.json"), "graph.json", no_models())
    p = imported.project
    assert (p.prompt, p.negative_prompt, p.width, p.height, p.seed) == ("a photo of a cat", "", 1024, 1024, 42)
    base, refiner = p.stages
    assert (base.model, base.steps, base.guidance, base.scheduler) == ("sd_xl_base_1.0.safetensors", 20, 7.5, "Euler")
    # This graph starts the refiner at step 32 of 20: the whole schedule is the base's.
    assert (refiner.model, refiner.handoff, refiner.switch_at) == ("sd_xl_refiner_1.0.safetensors", "ensemble", 1.0)
    assert any("ConditioningZeroOut" in u for u in imported.unmapped)
    # A well-known single-file name points at its Hub model.
    assert any("stabilityai/stable-diffusion-xl-base-1.0" in n for n in imported.notes)


def test_a_lora_loader_becomes_the_stages_lora_from_the_library(tmp_path):
    lora = in_library(tmp_path, "lora", "loras/epi_noiseoffset2.safetensors")
    imported = from_json(graph("sd-1.5-lora-0.json"), "lora.json", no_models())
    p = imported.project
    assert (p.prompt, p.negative_prompt, p.stages[0].model) == ("masterpiece best quality girl", "bad hands",
                                                                "v1-5-pruned-emaonly.safetensors")
    assert [(lo.ref, lo.weight) for lo in p.stages[0].loras] == [(lora, 1.0)]
    assert not any("LoraLoader" in u for u in imported.unmapped)
    assert p.seed == 851616030078638 and not any("seed" in n for n in imported.notes)  # 64-bit: kept exactly


def test_a_lora_not_in_the_library_stays_named_with_a_note():
    imported = from_json(graph("sd-1.5-lora-0.json"), "lora.json", no_models())
    assert [lo.ref for lo in imported.project.stages[0].loras] == ["epi_noiseoffset2.safetensors"]
    assert any("LoRA 'epi_noiseoffset2.safetensors' is not in your model library" in n for n in imported.notes)


def test_a_unet_loader_graph_says_what_it_needs():
    imported = from_json(graph("z_image-0.json"), "z.json", no_models())
    stage = imported.project.stages[0]
    assert (stage.model, stage.steps, stage.guidance, stage.scheduler) == ("z_image_turbo_bf16.safetensors", 9, 1.0, "Euler")
    # No stage field holds a denoiser file alone: not mapped, with every file the graph loads named.
    (unet,) = [u for u in imported.unmapped if u.startswith("node 16 (UNETLoader)")]
    for name in ("z_image_turbo_bf16.safetensors", "z_image_turbo_vae.safetensors", "qwen_3_4b.safetensors"):
        assert name in unet
    assert any("Tongyi-MAI/Z-Image-Turbo" in n for n in imported.notes)


def test_ui_workflows_read_like_the_api_format():
    default = from_json(graph("default-workflow.json"), "w.json", no_models()).project
    assert default.prompt.startswith("beautiful scenery") and default.negative_prompt == "text, watermark"
    assert (default.stages[0].steps, default.stages[0].guidance, default.width) == (20, 8.0, 512)
    img2img = from_json(graph("img2img_workflow.json"), "i.json", no_models())
    stage = img2img.project.stages[0]
    assert (stage.handoff, stage.strength, stage.model) == ("pixel", 1.0, "v1-5-pruned-emaonly-fp16.safetensors")
    assert any("example.png" in n for n in img2img.notes)


def test_a_comfyui_png_restores(tmp_path):
    path = png_with(tmp_path / "ComfyUI_00001_.png", {"prompt": sample("comfyui/default_graph_sdxl1_0.json"),
                                                      "workflow": sample("comfyui/default-workflow.json")})
    imported = read_recipe(path)
    assert imported.tool == "ComfyUI" and imported.source == "the `prompt` chunk"
    assert len(imported.project.stages) == 2, "the API prompt (what ran) is preferred to the UI workflow"


def _library_models(tmp_path) -> tuple[str, str, str]:
    base = tmp_path / "models" / "base-model.safetensors"
    base.parent.mkdir()
    base.write_bytes(b"\0" * 16)
    return str(base), "stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"


def _mapped(p: Project) -> tuple:
    """Every field a ComfyUI graph holds."""
    return (p.prompt, p.negative_prompt, p.width, p.height, p.seed,
            [(s.model, s.steps, s.guidance, s.seed, s.scheduler, s.prompt, s.prompt_suffix, s.negative_prompt, s.handoff,
              s.strength if s.handoff in ("pixel", "latent") else None,
              s.switch_at if s.handoff == "ensemble" else None, s.upscale, s.name) for s in p.stages])


@pytest.mark.parametrize("build", ["ensemble", "pixel-upscale", "latent", "three-stages"])
def test_handoff_to_comfyui_and_back_keeps_the_project(tmp_path, build):
    ckpt, xl_base, xl_refiner = _library_models(tmp_path)
    stages = {
        "ensemble": [Stage(xl_base, steps=40, guidance=6.5, scheduler="DPM++ 2M Karras", name="base"),
                     Stage(xl_refiner, steps=40, guidance=6.5, scheduler="DPM++ 2M Karras", handoff="ensemble",
                           switch_at=0.8, name="refiner")],
        "pixel-upscale": [Stage(ckpt, steps=20, guidance=7.0, scheduler="Euler a"),
                          Stage(ckpt, steps=12, guidance=5.0, scheduler="Euler a", handoff="pixel", strength=0.45,
                                upscale=1.5, seed=9, prompt_suffix="sharp focus, fine detail")],
        "latent": [Stage(xl_base, steps=30, guidance=5.0, scheduler="UniPC"),
                   Stage(ckpt, steps=10, guidance=4.0, scheduler="Heun Karras", handoff="latent", strength=0.3,
                         negative_prompt="blurry")],
        "three-stages": [Stage(xl_base, steps=30, scheduler="Euler", name="compose"),
                         Stage(xl_refiner, steps=30, scheduler="Euler", handoff="ensemble", switch_at=0.9),
                         Stage(ckpt, steps=8, scheduler="DPM++ SDE Karras", handoff="pixel", strength=0.25, upscale=2.0,
                               prompt="a different prompt entirely")],
    }[build]
    project = Project(prompt="a lighthouse at dusk, volumetric light", negative_prompt="text, watermark", width=832,
                      height=1216, seed=123456, stages=stages)
    api = comfyui.api_prompt(project)
    written = graph_for(project)
    assert graph_problems(api, OBJECT_INFO, set(written.files)) == [], "ComfyUI would refuse the graph"
    lookup = lookup_of(ckpt, xl_base, xl_refiner)
    back = from_json(json.loads(json.dumps(api)), "api.json", lookup)
    assert back.unmapped == [], back.unmapped
    assert _mapped(back.project) == _mapped(project)
    # The UI workflow is the same graph.
    ui = from_json(json.loads(json.dumps(comfyui.ui_workflow(project))), "ui.json", lookup)
    assert _mapped(ui.project) == _mapped(project)


def test_the_graph_shapes_comfyui_needs():
    p = Project(prompt="p", seed=1, width=64, height=64, stages=[
        Stage("builtin:demo-base", steps=20), Stage("builtin:demo-refiner", steps=20, handoff="ensemble", switch_at=0.8),
        Stage("builtin:demo-refiner", steps=10, handoff="pixel", strength=0.3, upscale=2.0)])
    api = comfyui.api_prompt(p)
    by_class: dict[str, list] = {}
    for node in api.values():
        by_class.setdefault(node["class_type"], []).append(node["inputs"])
    base, refiner = by_class["KSamplerAdvanced"]
    assert (base["start_at_step"], base["end_at_step"], base["return_with_leftover_noise"], base["add_noise"]) == (
        0, 16, "enable", "enable")
    assert (refiner["start_at_step"], refiner["add_noise"], refiner["steps"]) == (16, "disable", 20)
    (hires,) = by_class["KSampler"]
    assert hires["denoise"] == 0.3 and by_class["ImageScaleBy"][0]["scale_by"] == 2.0
    assert len(by_class["VAEDecode"]) == 2 and len(by_class["VAEEncode"]) == 1 and "SaveImage" in by_class
    # The built-in models ship EulerDiscreteScheduler: written as euler/normal, read back as their default.
    assert base["sampler_name"] == "euler" and base["scheduler"] == "normal"
    assert [s.scheduler for s in from_json(api, "x", no_models()).project.stages] == [None, None, None]


def test_ui_and_api_convert_into_each_other():
    where = Where("t")
    api = graph("default_graph_sdxl1_0.json")
    g = from_api(api, where)
    again = from_api(to_api(from_ui(to_ui(g), where)), where)
    assert {n.class_type for n in again.nodes.values()} == {n.class_type for n in g.nodes.values()}
    ksampler = [n for n in again.nodes.values() if n.class_type == "KSamplerAdvanced"]
    assert sorted(n.inputs["start_at_step"] for n in ksampler) == [0, 32]


def test_every_png_handoff_writes_carries_both_graphs(tmp_path):
    p = Project(prompt="a yellow star", seed=4, width=64, height=64, stages=[
        Stage("builtin:demo-base", steps=8), Stage("builtin:demo-refiner", steps=8, handoff="pixel", strength=0.3)])
    path = save_png(Image.new("RGB", (64, 64)), tmp_path / "out.png", p, 1)
    with Image.open(path) as im:
        chunks = dict(im.text)
    api, ui = json.loads(chunks["prompt"]), json.loads(chunks["workflow"])
    assert comfyui.looks_like_api(api) and comfyui.looks_like_ui(ui)
    assert {"last_node_id", "last_link_id", "nodes", "links", "version"} <= set(ui)
    assert graph_problems(api, OBJECT_INFO, set(graph_for(p, 1).files)) == []
    del chunks["handoff"]  # as another program that keeps only ComfyUI's chunks would
    imported = from_chunks(chunks, "out.png", lookup=no_models())
    assert imported.tool == "ComfyUI" and _mapped(imported.project) == _mapped(p)


def test_cli_exports_a_workflow_and_inspects_it(tmp_path, capsys):
    from core import project_file
    from core.cli import main

    p = Project(prompt="a cat", seed=2, width=64, height=64, stages=[Stage("builtin:demo-base", steps=6)])
    saved = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(p))
    out = tmp_path / "cat.json"
    assert main(["export", str(saved), "--comfyui", str(out)]) == 0
    assert comfyui.looks_like_ui(json.loads(out.read_text()))
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert json.loads(stdout)["prompt"] == "a cat" and "made by ComfyUI" in stderr


def test_reading_and_writing_other_formats_imports_no_torch():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import sys, core.interop.detect, core.interop.comfyui, core.interop.a1111, core.metadata, core.cli\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
