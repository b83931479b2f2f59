"""Bounds checked before any work starts, in core (the window and the command line both
get them): steps, sizes and areas, memory, image pixels, zip entries, the output
location, and prompts longer than the text encoder reads."""
from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from core import events as ev
from core import project_file
from core.cli import EXIT_USAGE, main
from core.errors import ProjectError, ReadError
from core.project import MAX_SIDE, MAX_STEPS, Project, Stage, validate
from tests.engine_helpers import of, run_job


def problems(project: Project, **kw) -> str:
    with pytest.raises(ProjectError) as info:
        validate(project, **kw)
    return " | ".join(info.value.problems)


def demo(**kw) -> Project:
    kw = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "seed": 1, **kw}
    return Project(stages=[Stage("builtin:demo-base", steps=2)], **kw)


def cli(capsys, *args) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("handoff:")]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- the project's numbers


def test_steps_sides_areas_and_stage_count_are_bounded():
    p = demo()
    p.stages[0].steps = MAX_STEPS + 1
    assert f"{MAX_STEPS + 1} steps are more than {MAX_STEPS}" in problems(p)
    assert f"each side must be at most {MAX_SIDE} px" in problems(demo(width=100_000, height=100_000))
    # An upscale past the side limit is caught at the stage that would work at it.
    up = demo(width=4096, height=4096)
    up.stages.append(Stage("m", handoff="pixel", strength=0.5, steps=4, upscale=4))
    assert f"stage 2 (m) would work at 16384x16384: each side must be at most {MAX_SIDE}" in problems(up)
    # The area a family may work at: 64 times what its model was made for.
    text = problems(demo(width=1024, height=1024), stage_natives={0: 64})
    assert "would work at 1024x1024 (1.0 MP), more than 64 times the area its model was made for (64x64)" in text
    validate(demo(width=512, height=512), stage_natives={0: 64})
    many = demo()
    many.stages *= 33
    assert "33 stages are more than 32" in problems(many)
    nan = demo()
    nan.stages[0].guidance = float("nan")
    assert "guidance must be a number of 0 or more, not nan" in problems(nan)


def test_cli_refuses_out_of_bounds_before_any_work(tmp_path, capsys):
    out = tmp_path / "a.png"
    cases = [
        (["--size", "64x64", "--steps", "1000000000"], "1000000000 steps are more than 1000"),
        (["--size", "100000x100000"], "size 100000x100000 is too large: each side must be at most 8192 px"),
        (["--size", "1024x1024"], "more than 64 times the area its model was made for (64x64)"),
    ]
    for extra, reason in cases:
        code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", *extra, "--out", out)
        assert code == EXIT_USAGE and len(lines) == 1 and reason in lines[0], (extra, lines)
    assert not out.exists()


