"""ComfyUI graphs read whole and written as ComfyUI runs them: its stock two-pass examples
restore stage by stage; LoRAs, ControlNets and upscale models travel both ways; every
graph Handoff exports passes a check against a pinned snapshot of ComfyUI's node
definitions (tests/data/comfyui_object_info.json)."""
from __future__ import annotations

import copy
import json

import pytest

from core.interop import comfyui
from core.interop.comfyui_check import graph_problems
from core.interop.comfyui_nodes import from_api, from_ui, to_api, to_ui
from core.interop.comfyui_write import graph_for
from core.interop.detect import from_json
from core.interop.reading import Where
from core.project import ControlNet, Lora, Project, Stage
from tests.interop_helpers import comfyui_object_info, in_library, lookup_of, no_models, sample

OBJECT_INFO = comfyui_object_info()
SD15 = "v1-5-pruned-emaonly.safetensors"
V21 = "v2-1_768-ema-pruned.ckpt"  # the hires fix examples' model


def _chain(p: Project) -> list[tuple]:
    return [(s.model, s.steps, s.guidance, s.scheduler, s.handoff, s.strength if s.handoff == "pixel" else None,
             s.upscale, s.upscaler, s.prompt, s.negative_prompt) for s in p.stages]


def _accepted(project: Project, lookup) -> Project:
    """Exports `project`, checks both formats against ComfyUI's node definitions, reads it back."""
    graph = graph_for(project)
    api = to_api(graph)
    assert graph_problems(api, OBJECT_INFO, set(graph.files)) == []
    ui_api = to_api(from_ui(json.loads(json.dumps(to_ui(graph))), Where("ui")))
    assert graph_problems(ui_api, OBJECT_INFO, set(graph.files)) == []
    return from_json(json.loads(json.dumps(api)), "api.json", lookup).project


# ---------------------------------------------------------------- ComfyUI's examples


def _example(name: str, lookup=None):
    """One of ComfyUI's stock examples, as a UI workflow (see tests/data/interop/README.md)."""
    return from_json(json.loads(sample(f"comfyui/{name}")), name, lookup or no_models())


def test_the_latent_hires_fix_example_is_a_generate_then_a_pixel_upscale():
    imported = _example("hiresfix_latent_workflow.json")
    p = imported.project
    assert (p.width, p.height, p.negative_prompt) == (768, 768, "bad hands, text, watermark\n")
    assert p.prompt.startswith("masterpiece HDR victorian portrait painting of woman")
    assert _chain(p) == [(V21, 12, 8.0, "DPM++ SDE", "auto", None, 1.0, None, None, None),
                         (V21, 14, 8.0, "DPM++ 2M", "pixel", 0.5, 1.5, None, None, None)]
    assert any("upscales latents" in n for n in imported.notes)
    # The copy's Note node (added by whoever re-saved it) is named, not mistaken for a stage.
    assert "node 17 (Note): not on the path to the saved image, not read" in imported.unmapped
    assert _chain(_accepted(p, no_models())) == _chain(p)


def test_the_esrgan_hires_fix_example_follows_the_final_image_and_keeps_its_upscale_model(tmp_path):
    esrgan = in_library(tmp_path, "upscaler", "upscale_models/RealESRGAN_x4plus.pth")
    imported = _example("hiresfix_esrgan_workflow.json")
    p = imported.project
    # Two SaveImage nodes: the one after both samplers is the graph's image, though its id is larger.
    assert "node 9 (SaveImage): another output (1 sampler before it, against 2), not followed" in imported.unmapped
    # 768 → ×4 by the model → resized to 1536: a ×2 stage that keeps its upscale model.
    model = "v2-1_768-ema-pruned.safetensors"
    assert _chain(p) == [(model, 12, 8.0, "DPM++ SDE", "auto", None, 1.0, None, None, None),
                         (model, 14, 8.0, "UniPC", "pixel", 0.5, 2.0, esrgan, None, None)]
    back = _accepted(p, no_models())
    assert _chain(back) == _chain(p)
    api = comfyui.api_prompt(p)
    (loader,) = [n for n in api.values() if n["class_type"] == "UpscaleModelLoader"]
    assert loader["inputs"]["model_name"] == "RealESRGAN_x4plus.pth"


