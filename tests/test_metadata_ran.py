"""Metadata says what ran: when the plan hands a stage over otherwise than asked (a latent
handoff between two VAEs, an ensemble whose noisy latents another VAE cannot continue),
the PNG's `handoff` chunk, its A1111 text, its ComfyUI `prompt` and `workflow` graphs,
`main.py inspect` and `main.py export` all say what ran, read from the plan's record
(core.ran), with the strength it ran at and why."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from core import cli
from core import events as ev
from core.interop import comfyui
from core.interop.comfyui_nodes import Link, from_api
from core.interop.detect import from_chunks, from_json
from core.interop.reading import Where
from core.metadata import read_recipe
from core.project import Project, Stage
from tests.engine_helpers import of, pixels, run_job
from tests.interop_helpers import no_models, sample

SIZE, SEED, STEPS = 32, 3, 4


def chunks(path):
    return Image.open(path).text


def pixel_refines(api: dict) -> list[dict]:
    """The graph's KSamplers that refine a decoded image: latent_image ← VAEEncode ← VAEDecode."""
    graph = from_api(api, Where("prompt"))
    out = []
    for node in graph.nodes.values():
        if node.class_type != "KSampler":
            continue
        enc = graph.nodes[node.inputs["latent_image"].node]
        if enc.class_type == "VAEEncode" and isinstance(enc.inputs["pixels"], Link):
            dec = graph.nodes[enc.inputs["pixels"].node]
            if dec.class_type == "VAEDecode":
                out.append(node.inputs)
    return out


@pytest.fixture(scope="module")
def latent_asked(tiny_models, tmp_path_factory):
    """sd → sd_other asked for a latent handoff: their VAEs differ, so it runs as pixels."""
    tmp = tmp_path_factory.mktemp("latent-asked")
    project = Project(prompt="a red cube", width=SIZE, height=SIZE, seed=SEED, stages=[
        Stage(str(tiny_models["sd"]), steps=STEPS, guidance=5.0),
        Stage(str(tiny_models["sd_other"]), steps=STEPS, guidance=5.0, handoff="latent", strength=0.5)])
    events = run_job(project, tmp)
    return events, of(events, ev.JobFinished)[0].paths[-1], project


def test_the_handoff_chunk_keeps_the_ask_and_records_what_ran(latent_asked):
    started = of(latent_asked[0], ev.StageStarted)[1]  # the tiny sd and sd_other VAEs differ
    assert started.handoff == "pixel" and "the VAEs differ" in started.note
    data = json.loads(chunks(latent_asked[1])["handoff"])
    assert data["recipe"]["stages"][1]["handoff"] == "latent"  # the user's setting, as asked
    first, second = data["ran"]
    assert (first["ran"], first["why"]) == ("generate", "")
    assert (second["index"], second["asked"], second["ran"], second["strength"]) == (1, "latent", "pixel", 0.5)
    assert "latent handoff impossible (the VAEs differ" in second["why"]


def test_the_a1111_text_says_pixel(latent_asked):
    text = chunks(latent_asked[1])["parameters"]
    assert "Hires upscaler: Lanczos" in text and "Denoising strength: 0.5" in text
    assert "2 pixel at 0.5 (asked latent)" in text
    assert "Latent" not in text.split("Hires upscaler: ")[1].split(",")[0]


def test_the_comfyui_prompt_and_workflow_decode_and_encode(latent_asked):
    texts = chunks(latent_asked[1])
    refines = pixel_refines(json.loads(texts["prompt"]))
    assert len(refines) == 1 and refines[0]["denoise"] == 0.5
    # The UI workflow reads back as the same chain: a pixel refine at the strength that ran.
    workflow = from_json(json.loads(texts["workflow"]), "workflow.json", no_models()).project
    assert [(s.handoff, s.strength) for s in workflow.stages[1:]] == [("pixel", 0.5)]
    assert sum(n["type"] == "VAEEncode" for n in json.loads(texts["workflow"])["nodes"]) == 1


