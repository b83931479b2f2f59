"""Scoring candidates (core.scorers, core.scorer_refs, core.candidates): the CLIP score and
the aesthetic MLP equal plain transformers/torch computations on tiny random models, a job
with candidates continues with its best-scored one, the `score` command prints one line
per image in input order, a bad scorer is one line, and `sweep --pick` writes the best
cell within the drift limit into the project file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import events as ev
from core.engine import OutputPlan, run
from core.errors import ModelError, ProjectError
from core.metadata import RECIPE_KEY
from core.models import ModelCache
from core.project import Project, Stage, validate
from core.stage_store import StageStore
from tests.engine_helpers import of
from tests.tiny_scorers import aesthetic_state, build_clip

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def scorer_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny CLIP (projection 768, as the aesthetic head reads) and a random head (.pth)."""
    import torch

    root = tmp_path_factory.mktemp("scorers")
    clip = build_clip(root / "clip")
    head = root / "head.pth"
    torch.save(aesthetic_state(seed=3), head)
    # another head, whose best sweep cell is not the one that drifts least (checked in the test)
    torch.save(aesthetic_state(seed=1), root / "head-sweep.pth")
    return {"clip": clip, "head": head, "head_sweep": root / "head-sweep.pth"}


def _images():
    from PIL import Image, ImageDraw

    out = []
    for n, (fg, bg) in enumerate([("red", "blue"), ("white", "black"), ("green", "yellow"), ("blue", "red")]):
        image = Image.new("RGB", (48, 40), bg)
        ImageDraw.Draw(image).ellipse((4 + 3 * n, 4, 30, 30 + n), fill=fg)
        out.append(image)
    return out


def _transformers_embeds(folder: Path, image, prompt: str):
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(str(folder)).eval(), CLIPProcessor.from_pretrained(str(folder))
    import torch

    with torch.no_grad():
        out = model(**processor(text=[prompt], images=image, return_tensors="pt", padding=True))
    return out.image_embeds, out.text_embeds  # CLIPModel's own normalised projections


def test_clip_score_equals_transformers_own_computation(scorer_files):
    from core.scorer_refs import resolve_scorer
    from core.scorers import ScorerCache

    scorer = ScorerCache().get(resolve_scorer(f"clip:{scorer_files['clip']}"), "cpu")
    expected, got = [], []
    for image in _images():
        for prompt in (PROMPT, "a green square", "photo of a cat"):
            image_embeds, text_embeds = _transformers_embeds(scorer_files["clip"], image, prompt)
            expected.append(100 * max(float((image_embeds * text_embeds).sum()), 0.0))
            got.append(scorer.score(image, prompt))
    assert got == pytest.approx(expected, abs=1e-4)
    assert any(v > 0 for v in expected) and len(set(round(v, 4) for v in expected)) > 2  # not all clamped