def test_the_different_prompt_and_model_example_is_two_models_with_their_own_prompts(tmp_path):
    first = in_library(tmp_path, "pipeline", "checkpoints/wd-illusion-fp16.safetensors")
    imported = _example("latent_upscale_different_prompt_model_workflow.json", lookup_of(first))
    p = imported.project
    assert (p.width, p.height) == (1368, 768)
    assert p.prompt.startswith("anime happy girl (fennec:1.2)") and p.negative_prompt.startswith("lowres, bad anatomy")
    base, second = p.stages
    assert (base.model, base.steps, base.prompt) == (first, 14, None)
    # The UI stored the second pass's denoise as 0.4999999999999999: read as the 0.5 it shows.
    assert (second.model, second.handoff, second.strength, second.upscale, second.steps, second.guidance) == (
        "cardosAnime_v10.safetensors", "pixel", 0.5, 1.5, 8, 13.0)
    assert any("ComfyUI ran 8 steps at denoise 0.5; Handoff runs 4 of 8" in n for n in imported.notes)
    assert second.prompt.startswith("from far away anime happy girl")
    assert second.negative_prompt.startswith("(hands), (text:1.1)")
    # Its second model's CLIP goes through CLIPSetLastLayer, which Handoff says it cannot apply.
    assert "node 22 (CLIPSetLastLayer): not applied, clip skip is not supported" in imported.unmapped
    back = _accepted(p, lookup_of(first))
    assert _chain(back) == _chain(p)


def test_the_img2img_example_refines_its_loaded_image():
    p = _example("img2img_workflow.json").project
    p.init_image = "/photos/example.png"
    assert [(s.handoff, s.strength) for s in p.stages] == [("pixel", 1.0)]
    back = _accepted(p, no_models())
    assert _chain(back) == _chain(p)


# ---------------------------------------------------------------- adapters, both ways


def test_loras_a_controlnet_and_an_upscale_model_go_out_and_come_back(tmp_path):
    lora_a = in_library(tmp_path, "lora", "loras/sdxl/detail.safetensors")
    lora_b = in_library(tmp_path, "lora", "loras/film-grain.safetensors")
    cn = in_library(tmp_path, "controlnet", "controlnet/canny-sdxl.safetensors")
    up = in_library(tmp_path, "upscaler", "upscale_models/4x-UltraSharp.pth")
    ckpt = in_library(tmp_path, "pipeline", "checkpoints/xl/base.safetensors")
    project = Project(prompt="a harbour at dawn", negative_prompt="blurry", width=832, height=1216, seed=77, stages=[
        Stage(ckpt, steps=25, guidance=6.0, scheduler="Euler", loras=[Lora(lora_a, 0.6), Lora(lora_b, 1.2)],
              controlnet=ControlNet(cn, "/pics/edges.png", "canny", 80, 160, scale=0.7, start=0.1, end=0.9)),
        Stage(ckpt, steps=10, guidance=5.0, scheduler="Euler", handoff="pixel", strength=0.35, upscale=2.0,
              upscaler=up, loras=[Lora(lora_a, 0.3)])])
    graph = graph_for(project)
    api = to_api(graph)
    names = {(n["class_type"], k): v for n in api.values() for k, v in n["inputs"].items() if isinstance(v, str)}
    # Named as ComfyUI lists them: the path below the models subfolder.
    assert names[("CheckpointLoaderSimple", "ckpt_name")] == "xl/base.safetensors"
    assert names[("ControlNetLoader", "control_net_name")] == "canny-sdxl.safetensors"
    assert names[("UpscaleModelLoader", "model_name")] == "4x-UltraSharp.pth"
    assert {v["inputs"]["lora_name"] for v in api.values() if v["class_type"] == "LoraLoader"} == {
        "sdxl/detail.safetensors", "film-grain.safetensors"}
    back = _accepted(project, lookup_of(ckpt))
    first, second = back.stages
    assert [(lo.ref, lo.weight) for lo in first.loras] == [(lora_a, 0.6), (lora_b, 1.2)]
    assert [(lo.ref, lo.weight) for lo in second.loras] == [(lora_a, 0.3)]
    assert first.controlnet == ControlNet(cn, "edges.png", "canny", 80, 160, scale=0.7, start=0.1, end=0.9)
    assert (second.upscaler, second.upscale, second.strength) == (up, 2.0, 0.35)