def test_inspect_says_pixel_and_why(latent_asked, capsys):
    assert cli.main(["inspect", str(latent_asked[1])]) == 0
    err = capsys.readouterr().err
    assert "stage 2: ran pixel at strength 0.5, asked latent (latent handoff impossible (the VAEs differ" in err
    imported = read_recipe(latent_asked[1])
    assert imported.project.stages[1].handoff == "latent" and imported.ran[1].ran == "pixel"


def test_export_of_the_png_follows_what_ran(latent_asked, tmp_path):
    out = tmp_path / "wf.json"
    assert cli.main(["export", str(latent_asked[1]), "--comfyui", str(out)]) == 0
    project = from_json(json.loads(out.read_text()), "wf.json", no_models()).project
    assert project.stages[1].handoff == "pixel"


def test_a_saved_project_keeps_what_ran_in_its_history(latent_asked, tmp_path):
    from core.document import Document

    events, _, project = latent_asked
    doc = Document(project.copy())
    doc.begin_run(project)
    for e in events:
        doc.record(e)
    reopened = Document.open(doc.save(tmp_path / "job.handoff"))
    assert reopened.project.stages[1].handoff == "latent"
    ran = reopened.runs[0].stages[1].ran
    assert (ran.asked, ran.ran, ran.strength) == ("latent", "pixel", 0.5) and "the VAEs differ" in ran.why


@pytest.fixture(scope="module")
def zimage_other_vae(tmp_path_factory):
    from tests import tiny_pipelines as tp

    return tp.build_zimage(tmp_path_factory.mktemp("ran-zimage") / "z", seed=40, vae_seed=8)


def test_an_impossible_ensemble_is_written_as_the_pixel_refine_that_ran(tiny_models, zimage_other_vae, tmp_path):
    # Z-Image with another VAE → Z-Image, asked for an ensemble switching at 0.25: it redoes
    # 0.75 of the schedule from the decoded image (not the stage's own strength, 0.3).
    project = Project(prompt="a red cube", width=SIZE, height=SIZE, seed=SEED, stages=[
        Stage(str(zimage_other_vae), steps=STEPS, guidance=0.0),
        Stage(str(tiny_models["zimage"]), steps=STEPS, guidance=0.0, handoff="ensemble", switch_at=0.25,
              strength=0.3)])
    events = run_job(project, tmp_path)
    assert of(events, ev.StageStarted)[1].handoff == "pixel"
    texts = chunks(of(events, ev.JobFinished)[0].paths[-1])
    ran = json.loads(texts["handoff"])["ran"][1]
    assert (ran["asked"], ran["ran"], ran["strength"]) == ("ensemble", "pixel", 0.75)
    assert "ensemble impossible" in ran["why"]
    api = json.loads(texts["prompt"])
    assert not any(n["class_type"] == "KSamplerAdvanced" for n in api.values())
    assert [r["denoise"] for r in pixel_refines(api)] == [0.75]
    assert "Refiner:" not in texts["parameters"] and "Denoising strength: 0.75" in texts["parameters"]


# ---------------------------------------------------------------- the refiner's aesthetic scores


def refiner_graph(positive: float, negative: float) -> dict:
    """ComfyUI's SDXL base + refiner test graph, its refiner prompts encoded with
    CLIPTextEncodeSDXLRefiner as ComfyUI's SDXL refiner example does (ascore 6 and 2.5 are
    that node's and that example's values)."""
    api = json.loads(sample("comfyui/default_graph_sdxl1_0.json"))
    for node_id, ascore in (("17", positive), ("20", negative)):
        api[node_id]["class_type"] = "CLIPTextEncodeSDXLRefiner"
        api[node_id]["inputs"].update(ascore=ascore, width=1024, height=1024)
    return api


def aesthetic_lines(imported) -> list[str]:
    return [u for u in imported.unmapped + imported.notes if "aesthetic" in u]


def test_handoff_names_the_aesthetic_scores_diffusers_uses():
    import inspect

    from diffusers import StableDiffusionXLImg2ImgPipeline

    from core.families.sdxl import REFINER_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE

    params = inspect.signature(StableDiffusionXLImg2ImgPipeline.__call__).parameters
    assert params["aesthetic_score"].default == REFINER_AESTHETIC_SCORE
    assert params["negative_aesthetic_score"].default == REFINER_NEGATIVE_AESTHETIC_SCORE


