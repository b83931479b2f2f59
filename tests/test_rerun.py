"""Re-running a chain from a later stage: the stored output of the stages before it is
reused (from memory, or from the cache's safetensors after a restart), the result is bit
for bit the whole chain's, and a changed earlier stage makes the stored output stale."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import events as ev
from core.models import ModelCache
from core.project import Project, Stage
from core.stage_store import StageStore
from tests.engine_helpers import load, of, pixels, run_job
from tests.test_flow_ensemble import pair  # noqa: F401  (a fixture)

PROMPT = "a red circle on a blue background"


def chain(first, second, size=32, seed=11) -> Project:
    return Project(prompt=PROMPT, width=size, height=size, seed=seed, stages=[first, second])


def run_from(p, tmp_path, from_stage, store, models=None, sub="again"):
    from core.engine import OutputPlan, run

    return list(run(p, OutputPlan.in_dir(tmp_path / sub, "job"), models=models, from_stage=from_stage, store=store))


def test_pixel_chain_rerun_from_stage_two_is_bit_identical_and_skips_stage_one(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    p = chain(Stage(sd, steps=6), Stage(sd, steps=8, handoff="pixel", strength=0.5, seed=99))
    store = StageStore(tmp_path / "stages")
    full = of(run_job(p, tmp_path), ev.StageFinished)  # the default store: the test's own home
    first = of(run_from(p, tmp_path, None, store, sub="first"), ev.StageFinished)
    assert np.array_equal(pixels(first[1].image), pixels(full[1].image))

    events = run_from(p, tmp_path, 1, store)
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [True, False]
    assert {s.index for s in of(events, ev.Step)} == {1}, "stage 1 runs no step"
    assert not [n for n in of(events, ev.Notice) if "stale" in n.message]
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))
    assert np.array_equal(pixels(done[1].input_image), pixels(full[0].image))
    assert len(of(events, ev.JobFinished)[0].paths) == 2


def test_a_changed_earlier_stage_is_stale_and_runs_again(tiny_models, tmp_path):
    sd = str(tiny_models["sd"])
    store = StageStore(tmp_path / "stages")
    p = chain(Stage(sd, steps=6), Stage(sd, steps=8, handoff="pixel", strength=0.5))
    run_from(p, tmp_path, None, store, sub="first")
    p.stages[0].guidance = 2.0
    events = run_from(p, tmp_path, 1, store)
    notices = [n.message for n in of(events, ev.Notice)]
    assert any("stale" in m and "running from stage 1" in m for m in notices), notices
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [False, False]
    fresh = of(run_job(p, tmp_path), ev.StageFinished)
    assert np.array_equal(pixels(done[1].image), pixels(fresh[1].image))
    # Stage 2's own settings are not part of stage 1's key: a new strength reuses stage 1.
    p.stages[1].strength = 0.75
    again = of(run_from(p, tmp_path, 1, store, sub="third"), ev.StageFinished)
    assert again[0].reused


def test_latent_handoff_reuses_the_latents_from_the_cache_file(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = chain(Stage(base_dir, steps=6), Stage(ref_dir, steps=10, handoff="latent", strength=0.3))
    models = ModelCache()
    full = of(run_from(p, tmp_path, None, StageStore(tmp_path / "stages"), models, sub="first"), ev.StageFinished)
    assert full[0].preview and full[1].handoff == "latent"
    assert list((tmp_path / "stages").glob("*.safetensors")), "stored in the cache folder"
    # A new store over the same folder: nothing in memory, as after a restart.
    done = of(run_from(p, tmp_path, 1, StageStore(tmp_path / "stages"), models), ev.StageFinished)
    assert done[0].reused and not done[1].reused
    assert not done[0].preview, "stored once decoded, after the first job's final image (core.deferred_decode)"
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))


def test_sdxl_ensemble_rerun_reuses_the_noisy_latents(tiny_models, tmp_path):
    base_dir, ref_dir = str(tiny_models["sdxl"]), str(tiny_models["sdxl_refiner"])
    p = chain(Stage(base_dir, steps=10), Stage(ref_dir, steps=10, handoff="ensemble", switch_at=0.7))
    store, models = StageStore(tmp_path / "stages"), ModelCache()
    full = of(run_from(p, tmp_path, None, store, models, sub="first"), ev.StageFinished)
    done = of(run_from(p, tmp_path, 1, store, models), ev.StageFinished)
    assert done[0].reused
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))
    p.stages[1].switch_at = 0.8  # the base stops elsewhere: its stored output does not fit
    moved = run_from(p, tmp_path, 1, store, models, sub="moved")
    assert not of(moved, ev.StageFinished)[0].reused and of(moved, ev.Notice)


def test_flow_ensemble_rerun_reuses_latents_and_the_base_schedule(pair, tmp_path):  # noqa: F811
    base, turbo = pair
    p = chain(Stage(str(base), steps=6, guidance=0.0),
              Stage(str(turbo), steps=6, guidance=0.0, handoff="ensemble", switch_at=0.5, seed=5))
    store = StageStore(tmp_path / "stages")
    full = of(run_from(p, tmp_path, None, store, sub="first"), ev.StageFinished)
    done = of(run_from(p, tmp_path, 1, StageStore(tmp_path / "stages")), ev.StageFinished)
    assert done[0].reused
    assert np.array_equal(pixels(done[1].image), pixels(full[1].image))


def test_cli_run_from_stage_shows_reused_and_rejects_a_bad_stage(tiny_models, tmp_path, capsys):
    from core import project_file
    from core.cli import EXIT_USAGE, main

    sd = str(tiny_models["sd"])
    p = chain(Stage(sd, steps=4), Stage(sd, steps=4, handoff="pixel", strength=0.5))
    path = project_file.save(tmp_path / "cat.handoff", project_file.ProjectDocument(p))
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--from-stage", "2"]) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("stage 1"))
    assert "reused" in row
    a, b = (np.asarray(__import__("PIL.Image").Image.open(d / "cat-2-stage-2.png")) for d in (tmp_path / "a", tmp_path / "b"))
    assert np.array_equal(a, b)
    assert main(["run", str(path), "--from-stage", "5"]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1


def test_the_key_follows_the_model_files_and_earlier_stages_only(tiny_models, tmp_path):
    import shutil

    from core.models import Digests, parse_ref, resolve
    from core.stage_store import model_fingerprint

    copy = tmp_path / "sd-copy"
    shutil.copytree(tiny_models["sd"], copy)
    digests = Digests(tmp_path / "digests.json")
    same = model_fingerprint(resolve(parse_ref(str(copy))), digests)
    assert same == model_fingerprint(resolve(parse_ref(str(tiny_models["sd"]))), digests), "by content, not path"
    cfg = copy / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace("{", '{"steps_offset": 7, ', 1))
    assert model_fingerprint(resolve(parse_ref(str(copy))), digests) != same


# ---------------------------------------------------------------- every input that shapes an output


def rewrite_in_place(path, data: bytes | None = None, replace: bool = False) -> None:
    """New contents at the same size, in the same inode, with the old mtime set back (as a
    tool that restores timestamps leaves it): only the ctime and the bytes tell. `replace`:
    a new file renamed over it with the old mtime, as `rsync -t` does (a new inode)."""
    import os

    st = path.stat()
    if data is None:  # flip the last byte
        data = path.read_bytes()
        data = data[:-1] + bytes([data[-1] ^ 0xFF])
    assert len(data) == st.st_size
    if replace:
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, path)
        assert path.stat().st_ino != st.st_ino
    else:
        with open(path, "r+b") as f:
            f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def png(path, colour, size=(40, 40)):
    """An uncompressed PNG: a new picture of the same size has the same length in bytes."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (20, 20, 20))
    ImageDraw.Draw(im).polygon([(4, size[1] - 4), (size[0] // 2, 4), (size[0] - 4, size[1] - 4)], fill=colour)
    im.save(path, compress_level=0)
    return path


def live_controlnet(sd, dest):
    """The tiny ControlNet with a random conditioning embedding, so its control image matters."""
    import torch
    from diffusers import ControlNetModel

    from tests.tiny_adapters import build_controlnet

    build_controlnet(sd, dest)
    cn = ControlNetModel.from_pretrained(str(dest))
    torch.manual_seed(3)
    with torch.no_grad():
        for param in cn.controlnet_cond_embedding.parameters():
            param.normal_(0, 0.3)
    cn.save_pretrained(str(dest))
    return dest


@pytest.fixture
def adapted(tiny_models, tmp_path):
    """A two-stage SD project whose first stage has a LoRA, a ControlNet and an IP-Adapter,
    every file it reads in tmp_path (so a test may rewrite it), and the files by field."""
    import shutil

    from core.project import ControlNet, IPAdapter, Lora
    from tests.tiny_adapters import build_ip_adapter, lora_tensors, save_lora

    sd = tmp_path / "sd"
    shutil.copytree(tiny_models["sd"], sd)
    pipe = load(sd)
    lora = save_lora(lora_tensors(pipe, seed=1), tmp_path / "lora.safetensors")
    ip = build_ip_adapter(pipe, tmp_path / "ip")
    cn = live_controlnet(sd, tmp_path / "cn")
    first = Stage(str(sd), steps=4, loras=[Lora(str(lora), 0.8)],
                  controlnet=ControlNet(str(cn), str(png(tmp_path / "control.png", (240, 240, 240)))),
                  ip_adapters=[IPAdapter(str(ip), str(png(tmp_path / "ref.png", (250, 200, 10))))])
    p = chain(first, Stage(str(sd), steps=4, handoff="pixel", strength=0.5))
    files = {
        "Project.init_image": png(tmp_path / "init.png", (10, 200, 30)),
        "Stage.model": sd / "unet" / "diffusion_pytorch_model.safetensors",
        "Lora.ref": lora,
        "ControlNet.model": cn / "diffusion_pytorch_model.safetensors",
        "ControlNet.image": tmp_path / "control.png",
        "IPAdapter.model": ip,
        "IPAdapter.image": tmp_path / "ref.png",
        "IPAdapter.image_encoder": ip.parent / "image_encoder" / "model.safetensors",  # None: the one beside it
    }
    return p, files


# Fields that hold text the model reads, and values for fields with a fixed set of choices:
# with the file fields (the fixture's) these say how the test changes each str field.
TEXT = {"Project.prompt", "Project.negative_prompt", "Stage.prompt", "Stage.prompt_suffix", "Stage.negative_prompt"}
CHOICES = {"Project.dtype": "fp16", "Stage.handoff": "latent", "Stage.scheduler": "EulerDiscreteScheduler",
           "ControlNet.preprocessor": "none", "Stage.quantize": "fp8"}


def schema_leaves(cls=Project):
    """(Class.field, annotation) for every field of the recipe, into nested dataclasses."""
    import types
    import typing
    from dataclasses import fields, is_dataclass

    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kind = inner = hints[f.name]
        while typing.get_args(inner) and (typing.get_origin(inner) in (list, typing.Union)
                                          or isinstance(inner, types.UnionType)):
            inner = next(a for a in typing.get_args(inner) if a is not type(None))
        if is_dataclass(inner):
            yield from schema_leaves(inner)
        else:
            yield f"{cls.__name__}.{f.name}", kind


def changed(name, kind, value):
    """Another value of a field, by its type (a new field of a plain type needs no entry)."""
    args = set(typing_args(kind)) or {kind}
    if name in CHOICES:
        return CHOICES[name]
    if bool in args:
        return not value
    if int in args:
        return 5 if value is None else value + 8
    if float in args:
        return value + 0.125
    assert name in TEXT, f"{name}: say in TEXT or CHOICES (or the fixture's files) how it changes, or in " \
                         "core.stage_store.NOT_SHAPING why it cannot change an image"
    return (value or "") + " changed"


def typing_args(kind):
    import typing

    return [a for a in typing.get_args(kind) if a is not type(None)]


def key(project, models, position=1):
    from core.engine import _prefix_keys
    from core.models import parse_ref, resolve
    from core.planning import plan

    resolved = [resolve(parse_ref(s.model)) for _, s in project.enabled_stages()]
    plans = plan(project, resolved, lambda r: r.vae_fingerprint(models.digests))
    return _prefix_keys(project, plans, "cpu", models)(position)


OWNERS = {"Project": lambda p: p, "Stage": lambda p: p.stages[1], "Lora": lambda p: p.stages[0].loras[0],
          "ControlNet": lambda p: p.stages[0].controlnet, "IPAdapter": lambda p: p.stages[0].ip_adapters[0]}


def test_every_field_and_file_that_shapes_an_output_changes_its_key(adapted):
    """Walks the recipe's dataclasses: each field not named in NOT_SHAPING (with its reason)
    is changed in turn (a file in place, same size, its mtime set back) and the key moves."""
    from core.stage_store import CONTENTS, NOT_SHAPING

    from tests.test_model_upscalers import build_compact

    base, files = adapted
    base.init_image = str(files["Project.init_image"])
    files["Stage.upscaler"] = build_compact(files["Project.init_image"].parent / "upscaler.pth")
    base.stages[1].upscaler = str(files["Stage.upscaler"])  # a hires fix with a model
    # A transformer file is keyed by its contents (read only once the stage loads).
    files["Stage.transformer"] = files["Project.init_image"].parent / "transformer.gguf"
    files["Stage.transformer"].write_bytes(b"GGUF" + bytes(range(256)))
    base.stages[1].transformer = str(files["Stage.transformer"])
    models = ModelCache()
    leaves = dict(schema_leaves())
    assert set(NOT_SHAPING) <= set(leaves) and all(NOT_SHAPING.values())
    assert set(CONTENTS) == set(files) - {"Stage.model"}, "the store reads every file field's contents"
    tried = []
    for name, kind in leaves.items():
        if name in NOT_SHAPING:
            continue
        before = key(base, models)
        if name in files:
            rewrite_in_place(files[name])
            after = key(base, models)
        else:
            p = base.copy()
            owner, field_name = OWNERS[name.split(".")[0]](p), name.split(".")[1]
            setattr(owner, field_name, changed(name, kind, getattr(owner, field_name)))
            after = key(p, models)
        assert after != before, f"changing {name} leaves the stored output's key as it was"
        tried.append(name)
    assert len(tried) == len(leaves) - len(NOT_SHAPING) > 30
    # What cannot change an image leaves the key alone.
    p = base.copy()
    p.stages[0].name, p.memory_policy = "renamed", "sequential"
    assert key(p, models) == key(base, models)


def test_a_hub_reference_is_keyed_by_its_cached_file_and_else_by_its_name(adapted, tmp_path, monkeypatch):
    import hashlib

    from huggingface_hub import hf_hub_download

    from core.models import Digests
    from core.project import Lora
    from core.stage_store import recipe
    from tests.fake_hub import TINY_SD, serving_tiny_sd

    base, files = adapted
    data = files["Lora.ref"].read_bytes()
    lora = Lora(f"{TINY_SD}/loras/style.safetensors")
    with serving_tiny_sd(Path(base.stages[0].model), monkeypatch, tmp_path / "hub-cache",
                         extra={"loras/style.safetensors": data}) as hub:
        assert recipe(lora, Digests())["ref"]["contents"] is None, "not cached: the name stands alone"
        assert not [r for r in hub.requests if "style" in r.path], "a key never downloads"
        hf_hub_download(TINY_SD, "loras/style.safetensors")
        assert recipe(lora, Digests())["ref"]["contents"] == hashlib.sha256(data).hexdigest()


def rerun_after_rewrite(p, tmp_path, target, data=None, replace=False):
    """Run the chain, rewrite `target` in place, run from stage 2 with the same models and
    store; returns (the re-run's events, the first run's final, a fresh full run's final)."""
    models, store = ModelCache(), StageStore(tmp_path / "stages")
    first = of(run_from(p, tmp_path, None, store, models, sub="first"), ev.StageFinished)
    rewrite_in_place(target, data, replace)
    events = run_from(p, tmp_path, 1, store, models)
    fresh = of(run_from(p, tmp_path, None, StageStore(tmp_path / "fresh-stages"), ModelCache(), sub="fresh"),
               ev.StageFinished)
    return events, first[1].image, fresh[1].image


@pytest.mark.parametrize("what", ["lora", "lora replaced", "controlnet image", "controlnet weights",
                                  "ip-adapter weights"])
def test_an_adapter_file_changed_in_place_recomputes_its_stage(adapted, tmp_path, what):
    from tests.tiny_adapters import build_ip_adapter, lora_tensors, save_lora

    p, files = adapted
    first = p.stages[0]
    if what.startswith("lora"):
        first.controlnet, first.ip_adapters = None, []
        target = files["Lora.ref"]
        data = save_lora(lora_tensors(load(first.model), seed=2), tmp_path / "other.safetensors").read_bytes()
    elif what.startswith("controlnet"):
        first.loras, first.ip_adapters = [], []
        target = files["ControlNet.image" if what.endswith("image") else "ControlNet.model"]
        data = png(tmp_path / "other.png", (90, 250, 120)).read_bytes() if what.endswith("image") else None
    else:
        first.loras, first.controlnet = [], None
        target = files["IPAdapter.model"]
        data = build_ip_adapter(load(first.model), tmp_path / "other-ip", seed=5).read_bytes()
    # A LoRA replaced rsync-style is a new file the loaded pipeline must load again (one
    # rewritten in place reaches it anyway: its tensors map the file).
    events, before, fresh = rerun_after_rewrite(p, tmp_path, target, data, replace=what == "lora replaced")
    done = of(events, ev.StageFinished)
    assert [d.reused for d in done] == [False, False], f"the {what} changed: stage 1 runs again"
    assert any("stale" in n.message for n in of(events, ev.Notice))
    assert not np.array_equal(pixels(fresh), pixels(before)), f"the {what} shapes the image"
    assert np.array_equal(pixels(done[1].image), pixels(fresh))