def test_a_lora_with_another_clip_strength_takes_the_model_strength_and_says_so():
    api = json.loads(sample("comfyui/sd-1.5-lora-0.json"))
    api["10"]["inputs"].update(strength_model=0.8, strength_clip=0.5)
    imported = from_json(api, "l.json", no_models())
    assert [lo.weight for lo in imported.project.stages[0].loras] == [0.8]
    assert any("clip strength 0.5" in n for n in imported.notes)


def test_the_older_checkpoint_loader_is_read():
    workflow = json.loads(sample("comfyui/hiresfix_latent_workflow.json"))
    (loader,) = [n for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple"]
    loader.update(type="CheckpointLoader", widgets_values=["v2-inference-v.yaml", V21])
    imported = from_json(workflow, "c.json", no_models())
    assert [s.model for s in imported.project.stages] == [V21, V21]
    assert not any("CheckpointLoader" in u for u in imported.unmapped)
    assert any("v2-inference-v.yaml" in n for n in imported.notes)


# ---------------------------------------------------------------- what ComfyUI runs


@pytest.mark.parametrize("models, loader", [
    (("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"),
     {"CheckpointLoaderSimple": ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]}),
    (("stable-diffusion-v1-5/stable-diffusion-v1-5",), {"CheckpointLoaderSimple": [SD15]}),
    (("stabilityai/stable-diffusion-3.5-large",), {"CheckpointLoaderSimple": ["sd3.5_large.safetensors"],
                                                   "TripleCLIPLoader": ["clip_g.safetensors"]}),
    (("black-forest-labs/FLUX.1-dev",), {"UNETLoader": ["flux1-dev.safetensors"], "VAELoader": ["ae.safetensors"],
                                         "DualCLIPLoader": ["clip_l.safetensors"]}),
    (("black-forest-labs/FLUX.1-schnell",), {"UNETLoader": ["flux1-schnell.safetensors"]}),
    (("Tongyi-MAI/Z-Image-Turbo",), {"UNETLoader": ["z_image_turbo_bf16.safetensors"],
                                     "CLIPLoader": ["qwen_3_4b.safetensors"]}),
    (("someone/a-diffusers-model",), {"DiffusersLoader": ["a-diffusers-model"]}),
    (("builtin:demo-base", "builtin:demo-refiner"), {"CheckpointLoaderSimple": [
        "handoff-demo-base.safetensors", "handoff-demo-refiner.safetensors"]}),
])
def test_every_exported_graph_is_one_comfyui_accepts(models, loader):
    stages = [Stage(models[0], steps=20, scheduler="DPM++ 2M Karras")]
    if len(models) > 1:
        stages.append(Stage(models[1], steps=20, handoff="ensemble", switch_at=0.8))
    stages.append(Stage(models[-1], steps=10, handoff="pixel", strength=0.3, upscale=1.5))
    project = Project(prompt="a fox", seed=5, width=512, height=512, stages=stages)
    graph = graph_for(project)
    api = to_api(graph)
    assert graph_problems(api, OBJECT_INFO, set(graph.files)) == []
    for cls, names in loader.items():
        written = [v for n in api.values() if n["class_type"] == cls for k, v in n["inputs"].items()
                   if k.endswith(("_name", "_name1", "model_path"))]
        assert written[:len(names)] == names, (cls, written)
    if models[0].startswith("builtin:"):
        assert any("exists only in Handoff" in n for n in graph.notes)
    if loader.get("DiffusersLoader"):
        assert any("DiffusersLoader" in n for n in graph.notes)
    # Read back, the well-known names are the Hub models again.
    back = from_json(api, "x.json", lookup_of(*[m for m in models if not m.startswith("builtin:")]))
    assert [s.model for s in back.project.stages] == [s.model for s in stages]