def test_the_stock_refiner_scores_raise_no_warning():
    assert aesthetic_lines(from_json(refiner_graph(6.0, 2.5), "refiner.json", no_models())) == []


def test_other_refiner_scores_are_named():
    lines = aesthetic_lines(from_json(refiner_graph(8.0, 1.0), "refiner.json", no_models()))
    assert lines == ["node 17: aesthetic score 8.0: Handoff's refiner uses 6",
                     "node 20: negative aesthetic score 1.0: Handoff's refiner uses 2.5"]


def invokeai_refiner(positive: float, negative: float):
    meta = json.loads(sample("invokeai/invokeai_metadata-3.3.json"))
    meta.update(refiner_model={"model_name": "sd_xl_refiner_1.0"}, refiner_start=0.8,
                refiner_positive_aesthetic_score=positive, refiner_negative_aesthetic_score=negative)
    return from_chunks({"invokeai_metadata": json.dumps(meta)}, "image.png", None, lookup=no_models())


def test_invokeai_refiner_scores_warn_only_when_they_differ():
    assert aesthetic_lines(invokeai_refiner(6, 2.5)) == []
    assert aesthetic_lines(invokeai_refiner(7, 2.5)) == ["refiner_positive_aesthetic_score 7: Handoff's refiner uses 6"]
    assert aesthetic_lines(invokeai_refiner(6, 3)) == ["refiner_negative_aesthetic_score 3: Handoff's refiner uses 2.5"]


def test_a_png_rewritten_with_its_decode_keeps_what_ran(tiny_models, tmp_path):
    """A stage that handed latents over is rewritten once its decode exists (core.deferred_decode):
    the rewritten PNG still carries every stage's record, as the first write did."""
    project = Project(prompt="a red cube", width=SIZE, height=SIZE, seed=SEED, stages=[
        Stage(str(tiny_models["sd"]), steps=STEPS, guidance=5.0),
        Stage(str(tiny_models["sd"]), steps=STEPS, guidance=5.0, handoff="latent", strength=0.5)])
    events = run_job(project, tmp_path)
    assert 0 in [e.index for e in of(events, ev.StageImageUpdated)], "stage 1 handed latents and was decoded"
    data = json.loads(chunks(of(events, ev.JobFinished)[0].paths[0])["handoff"])
    assert "preview" not in data or not data["preview"]
    assert [(r["index"], r["ran"]) for r in data["ran"]] == [(0, "generate")]  # the stages that made it


@pytest.mark.parametrize("asked", ["latent", "ensemble"])
def test_an_init_image_is_refined_as_pixels_whatever_the_first_stage_asks(tiny_models, tmp_path, asked):
    """core.planning decides a first stage's handoff: with an init image it refines pixels,
    as a pixel stage does, bit for bit; the recipe keeps the stage's setting and the PNG
    says what ran and why. Validation lets such a project run (the window no longer
    rewrites the stage when an image is dropped on it)."""
    from core.project import validate

    init = tmp_path / "init.png"
    Image.new("RGB", (SIZE, SIZE), (200, 30, 30)).save(init)

    def job(handoff: str) -> Project:
        return Project(prompt="a red cube", width=SIZE, height=SIZE, seed=SEED, init_image=str(init), stages=[
            Stage(str(tiny_models["sd"]), steps=STEPS, guidance=5.0, handoff=handoff, strength=0.5)])

    validate(job(asked))
    events = run_job(job(asked), tmp_path / asked)
    started, done = of(events, ev.StageStarted)[0], of(events, ev.StageFinished)[0]
    assert started.handoff == "pixel" and started.note == f"an init image is handed over as pixels: '{asked}' handed over as pixels"
    as_pixel = of(run_job(job("pixel"), tmp_path / "pixel"), ev.StageFinished)[0]
    assert (pixels(done.image) == pixels(as_pixel.image)).all()
    data = json.loads(chunks(of(events, ev.JobFinished)[0].paths[-1])["handoff"])
    assert data["recipe"]["stages"][0]["handoff"] == asked  # the user's setting, as it was
    (first,) = data["ran"]
    assert (first["asked"], first["ran"], first["strength"]) == (asked, "pixel", 0.5)
    assert first["why"] == started.note