def test_cli_refuses_an_unwritable_output_up_front(tmp_path, capsys):
    folder = tmp_path / "outs"
    folder.mkdir()
    code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", "--size", "64x64", "--out", folder)
    assert code == EXIT_USAGE and lines == [f"handoff: --out {folder} is a folder: name the image file to write "
                                            f"(e.g. {folder / 'image.png'})"]
    (tmp_path / "file").write_text("a file")
    code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", "--out", tmp_path / "file" / "a.png")
    assert code == EXIT_USAGE and len(lines) == 1 and "file is a file, not a folder" in lines[0], lines
    code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", "--out", tmp_path / "file" / "b" / "a.png")
    assert code == EXIT_USAGE and len(lines) == 1 and "cannot write to" in lines[0], lines
    project = project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(demo()))
    code, lines = cli(capsys, "run", project, "--out", tmp_path / "file")
    assert code == EXIT_USAGE and len(lines) == 1 and "is a file, not a folder" in lines[0], lines


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no file can be written into: sysfs refuses even root; elsewhere a folder
    without write permission (which root ignores, so then there is none to test)."""
    from core.atomic import writable_problem

    if Path("/sys").is_dir() and writable_problem(Path("/sys")):
        yield Path("/sys")
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if not writable_problem(folder):
        pytest.skip("this user writes into read-only folders")
    yield folder
    folder.chmod(0o755)


def test_a_read_only_folder_is_refused_before_the_job(read_only_folder, tmp_path, capsys):
    from core.engine import OutputPlan, run

    code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", "--out", read_only_folder / "a.png")
    assert code == EXIT_USAGE and len(lines) == 1 and f"cannot write to {read_only_folder}" in lines[0], lines
    events = list(run(demo(), OutputPlan.in_dir(read_only_folder, "job")))
    assert [type(e) for e in events] == [ev.JobFailed] and "cannot write to" in events[0].message


def test_engine_checks_the_output_before_resolving_anything(tmp_path):
    from core.engine import OutputPlan, run

    (tmp_path / "file").write_text("a file")
    events = list(run(demo(), OutputPlan.in_dir(tmp_path / "file" / "sub", "job")))
    assert [type(e) for e in events] == [ev.JobFailed] and "cannot write to" in events[0].message
    (tmp_path / "dir.png").mkdir()
    events = list(run(demo(), OutputPlan.to_file(tmp_path / "dir.png")))
    assert [type(e) for e in events] == [ev.JobFailed] and "is a folder" in events[0].message


# ---------------------------------------------------------------- memory


def test_a_size_that_cannot_fit_is_refused_with_the_numbers_before_loading(tmp_path, monkeypatch):
    from core import memory_check

    monkeypatch.setattr(memory_check, "available_bytes", lambda device: (8 * 2**20, "available RAM"))
    events = run_job(demo(width=512, height=512), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    # The demo VAE: 16 channels at full resolution, fp32 on the CPU, at least 4 live copies: 64 MiB;
    # in its 64 px tiles (core.memory_check.tiled_decode_bytes) 13 MiB, which does not fit either.
    assert failed and ("stage 1 (builtin:demo-base) at 512x512: decoding the image needs about 64 MiB (fp32, "
                       "13 MiB in tiles), more than the 8 MiB of available RAM: lower the size") in failed[0].message, failed
    assert not [e for e in of(events, ev.Loading) if e.what.startswith("loading")], "refused before any load"


def test_the_estimate_reads_the_vae_config():
    from core import demo as demo_models
    from core.memory_check import decoder

    assert decoder(demo_models.ensure_model("demo-base")) == (16, False)
    assert decoder(None) == (128, False)


# ---------------------------------------------------------------- images


def test_an_init_image_too_large_is_refused_from_its_header(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    code, lines = cli(capsys, "generate", "x", "--model", "builtin:demo-base", "--init-image", bomb,
                      "--out", tmp_path / "o.png")
    assert code == EXIT_USAGE and len(lines) == 1, lines
    assert f"init image {bomb} has 400 MP, more than the 67 MP (8192x8192) Handoff reads" in lines[0]
    from core.engine import load_init_image

    with pytest.raises(ReadError, match="400 MP"):
        load_init_image(demo(init_image=str(bomb)))
    with pytest.raises(ReadError, match="400 MP"):
        project_file.save(tmp_path / "p.handoff", project_file.ProjectDocument(demo(init_image=str(bomb))))
    # Past PIL's own bomb limit the header is refused as well, never PIL's exception.
    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(10_000, 10_000))  # under PIL's limit, over Handoff's: the size is named
    with pytest.raises(ReadError, match=r"^big.png is 10000x10000 \(100 MP\), more than the 67 MP"):
        project_file.load(big)


def test_a_zip_entry_is_read_with_a_cap_whatever_it_expands_to(tmp_path, monkeypatch):
    from core import paths

    monkeypatch.setattr(project_file, "MAX_IMAGE_BYTES", 4 * 2**20)
    doc = demo(init_image="images/init.png").to_dict()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("images/init.png", "w") as f:  # 64 MiB of zeros: 64 kB in the archive
            for _ in range(16):
                f.write(b"\0" * (4 << 20))
        z.writestr("project.json", json.dumps({"format": "handoff-project", "project": doc}))
    path = tmp_path / "bomb.handoff"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 2**20
    with pytest.raises(ReadError, match=r"^bomb.handoff: entry 'images/init.png' is 64 MiB, more than the 4 MiB"):
        project_file.load(path)
    assert not (paths.cache_dir() / "project-images").exists(), "nothing was written into the cache"

    # A declared size that lies (smaller than the data) does not let more through: the
    # entry is read in bounded chunks and its checksum fails.
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        z.writestr("images/init.png", b"\0" * 6 * 2**20)
        z.writestr("project.json", json.dumps({"format": "handoff-project", "project": doc}))
    data = bytearray(stored.getvalue())
    central = data.index(b"PK\x01\x02")
    data[22:26] = data[central + 24:central + 28] = struct.pack("<I", 100)  # uncompressed size: 100 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ReadError, match=r"^bomb.handoff: entry 'images/init.png' is damaged"):
        project_file.load(path)
    from core.checked import read_capped

    with pytest.raises(ReadError, match="larger than 4 MiB"):
        read_capped(io.BytesIO(b"\0" * 6 * 2**20), 4 * 2**20, "a stream")


# ---------------------------------------------------------------- prompts


def test_a_prompt_past_the_token_limit_gets_a_notice(tmp_path):
    long = demo(prompt="a red circle on a blue background with sharp edges and a smooth gradient, "
                       "bright detailed high quality texture")
    events = run_job(long, tmp_path)
    notes = [e.message for e in of(events, ev.Notice) if "longer than the text encoder reads" in e.message]
    assert len(notes) == 1, [e.message for e in of(events, ev.Notice)]
    assert notes[0].startswith("stage 1: the prompt is longer than the text encoder reads (tokenizer reads 16 of its ")
    assert "tokenizer_2 reads 16" in notes[0] and "the rest is ignored" in notes[0]
    events = run_job(demo(), tmp_path)
    assert not [e for e in of(events, ev.Notice) if "longer than" in e.message]


def test_token_limits_follow_the_pipeline():
    from core.prompt_tokens import token_limit

    class CLIPTokenizerFast:
        model_max_length = 77

    class T5TokenizerFast:
        model_max_length = 10**30

    class Pipe:
        def __call__(self, prompt, max_sequence_length: int = 256):
            pass

    assert token_limit(Pipe(), CLIPTokenizerFast()) == 77
    assert token_limit(Pipe(), T5TokenizerFast()) == 256
    assert token_limit(object(), T5TokenizerFast()) is None


LONG = ("a red circle on a blue background with a small green star and a big yellow square "
        "on a striped gradient")


def test_a_prompt_is_counted_before_the_run_as_the_runs_tokenizer_cuts_it():
    from transformers import CLIPTokenizer

    from core import demo as demo_models
    from core.defaults import default_project
    from core.prompt_tokens import prompt_cut, stage_cuts

    # The demo refiner's CLIP reads 16 tokens: what the run's own tokenizer keeps, and the rest.
    run = CLIPTokenizer.from_pretrained(str(demo_models.DEMO_DIR / "demo-refiner" / "tokenizer_2"))
    kept = run.decode(run(LONG, truncation=True, max_length=16)["input_ids"], skip_special_tokens=True)
    cut = prompt_cut(demo_models.REFINER, "prompt", LONG)
    assert (cut.tokens, cut.limit, cut.encoder) == (len(run(LONG)["input_ids"]), 16, "CLIP")
    assert f"{kept} {cut.cut}" == LONG and cut.cut.startswith("big yellow square")
    assert cut.notice() == "prompt is 23 tokens; CLIP reads 16: “big yellow square on a striped gradient” are cut"
    assert prompt_cut(demo_models.REFINER, "prompt", "a red circle") is None
    # A stage's effective prompt: the project's plus its detail terms, which a refiner's
    # short window cuts first.
    project = default_project()
    project.prompt = "a big red circle on a dark blue background with a green star"  # 13 tokens
    base, refiner = project.stages
    assert stage_cuts(project, base) == []
    (refined,) = stage_cuts(project, refiner)
    assert refined.what == "prompt" and refined.cut == "sharp detailed texture"
    project.negative_prompt = LONG
    assert [c.what for c in stage_cuts(project, base)] == ["negative prompt"]


def test_a_clip_tokenizer_from_vocab_and_merges_counts_as_transformers_does(tmp_path):
    from transformers import CLIPTokenizer

    from core.local_tokenizers import clip_vocab
    from core.prompt_tokens import _counter, prompt_cut

    model = tmp_path / "model"
    folder = model / "tokenizer"
    folder.mkdir(parents=True)
    vocab, merges = clip_vocab(["circle", "square", "background", "blue"])
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 12, "tokenizer_class": "CLIPTokenizer"}))
    (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                        "tokenizer": ["transformers", "CLIPTokenizer"]}))
    prompt = "A blue  circle, on a square background (of 12 greys)"
    run = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)
    cut = prompt_cut(str(model), "prompt", prompt)
    assert cut.tokens == len(run(prompt)["input_ids"]) and cut.limit == 12
    kept = run.decode(run(prompt, truncation=True, max_length=12)["input_ids"], skip_special_tokens=True)
    assert kept == "a blue circle , on a square background (" and cut.cut == "of 12 greys)"
    # Another model with the same vocabulary (SDXL's base and refiner) shares the tokenizer read once.
    shutil.copytree(model, tmp_path / "refiner")
    assert _counter(str(tmp_path / "refiner"))[0] is _counter(str(model))[0]
    # A model that also has a T5 encoder reads the rest there: no notice.
    sd3 = tmp_path / "sd3"
    shutil.copytree(folder, sd3 / "tokenizer")
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline",
                                                      "tokenizer": ["transformers", "CLIPTokenizer"],
                                                      "tokenizer_3": ["transformers", "T5TokenizerFast"]}))
    assert prompt_cut(str(sd3), "prompt", prompt) is None


def test_counting_a_prompt_before_the_run_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys\nfrom core.prompt_tokens import prompt_cut\n"
            f"assert prompt_cut('builtin:demo-refiner', 'prompt', {LONG!r}) is not None\n"
            "heavy = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