def test_the_object_info_check_refuses_what_comfyui_would():
    project = Project(prompt="p", seed=1, width=512, height=512, stages=[Stage("builtin:demo-base", steps=8)])
    graph = graph_for(project)
    good = to_api(graph)
    files = set(graph.files)
    assert graph_problems(good, OBJECT_INFO, files) == []
    by_class = {n["class_type"]: k for k, n in good.items()}

    def broken(change) -> list[str]:
        api = copy.deepcopy(good)
        change(api)
        return graph_problems(api, OBJECT_INFO, files)

    ks, ck, enc = by_class["KSampler"], by_class["CheckpointLoaderSimple"], by_class["CLIPTextEncode"]
    assert "not one of the allowed values" in broken(lambda a: a[ks]["inputs"].update(sampler_name="euler_a"))[0]
    assert "not one of the allowed values" in broken(lambda a: a[ks]["inputs"].update(scheduler="Karras"))[0]
    assert "not one of the allowed values" in broken(lambda a: a[ck]["inputs"].update(ckpt_name="other.safetensors"))[0]
    assert "required input 'denoise' is missing" in broken(lambda a: a[ks]["inputs"].pop("denoise"))[0]
    assert "takes MODEL but is linked to a CLIP output" in broken(lambda a: a[ks]["inputs"].update(model=[ck, 1]))[0]
    assert "is outside" in broken(lambda a: a[ks]["inputs"].update(denoise=1.5))[0]
    assert "is not an input" in broken(lambda a: a[enc]["inputs"].update(upload="image"))[0]
    assert "is not a node ComfyUI has" in broken(lambda a: a[ks].update(class_type="KSamplerX"))[0]


def test_cli_exports_the_api_format_with_the_files_it_loads(tmp_path, capsys):
    from core import project_file
    from core.cli import main

    p = Project(prompt="a cat", seed=2, width=64, height=64, stages=[Stage("builtin:demo-base", steps=6)])
    saved = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(p))
    out = tmp_path / "cat-api.json"
    assert main(["export", str(saved), "--comfyui", str(out), "--format", "api"]) == 0
    api = json.loads(out.read_text())
    assert comfyui.looks_like_api(api) and not comfyui.looks_like_ui(api)
    assert graph_problems(api, OBJECT_INFO, {"handoff-demo-base.safetensors"}) == []
    stderr = capsys.readouterr().err
    assert "loads handoff-demo-base.safetensors: Handoff's built-in demo model" in stderr
    assert "exists only in Handoff" in stderr
    assert from_api(api, Where("x")).nodes  # the same graph the PNG's `prompt` chunk holds
    assert api == comfyui.api_prompt(p)


def test_an_upscale_stage_is_a_model_upscale_and_comes_back_as_one(tmp_path):
    up = in_library(tmp_path, "upscaler", "upscale_models/4x-UltraSharp.pth")
    project = Project(prompt="a fox", seed=5, width=512, height=512, stages=[
        Stage("builtin:demo-base", steps=8), Stage(up, upscale=1.5)])
    api = comfyui.api_prompt(project)
    classes = [n["class_type"] for n in api.values()]
    assert classes.count("KSampler") == 1 and "ImageUpscaleWithModel" in classes and "VAEEncode" not in classes
    back = _accepted(project, no_models())
    assert [(s.model, s.upscale) for s in back.stages] == [("builtin:demo-base", 1.0), (up, 1.5)]


def test_an_upscale_stage_on_the_init_image_loads_it(tmp_path):
    up = in_library(tmp_path, "upscaler", "upscale_models/4x-UltraSharp.pth")
    project = Project(prompt="", seed=1, width=256, height=256, init_image="/photos/old.png", stages=[
        Stage(up, upscale=2.0), Stage("builtin:demo-refiner", steps=8, handoff="pixel", strength=0.2)])
    graph = graph_for(project)
    api = to_api(graph)
    assert graph_problems(api, OBJECT_INFO, set(graph.files)) == []
    (load,) = [n for n in api.values() if n["class_type"] == "LoadImage"]
    assert load["inputs"]["image"] == "old.png" and graph.files["old.png"] == "the init image"
    # The init image's size is not in the graph: the stage's ×2 of the model's ×4 is an ImageScaleBy.
    assert [n["inputs"]["scale_by"] for n in api.values() if n["class_type"] == "ImageScaleBy"] == [0.5]
    back = from_json(api, "i.json", no_models()).project
    assert [(s.model, s.upscale) for s in back.stages] == [(up, 2.0), ("builtin:demo-refiner", 1.0)]
    assert (back.stages[1].handoff, back.stages[1].strength) == ("pixel", 0.2)