def test_aesthetic_score_equals_a_hand_built_mlp(scorer_files):
    import torch

    from core.scorer_refs import resolve_scorer
    from core.scorers import ScorerCache

    mlp = torch.nn.Sequential(
        torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1)).eval()
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in aesthetic_state(seed=3).items()})
    scorer = ScorerCache().get(resolve_scorer(f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}"), "cpu")
    for image in _images():
        image_embeds, _ = _transformers_embeds(scorer_files["clip"], image, "")
        with torch.no_grad():
            expected = float(mlp(image_embeds))
        assert scorer.score(image, PROMPT) == pytest.approx(expected, abs=1e-5)


def test_aesthetic_head_reads_safetensors_and_refuses_other_shapes(scorer_files, tmp_path):
    import torch
    from safetensors.torch import save_file

    from core.scorers import read_aesthetic_head

    save_file(aesthetic_state(seed=3), str(tmp_path / "head.safetensors"))
    a = read_aesthetic_head(tmp_path / "head.safetensors")
    b = read_aesthetic_head(scorer_files["head"])
    x = torch.randn(2, 768)
    assert torch.equal(a(x), b(x))
    save_file({"layers.0.weight": torch.zeros(4, 768)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="not an improved-aesthetic-predictor MLP"):
        read_aesthetic_head(tmp_path / "other.safetensors")


def _chain(sd: str, scorer: str, candidates: int = 3, keep: int = 1) -> Project:
    return Project(prompt=PROMPT, width=32, height=32, seed=40, candidates=candidates, scorer=scorer, keep=keep,
                   stages=[Stage(sd, steps=4, name="base"),
                           Stage(sd, steps=4, handoff="pixel", strength=0.5, seed=7, name="refine")])


def _recipe(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text[RECIPE_KEY])


def test_candidates_continue_with_the_best_scored_one(tiny_models, scorer_files, tmp_path):
    scorer = f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}"
    project = _chain(str(tiny_models["sd"]), scorer)
    store, models = StageStore(tmp_path / "stages"), ModelCache()
    final = tmp_path / "out" / "final.png"
    events = list(run(project, OutputPlan.to_file(final), models=models, store=store))
    assert not of(events, ev.JobFailed), of(events, ev.JobFailed)[0].message
    firsts = sorted((tmp_path / "out").glob("final-seed*-1-base.png"))
    assert len(firsts) == 3  # every candidate's stage-1 PNG, with its score
    scores = {}
    for path in firsts:
        recipe = _recipe(path)
        assert recipe["score"]["scorer"] == scorer
        scores[recipe["recipe"]["seed"]] = recipe["score"]["value"]
    assert sorted(scores) == [40, 41, 42] and len(set(scores.values())) == 3
    best = max(scores, key=scores.get)
    (scored,) = of(events, ev.CandidatesScored)
    assert scored.kept == [best] and {c.seed: c.score for c in scored.candidates} == scores
    final_recipe = _recipe(final)["recipe"]
    assert final_recipe["seed"] == best and final_recipe["candidates"] == 1
    assert final.is_file() and len(of(events, ev.JobStarted)) == 1 and len(of(events, ev.JobFinished)) == 1

    # Overriding the pick re-runs only stage 2: the candidate's stage 1 is stored by its seed.
    from core.candidates import repick

    other = min(scores, key=scores.get)
    chosen, from_stage = repick(project, other)
    again = list(run(chosen, OutputPlan.in_dir(tmp_path / "repick", "job"), models=models, from_stage=from_stage,
                     store=store))
    done = of(again, ev.StageFinished)
    assert [d.reused for d in done] == [True, False]
    assert _recipe(done[1].path)["recipe"]["seed"] == other


def test_candidate_fields_are_checked():
    p = _chain("x", "clip:x", candidates=65)
    with pytest.raises(ProjectError, match="candidates 65 is outside 1..64"):
        validate(p)
    with pytest.raises(ProjectError, match="keep 4 is outside 1..3"):
        validate(_chain("x", "clip:x", keep=4))
    with pytest.raises(ProjectError, match="need a scorer"):
        validate(_chain("x", "", candidates=2))


def test_a_bad_scorer_fails_the_job_with_one_line(tiny_models, tmp_path):
    project = _chain(str(tiny_models["sd"]), f"aesthetic:{tmp_path / 'missing.pth'}")
    events = list(run(project, OutputPlan.in_dir(tmp_path / "out", "job"), store=StageStore(tmp_path / "s")))
    (failed,) = of(events, ev.JobFailed)
    assert "aesthetic head file not found" in failed.message and "\n" not in failed.message
    assert not of(events, ev.StageFinished)  # refused before any image is made


def _save(images, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, image in enumerate(images):
        paths.append(folder / f"img-{n}.png")
        image.save(paths[-1])
    return paths


def test_score_command_prints_one_line_per_image_in_input_order(scorer_files, tmp_path, capsys):
    from core.scorer_refs import resolve_scorer
    from core.scorers import ScorerCache
    from main import main

    from core.images import read_image

    paths = _save(_images(), tmp_path / "imgs")
    ref = f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}"
    scorer = ScorerCache().get(resolve_scorer(ref), "cpu")
    scores = {p: scorer.score(read_image(p, "x"), PROMPT) for p in paths}
    by_score = sorted(paths, key=scores.get)
    # An order that is neither the scores' (either way) nor the names'.
    order = [by_score[2], by_score[0], by_score[3], by_score[1]]
    assert order != paths and len(set(scores.values())) == 4
    assert main(["score", "--prompt", PROMPT, "--scorer", ref, *map(str, order)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{scores[p]:.4f}\t{p}" for p in order]


@pytest.mark.parametrize("ref, says", [
    ("nope:thing", "is not one Handoff knows"),
    ("clip:{missing}", "CLIP model not found"),
    ("aesthetic:{head}", "no CLIP ViT-L/14 found"),
    ("clip:{head_dir}", "is not a CLIP model folder"),
])
def test_a_refused_scorer_ref_is_one_line(scorer_files, tmp_path, capsys, ref, says):
    from main import main

    (image,) = _save(_images()[:1], tmp_path / "imgs")
    ref = ref.format(missing=tmp_path / "nowhere", head=scorer_files["head"], head_dir=tmp_path / "imgs")
    assert main(["score", "--scorer", ref, str(image)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and says in captured.err


def _sweep(project_path: Path, out: Path, ref: str, *more: str) -> tuple[int, dict]:
    from main import main

    status = main(["sweep", str(project_path), "--x", "2.strength=0.25,0.5,0.75,1.0", "--out", str(out),
                   "--pick", ref, *more])
    return status, json.loads((out / "sweep.json").read_text())


def _strength(project_path: Path) -> float:
    from core import project_file

    return project_file.load(project_path).project.stages[1].strength


def test_sweep_pick_writes_the_best_cell_within_the_drift_limit(tiny_models, scorer_files, tmp_path):
    from PIL import Image

    from core import project_file
    from core.sweep import PICK_COLOUR

    sd = str(tiny_models["sd"])
    path = tmp_path / "chain.handoff"
    project = _chain(sd, "", candidates=1)
    project_file.save(path, project_file.ProjectDocument(project))
    ref = f"aesthetic:{scorer_files['head_sweep']}@{scorer_files['clip']}"

    status, free = _sweep(path, tmp_path / "free", ref)
    assert status == 0
    cells = free["cells"]
    scores = [c["score"] for c in cells]
    strengths = [0.25, 0.5, 0.75, 1.0]
    best = max(range(4), key=scores.__getitem__)
    assert _strength(path) == strengths[best] and [c.get("picked", False) for c in cells] == [i == best for i in range(4)]

    # A limit the unconstrained best misses: the best of the cells within it is written instead.
    ssims = [c["drift"]["ssim"] for c in cells]
    limit = ssims[best] + 1e-3
    within = [i for i in range(4) if ssims[i] >= limit]
    assert within, "the test needs a cell that drifts less than the best-scored one"
    expected = max(within, key=scores.__getitem__)
    status, limited = _sweep(path, tmp_path / "limited", ref, "--max-drift", f"{limit:.6f}")
    assert status == 0 and _strength(path) == strengths[expected] != strengths[best]
    grid = Image.open(tmp_path / "limited" / "grid.png").convert("RGB")
    marked = [grid.getpixel((i * 160 + 1, 21)) == PICK_COLOUR for i in range(4)]
    assert marked == [i == expected for i in range(4)]


def test_sweep_pick_with_no_cell_within_the_limit_writes_nothing(tiny_models, scorer_files, tmp_path, capsys):
    from core import project_file

    path = tmp_path / "chain.handoff"
    project_file.save(path, project_file.ProjectDocument(_chain(str(tiny_models["sd"]), "", candidates=1)))
    before = path.read_bytes()
    status, _ = _sweep(path, tmp_path / "out", f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}",
                       "--max-drift", "1")
    assert status == 1 and path.read_bytes() == before
    assert "handoff: no cell to pick" in capsys.readouterr().err


def test_generate_command_takes_candidates_and_writes_the_best_as_the_final(tiny_models, scorer_files, tmp_path):
    from main import main

    sd, final = str(tiny_models["sd"]), tmp_path / "out" / "final.png"
    ref = f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}"
    assert main(["generate", PROMPT, "--model", sd, "--steps", "3", "--size", "32x32", "--seed", "5",
                 "--refiner", sd, "--refiner-strength", "0.5", "--candidates", "2", "--scorer", ref,
                 "--out", str(final)]) == 0
    scores = {_recipe(p)["recipe"]["seed"]: _recipe(p)["score"]["value"]
              for p in (tmp_path / "out").glob("final-seed*-1-base.png")}
    assert sorted(scores) == [5, 6]
    assert _recipe(final)["recipe"]["seed"] == max(scores, key=scores.get)
    # Each score is the image's on disk (the decode the refiner's latent handoff left), not a preview's.
    from core.scorer_refs import score_files

    for p in (tmp_path / "out").glob("final-seed*-1-base.png"):
        assert "preview" not in _recipe(p) or not _recipe(p)["preview"]
        assert score_files(ref, PROMPT, [p])[0] == pytest.approx(_recipe(p)["score"]["value"], abs=1e-4)


def test_an_uncached_hub_clip_offline_is_one_line(monkeypatch):
    from core.scorer_refs import resolve_scorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in the local Hugging Face cache and offline mode is on"):
        resolve_scorer("clip:nobody-here/clip-model")


def test_a_one_stage_chain_copies_its_best_candidate_to_the_output(tiny_models, scorer_files, tmp_path):
    project = _chain(str(tiny_models["sd"]), f"aesthetic:{scorer_files['head']}@{scorer_files['clip']}")
    project.stages = project.stages[:1]
    final = tmp_path / "out" / "final.png"
    events = list(run(project, OutputPlan.to_file(final), store=StageStore(tmp_path / "s")))
    (scored,) = of(events, ev.CandidatesScored)
    best = max(scored.candidates, key=lambda c: c.score)
    assert scored.kept == [best.seed] and final.read_bytes() == best.path.read_bytes()
    assert of(events, ev.JobFinished)[0].paths[-1] == final


def test_a_models_folder_of_clip_vision_alone_is_added_and_lends_the_scorer_its_clip(scorer_files, tmp_path, capsys):
    import shutil

    from core.cli import main
    from core.model_library import CLIP_VISION_KIND, ModelLibrary, clip_folder_candidates
    from core.scorer_refs import resolve_scorer

    # Kept apart from ComfyUI (extra_model_paths.yaml): no checkpoints/, only clip_vision/.
    shared = tmp_path / "shared-models"
    clip = shared / "clip_vision" / "clip-vit-large-patch14"
    shutil.copytree(scorer_files["clip"], clip)
    assert main(["library", "add", str(shared)]) == 0, capsys.readouterr().err
    assert [(e.kind, e.ref) for e in ModelLibrary.load().entries if e.source == "comfyui"] == [
        (CLIP_VISION_KIND, str(clip.resolve()))]
    assert clip_folder_candidates()[0].resolve() == clip.resolve()
    spec = resolve_scorer(f"aesthetic:{scorer_files['head']}")
    assert (spec.kind, spec.clip) == ("aesthetic", clip.resolve())


def test_an_aesthetic_scorer_finds_its_clip_in_a_comfyui_folder_of_the_library(scorer_files, tmp_path):
    import shutil

    from core.model_library import ModelLibrary
    from core.scorer_refs import resolve_scorer

    models = tmp_path / "ComfyUI" / "models"
    (models / "checkpoints").mkdir(parents=True)
    # A whole CLIP in the text encoders' folder: no library entry lists it, the folder search finds it.
    clip = models / "clip" / "clip-vit-large-patch14"
    shutil.copytree(scorer_files["clip"], clip)
    with pytest.raises(ModelError, match="no CLIP ViT-L/14 found"):
        resolve_scorer(f"aesthetic:{scorer_files['head']}")
    lib = ModelLibrary.load()
    lib.add_folder(tmp_path / "ComfyUI")
    lib.save()
    spec = resolve_scorer(f"aesthetic:{scorer_files['head']}")
    assert (spec.kind, spec.clip, spec.head) == ("aesthetic", clip.resolve(), scorer_files["head"].resolve())
