"""Every reader of outside files, fed random and mutated inputs (Hypothesis): valid documents
with a type changed, a key dropped, bytes cut short or replaced. Nothing escapes but
ReadError (ProjectError for validate), and the message names the field or the file."""
from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core import checked, project_file, settings_file
from core.checkpoints import checkpoint_keys, describe_file
from core.errors import ModelError, ProjectError, ReadError
from core.images import read_image
from core.model_configs import native_size, read_model_index
from core.model_info import describe_folder
from core.project import ControlNet, IPAdapter, Lora, Project, Stage, validate

# ---------------------------------------------------------------- strategies

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                           max_leaves=8)


def _slots(doc) -> list[tuple[object, object]]:
    """Every (container, key) in a JSON document, depth first."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        out.append((doc, key))
        out += _slots(value)
    return out


@st.composite
def mutated(draw, doc):
    """A valid document with 1-3 changes: a value replaced by any JSON, a key dropped, an
    unknown key added; now and then the whole document replaced."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if op == "drop" and isinstance(container, dict):
            del container[key]
        elif op == "add" and isinstance(container, dict):
            container[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
        else:
            container[key] = draw(json_values)
    return doc


@st.composite
def damaged_bytes(draw, data: bytes):
    """Bytes cut short, with bytes overwritten, or random altogether."""
    kind = draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    return draw(st.binary(max_size=300))


def valid_project() -> dict:
    return Project(prompt="a red circle", negative_prompt="blurry", width=64, height=64, seed=3, init_image=None,
                   stages=[Stage("builtin:demo-base", steps=8, scheduler="Euler", seed=4, loras=[Lora("a.safetensors", 0.8)],
                                 controlnet=ControlNet("cn", "edges.png"), ip_adapters=[IPAdapter("ip", "ref.png")]),
                           Stage("builtin:demo-refiner", steps=8, handoff="pixel", strength=0.5, upscale=1.5,
                                 prompt_suffix="sharp")]).to_dict()


def png_bytes(size=(4, 4), color=(10, 20, 30), info: PngInfo | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def reads_or_says(fn, *args, kinds=(ReadError,)):
    """Run a reader: its value, or the error it is allowed to raise (anything else fails)."""
    try:
        return fn(*args)
    except kinds as exc:
        text = str(exc)
        assert text and "\n" not in text, f"not one line: {text!r}"
        return exc


# ---------------------------------------------------------------- the project document


@given(mutated(valid_project()))
def test_project_from_dict_takes_anything(doc):
    result = reads_or_says(Project.from_dict, doc)
    if isinstance(result, Project):
        # What from_dict accepts, validate judges without a TypeError of its own.
        reads_or_says(validate, result, kinds=(ProjectError,))
        reads_or_says(validate, result, 8, {0: 16}, {0: 64, 1: 64}, kinds=(ProjectError,))


WRONG = {int: ["ten", 1.5, None, [], True], float: ["high", None, {}, float("nan"), False],
         str: [5, None, [], 1.0], bool: ["yes", 1, None]}


@pytest.mark.parametrize("field, kind", [("steps", int), ("guidance", float), ("strength", float), ("handoff", str),
                                         ("model", str), ("enabled", bool), ("upscale", float), ("seed", int)])
def test_a_wrong_stage_field_is_named(field, kind):
    for bad in WRONG[kind]:
        if bad is None and field == "seed":
            continue  # a stage's seed may be null (inherit the project's)
        doc = valid_project()
        doc["stages"][1][field] = bad
        with pytest.raises(ReadError) as info:
            Project.from_dict(doc)
        assert str(info.value).startswith(f"stage 2: {field} must be "), str(info.value)


def test_a_wrong_adapter_field_is_named():
    cases = [(("loras", 0, "weight"), "heavy", "stage 1: loras[1]: weight must be a number, not 'heavy'"),
             (("controlnet", None, "low"), 1.5, "stage 1: controlnet: low must be an integer, not 1.5"),
             (("ip_adapters", 0, "image"), None, "stage 1: ip_adapters[1]: image must be text, not null"),
             (("loras", None, None), {"ref": "x"}, "stage 1: loras must be a list, not a table"),
             (("controlnet", None, None), {"image": "e.png"}, "stage 1: controlnet: no model given")]
    for (key, n, field), bad, message in cases:
        doc = valid_project()
        if field is None:
            doc["stages"][0][key] = bad
        else:
            (doc["stages"][0][key] if n is None else doc["stages"][0][key][n])[field] = bad
        with pytest.raises(ReadError) as info:
            Project.from_dict(doc)
        assert str(info.value) == message


def test_reported_project_cases_say_which_field():
    cases = [
        (dict(valid_project(), stages=[{"model": "m", "steps": "ten"}]), "stage 1: steps must be an integer, not 'ten'"),
        (dict(valid_project(), width="x"), "width must be an integer, not 'x'"),
        (dict(valid_project(), stages=[5]), "stage 1 must be a table of fields, not 5"),
        ([valid_project()], "the project must be a table of fields, not a list"),
        (dict(valid_project(), schema_version="two"), "schema_version must be an integer, not 'two'"),
        (dict(valid_project(), stages="m"), "stages must be a list, not 'm'"),
    ]
    for doc, message in cases:
        with pytest.raises(ReadError, match="^" + message.replace("(", r"\(")):
            Project.from_dict(doc)
    both = dict(valid_project(), width="x", height=None)
    text = str(pytest.raises(ReadError, Project.from_dict, both).value)
    assert "width must be" in text and "height must be" in text  # every wrong field, at once


@given(st.binary(max_size=200) | mutated(valid_project()).map(lambda d: json.dumps(d).encode()))
def test_json_project_file_takes_anything(tmp_path, data):
    path = tmp_path / "p.json"
    path.write_bytes(data)
    result = reads_or_says(project_file.load, path)
    if isinstance(result, ReadError):
        assert str(result).startswith("p.json"), str(result)


# ---------------------------------------------------------------- .handoff archives


def handoff_bytes(manifest: object, entries: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (entries or {}).items():
            z.writestr(name, data)
        z.writestr("project.json", json.dumps(manifest))
    return buf.getvalue()


def valid_manifest() -> dict:
    return {
        "format": "handoff-project", "schema_version": 1, "project": dict(valid_project(), init_image="images/init.png"),
        "history": [{"run_id": "run1", "when": "2026-01-01T00:00:00", "recipe": valid_project(),
                     "timings": [{"index": 0, "label": "base", "input": None}, {"run": {"number": 1, "seconds": 1.0}}],
                     "images": [{"stage": 0, "label": "base", "file": "images/run1-1.png", "seconds": 0.5}]}],
    }


IMAGES = {"images/init.png": png_bytes(color=(255, 0, 0)), "images/run1-1.png": png_bytes(color=(0, 255, 0))}


def test_a_valid_archive_reads_back(tmp_path):
    from core.document import read_project

    path = tmp_path / "ok.handoff"
    path.write_bytes(handoff_bytes(valid_manifest(), IMAGES))
    project, runs = read_project(path)
    assert project.stages[1].upscale == 1.5 and Path(project.init_image).is_file()
    assert runs[0].stages[0].image.getpixel((0, 0)) == (0, 255, 0)


@given(mutated(valid_manifest()))
def test_handoff_manifest_takes_anything(tmp_path, manifest):
    from core.document import read_project

    path = tmp_path / "m.handoff"
    path.write_bytes(handoff_bytes(manifest, IMAGES))
    result = reads_or_says(read_project, path)  # the history decoded into runs, as the window opens it
    if isinstance(result, ReadError):
        assert str(result).startswith("m.handoff: "), str(result)


@given(damaged_bytes(handoff_bytes(valid_manifest(), IMAGES)))
def test_handoff_bytes_damaged_anyhow(tmp_path, data):
    from core.document import read_project

    path = tmp_path / "d.handoff"
    path.write_bytes(data)
    reads_or_says(read_project, path)


def test_history_that_is_not_a_list_is_named(tmp_path):
    path = tmp_path / "h.handoff"
    path.write_bytes(handoff_bytes(dict(valid_manifest(), history={"run": 1}), IMAGES))
    with pytest.raises(ReadError, match=r"^h.handoff: history must be a list, not a table$"):
        project_file.load(path)
    bad_image = copy.deepcopy(valid_manifest())
    bad_image["history"][0]["images"][0]["stage"] = "first"
    path.write_bytes(handoff_bytes(bad_image, IMAGES))
    with pytest.raises(ReadError, match=r"history run 1, image 1: stage must be an integer, not 'first'"):
        project_file.load(path)


# ---------------------------------------------------------------- PNG recipes


@given(st.one_of(st.text(max_size=40), mutated({"recipe": valid_project(), "stage": 0}).map(json.dumps)))
def test_png_handoff_chunk_takes_anything(tmp_path, chunk):
    info = PngInfo()
    info.add_itxt("handoff", chunk)
    path = tmp_path / "r.png"
    path.write_bytes(png_bytes(info=info))
    result = reads_or_says(project_file.load, path)
    if isinstance(result, ReadError):
        assert str(result).startswith("r.png: "), str(result)


@given(st.text(max_size=120) | st.sampled_from([
    "a cat\nSteps: seven, Sampler: Euler", "a cat\nSteps: 7, CFG scale: high", "a cat\nSteps: 7, Size: 0x0",
    "a cat\nSteps: 7, Seed: 1e999", "a cat\nSteps: 7, Hires upscale: many", "a cat\nSteps: 7, Denoising strength: ?",
    "a cat\nSteps: 7, Refiner: x, Refiner switch at: late", "\x00\nSteps: 99999999999999999999999"]))
def test_png_a1111_parameters_take_anything(tmp_path, text):
    info = PngInfo()
    info.add_text("parameters", text)
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(info=info))
    reads_or_says(project_file.load, path)


def test_reported_png_cases_are_one_line(tmp_path):
    cases = {"bad-json": ("handoff", "{not json"), "wrong-shape": ("handoff", "[1, 2]"),
             "no-recipe": ("handoff", '{"stage": 0}'), "a1111": ("parameters", "a cat\nSteps: seven, Seed: x")}
    for name, (key, value) in cases.items():
        info = PngInfo()
        info.add_text(key, value)
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_bytes(info=info))
        reads_or_says(project_file.load, path)
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(ReadError, match=r"^text.png cannot be read as an image \(not an image file"):
        project_file.load(tmp_path / "text.png")
    with pytest.raises(ReadError, match=r"^bad-json.png: the `handoff` chunk is not JSON"):
        project_file.load(tmp_path / "bad-json.png")
    with pytest.raises(ReadError, match=r"^wrong-shape.png: the `handoff` chunk has no 'recipe' object"):
        project_file.load(tmp_path / "wrong-shape.png")
    doc = valid_project()
    doc["stages"][1]["steps"] = "ten"
    info = PngInfo()
    info.add_text("handoff", json.dumps({"recipe": doc}))
    (tmp_path / "typed.png").write_bytes(png_bytes(info=info))
    with pytest.raises(ReadError, match=r"^typed.png: the `handoff` chunk's recipe: stage 2: steps must be an integer"):
        project_file.load(tmp_path / "typed.png")


@given(damaged_bytes(png_bytes(size=(8, 8))))
def test_images_damaged_anyhow(data):
    reads_or_says(read_image, data, "the image")


# ---------------------------------------------------------------- the settings file


def valid_settings() -> dict:
    return {"gui": {"recent_files": ["/a.handoff"], "recent_models": ["org/model"], "autosave_seconds": 60,
                    "window_geometry": "AdnQywAD", "splitters": {"main": [300, 900]}, "last_dir": "/tmp"},
            "models": {"schema_version": 1, "hidden_presets": ["org/x"],
                       "entries": [{"name": "mine", "ref": "org/mine", "source": "user", "family": "sdxl",
                                    "kind": "pipeline", "note": ""}]}}


@given(st.binary(max_size=100) | mutated(valid_settings()).map(lambda d: json.dumps(d).encode()))
def test_settings_file_takes_anything(handoff_home, data):
    from core.model_library import LibraryEntry, ModelLibrary
    from core import paths
    from gui.settings import Settings

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_bytes(data)
    reads_or_says(settings_file.read_all)
    s = Settings.load()  # never raises: damaged values are defaults
    assert all(isinstance(f, str) for f in s.recent_files + s.recent_models) and isinstance(s.autosave_seconds, int)
    assert isinstance(s.window_geometry, str) and isinstance(s.last_dir, str)
    assert all(isinstance(n, int) for sizes in s.splitters.values() for n in sizes)
    lib = ModelLibrary.load()
    assert all(isinstance(e, LibraryEntry) and isinstance(e.ref, str) and isinstance(e.name, str) for e in lib.entries)
    assert all(isinstance(h, str) for h in lib.hidden_presets)
    lib.all()  # the window lists them: must not trip on what was read


def test_damaged_settings_say_so_and_are_kept_aside(handoff_home):
    from core import paths

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_bytes(b"\xff\xfe{garbage")
    assert settings_file.read_section("gui") is None
    assert "settings.json is not text" in settings_file.take_problem()
    settings_file.write_section("gui", {"recent_files": []})
    assert (paths.settings_file().with_name("settings.json.damaged")).read_bytes() == b"\xff\xfe{garbage"
    assert settings_file.read_section("gui") == {"recent_files": []} and settings_file.take_problem() is None


# ---------------------------------------------------------------- the job queue (queue.json)


def valid_queue() -> dict:
    return {"version": 1, "jobs": [{"id": "a1", "title": "t", "added": "2026-01-01T00:00:00", "from_stage": 1,
                                    "project": valid_project()},
                                   {"id": "b2", "from_stage": None, "project": valid_project()}]}


@given(st.one_of(mutated(valid_queue()).map(lambda d: json.dumps(d).encode()),
                 damaged_bytes(json.dumps(valid_queue()).encode()),
                 json_values.map(lambda v: json.dumps(v).encode())))
def test_queue_file_takes_anything(handoff_home, data):
    """Whatever queue.json holds, the queue loads (never raises), holds only jobs that can
    be described and re-run, and a damaged file is said in one line and kept as it was."""
    from core.job_queue import JobQueue, PendingJob, queue_file

    queue_file().parent.mkdir(parents=True, exist_ok=True)
    for old in queue_file().parent.glob("queue.json*"):
        old.unlink()
    queue_file().write_bytes(data)
    q = JobQueue.load()
    for job in q.jobs:
        assert isinstance(job, PendingJob) and isinstance(job.project, Project) and isinstance(job.id, str)
        assert job.from_stage is None or 0 <= job.from_stage < len(job.project.stages)
        job.describe()
        reads_or_says(validate, job.project, kinds=(ProjectError,))
    if q.problem is not None:
        assert q.problem.startswith("queue.json") and "\n" not in q.problem
        assert queue_file().with_name("queue.json.damaged").read_bytes() == data
    again = JobQueue.load()  # the good jobs were saved at once: the next start says nothing
    assert again.problem is None  # (a job with no id gets a new one each time: compare the rest)
    assert [(j.from_stage, j.project.to_dict()) for j in again.jobs] == [(j.from_stage, j.project.to_dict()) for j in q.jobs]


# ---------------------------------------------------------------- model configs and checkpoints


def valid_index() -> dict:
    return {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"]}


CONFIGS = {"unet": {"sample_size": 16, "block_out_channels": [32, 64]}, "vae": {"block_out_channels": [16, 32, 64]}}


@given(mutated(valid_index()), mutated(CONFIGS["unet"]), mutated(CONFIGS["vae"]), st.binary(max_size=40))
def test_model_folder_json_takes_anything(tmp_path, index, unet, vae, junk):
    from core.models import ModelRef, _resolve_folder

    folder = tmp_path / "model"
    for name, cfg in (("unet", unet), ("vae", vae)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(cfg))
    (folder / "model_index.json").write_bytes(junk if len(junk) % 3 == 0 else json.dumps(index).encode())
    info = describe_folder(folder)  # never raises: an unknown model carries a note
    assert isinstance(info.native, int) and info.native > 0
    result = reads_or_says(read_model_index, folder)
    if isinstance(result, dict):
        reads_or_says(_resolve_folder, ModelRef(str(folder), "folder", str(folder)), folder, kinds=(ModelError,))
    from core.families import FAMILIES

    assert native_size(folder, FAMILIES["sdxl"]) > 0


def safetensors(header: object, length: int | None = None) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + b"\0" * 16


SDXL_HEADER = {"__metadata__": {"format": "pt"}, "model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16"},
               "conditioner.embedders.1.model.ln_final.weight": {"dtype": "F16"}, "first_stage_model.x": {}}


@given(st.one_of(damaged_bytes(safetensors(SDXL_HEADER)), mutated(SDXL_HEADER).map(safetensors),
                 st.integers(0, 2**64 - 1).map(lambda n: safetensors(SDXL_HEADER, n))))
def test_safetensors_headers_take_anything(tmp_path, data):
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    reads_or_says(checkpoint_keys, path)
    family, kind, note = describe_file(path)  # never raises: the note says why
    assert family is not None or note


def test_checked_helpers_bound_what_they_read(tmp_path):
    (tmp_path / "big.json").write_bytes(b"[" + b"1," * 600_000 + b"1]")
    with pytest.raises(ReadError, match="larger than 1 MiB"):
        checked.read_json_file(tmp_path / "big.json", cap=checked.MiB)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReadError, match="nested more than 64 levels deep"):
        checked.read_json_file(tmp_path / "deep.json")
    with pytest.raises(ReadError, match="out of range"):
        checked.integer(10**30, "steps")


def test_batch_file_lines_are_typed_like_projects(tmp_path):
    from core.cluster import read_batch

    base = Project(prompt="a cat", width=64, height=64, stages=[Stage("builtin:demo-base", steps=4)])
    path = tmp_path / "jobs.jsonl"
    for line, message in [('{"seed": "x"}', "line 1: seed must be an integer, not 'x'"),
                          ('{"project": 5}', "line 1: the project must be a table of fields, not 5"),
                          ("[1]", "line 1: each line is a JSON object")]:
        path.write_text(line + "\n")
        with pytest.raises(ProjectError) as info:
            read_batch(path, base)
        assert message in str(info.value) and "\n" not in str(info.value)
    path.write_text('{"seed": 5, "prompt": "a dog"}\n')
    (p,) = read_batch(path, base)
    assert (p.seed, p.prompt, p.stages) == (5, "a dog", base.stages)