def test_a_controlnet_on_an_image_handoff_cannot_take_is_listed_and_the_rest_read(tmp_path):
    cn = in_library(tmp_path, "controlnet", "controlnet/depth.safetensors")
    project = Project(prompt="a room", seed=3, width=512, height=512, stages=[
        Stage("builtin:demo-base", steps=8, controlnet=ControlNet(cn, "/pics/depth.png", "none", scale=0.5))])
    api = comfyui.api_prompt(project)
    assert from_json(copy.deepcopy(api), "a.json", no_models()).project.stages[0].controlnet == ControlNet(
        cn, "depth.png", "none", scale=0.5)
    # A preprocessor node of a custom pack between the image and the ControlNet.
    (apply_id,) = [k for k, n in api.items() if n["class_type"] == "ControlNetApplyAdvanced"]
    api["99"] = {"class_type": "DepthAnythingPreprocessor", "inputs": {"image": api[apply_id]["inputs"]["image"]}}
    api[apply_id]["inputs"]["image"] = ["99", 0]
    imported = from_json(api, "b.json", no_models())
    stage = imported.project.stages[0]
    assert stage.controlnet is None and imported.project.prompt == "a room"
    assert any("DepthAnythingPreprocessor" in u and "not applied" in u for u in imported.unmapped)


# ---------------------------------------------------------------- upscale stages and refines, exported


def _exported(tmp_path, capsys, project: Project, fmt: str) -> tuple[Project, dict, str]:
    """`export --comfyui --format fmt` of `project`: (what reads back from the file, its
    API form, checked against ComfyUI's node definitions; the CLI's stderr)."""
    from core import project_file
    from core.cli import main

    saved = project_file.save(tmp_path / f"p-{fmt}.handoff", project_file.ProjectDocument(project))
    out = tmp_path / f"p-{fmt}.json"
    capsys.readouterr()
    assert main(["export", str(saved), "--comfyui", str(out), "--format", fmt]) == 0
    stderr = capsys.readouterr().err
    data = json.loads(out.read_text())
    assert (comfyui.looks_like_ui if fmt == "ui" else comfyui.looks_like_api)(data)
    api = to_api(from_ui(copy.deepcopy(data), Where("ui"))) if fmt == "ui" else data
    assert graph_problems(api, OBJECT_INFO, set(graph_for(project).files)) == []
    return from_json(data, out.name, no_models()).project, api, stderr


def _upstream(api: dict, node_id: str, name: str) -> tuple[str, dict]:
    source = api[node_id]["inputs"][name][0]
    return source, api[source]


@pytest.mark.parametrize("fmt", ["api", "ui"])
def test_an_upscale_stage_and_a_refine_with_an_upscaler_come_back_as_they_went(tmp_path, capsys, fmt):
    up = in_library(tmp_path, "upscaler", "upscale_models/4x-UltraSharp.pth")
    up2 = in_library(tmp_path, "upscaler", "upscale_models/2x-AniScale.pth")
    project = Project(prompt="a lighthouse", seed=11, width=512, height=512, stages=[
        Stage("builtin:demo-base", steps=8),
        Stage(up, upscale=1.5),
        Stage("builtin:demo-refiner", steps=10, handoff="pixel", strength=0.3, upscale=1.5, upscaler=up2)])
    back, api, _ = _exported(tmp_path, capsys, project, fmt)
    assert [(s.model, s.upscale, s.upscaler, s.handoff if s.upscaler else None) for s in back.stages] == [
        ("builtin:demo-base", 1.0, None, None), (up, 1.5, None, None), ("builtin:demo-refiner", 1.5, up2, "pixel")]
    assert (back.stages[2].strength, back.prompt, back.seed) == (0.3, "a lighthouse", 11)
    # The refine: VAEDecode → ImageUpscaleWithModel → ImageScale to its size → VAEEncode → KSampler.
    (refine,) = [k for k, n in api.items() if n["class_type"] == "KSampler" and n["inputs"]["denoise"] < 1]
    chain, node = [], refine
    for name in ("latent_image", "pixels", "image", "image", "image", "image"):  # the model's ×2 is not ×1.5
        node, entry = _upstream(api, node, name)
        chain.append(entry["class_type"])
        if entry["class_type"] == "ImageScale":
            chain[-1] += f" {entry['inputs']['width']}x{entry['inputs']['height']}"
    assert chain == ["VAEEncode", "ImageScale 1152x1152", "ImageUpscaleWithModel",
                     "ImageScale 768x768", "ImageUpscaleWithModel", "VAEDecode"]


@pytest.mark.parametrize("fmt", ["api", "ui"])
def test_a_last_upscale_stage_at_its_model_s_own_factor_feeds_the_save_directly(tmp_path, capsys, fmt):
    up = in_library(tmp_path, "upscaler", "upscale_models/4x-UltraSharp.pth")
    project = Project(prompt="a fox", seed=5, width=256, height=256, stages=[
        Stage("builtin:demo-base", steps=8), Stage(up, upscale=4.0)])
    back, api, _ = _exported(tmp_path, capsys, project, fmt)
    (save,) = [k for k, n in api.items() if n["class_type"] == "SaveImage"]
    assert _upstream(api, save, "images")[1]["class_type"] == "ImageUpscaleWithModel"
    assert "ImageScale" not in {n["class_type"] for n in api.values()}
    assert [(s.model, s.upscale) for s in back.stages] == [("builtin:demo-base", 1.0), (up, 4.0)]


def test_a_stage_whose_record_ran_an_upscale_is_written_as_the_model_upscale(tmp_path):
    from core.ran import StageRan

    # A .safetensors upscaler its metadata does not tell from a checkpoint: the run's record does.
    up = in_library(tmp_path, "upscaler", "upscale_models/4x_foolhardy_Remacri.safetensors")
    project = Project(prompt="a fox", seed=5, width=256, height=256, stages=[
        Stage("builtin:demo-base", steps=8), Stage(up, upscale=2.0)])
    ran = {0: StageRan(0, "auto", "generate", 1.0), 1: StageRan(1, "auto", "upscale", 0.0)}
    graph = graph_for(project, ran=ran)
    api = to_api(graph)
    assert graph_problems(api, OBJECT_INFO, set(graph.files)) == []
    classes = [n["class_type"] for n in api.values()]
    assert classes.count("KSampler") == 1 and classes.count("CheckpointLoaderSimple") == 1
    assert [n["inputs"]["model_name"] for n in api.values() if n["class_type"] == "UpscaleModelLoader"] == [
        "4x_foolhardy_Remacri.safetensors"]
    back = from_json(api, "r.json", no_models()).project
    assert [(s.model, s.upscale) for s in back.stages] == [("builtin:demo-base", 1.0), (up, 2.0)]


@pytest.mark.parametrize("fmt", ["api", "ui"])
def test_a_tiled_refine_is_written_as_a_whole_refine_and_the_export_says_the_tiling_was_dropped(
        tmp_path, capsys, fmt):
    project = Project(prompt="a city", seed=4, width=512, height=512, stages=[
        Stage("builtin:demo-base", steps=8),
        Stage("builtin:demo-refiner", steps=10, handoff="pixel", strength=0.25, upscale=2.0, refine_tile=512)])
    back, api, stderr = _exported(tmp_path, capsys, project, fmt)
    (refine,) = [k for k, n in api.items() if n["class_type"] == "KSampler" and n["inputs"]["denoise"] < 1]
    node, encode = _upstream(api, refine, "latent_image")
    assert _upstream(api, node, "pixels")[1]["class_type"] == "ImageScaleBy"
    assert "note: stage 2 refines in 512 px tiles" in stderr and "1024x1024" in stderr and "dropped" in stderr
    second = back.stages[1]
    assert (second.handoff, second.upscale, second.strength, second.refine_tile) == ("pixel", 2.0, 0.25, 0)


def test_the_demo_upscaler_is_written_as_its_file_and_read_back_as_itself():
    project = Project(prompt="a fox", seed=5, width=256, height=256, stages=[
        Stage("builtin:demo-base", steps=8), Stage("builtin:demo-upscaler", upscale=2.0)])
    graph = graph_for(project)
    api = to_api(graph)
    assert graph_problems(api, OBJECT_INFO, set(graph.files)) == []
    assert [n["inputs"]["model_name"] for n in api.values() if n["class_type"] == "UpscaleModelLoader"] == [
        "handoff-demo-upscaler.safetensors"]
    assert any("builtin:demo-upscaler" in n and "exists only in Handoff" in n for n in graph.notes)
    imported = from_json(api, "d.json", no_models())
    assert [(s.model, s.upscale) for s in imported.project.stages] == [
        ("builtin:demo-base", 1.0), ("builtin:demo-upscaler", 2.0)]
    assert not any("upscale" in n for n in imported.notes)
