"""The model library: ComfyUI scans, the Hugging Face cache listing, the stored list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import model_library as ml
from core.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent


def _tensors(path: Path, keys: list[str]) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros((2, 2), dtype=np.float32) for k in keys}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests import tiny_pipelines as tp

    return tp.build_sd(tmp_path_factory.mktemp("lib-sd") / "sd", seed=0)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_sd) -> Path:
    """A ComfyUI models folder: a real (exported) SD checkpoint, an SDXL-shaped one, a LoRA,
    a damaged file, denoiser-only files and a diffusers folder."""
    from tests.ldm_export import copy_configs, export_ldm

    root = tmp_path_factory.mktemp("ComfyUI") / "models"
    export_ldm(tiny_sd, root / "checkpoints" / "tiny-sd15.safetensors")
    _tensors(root / "checkpoints" / "xl" / "juggernaut.safetensors",
             ["conditioner.embedders.0.transformer.text_model.x", "conditioner.embedders.1.model.x",
              "model.diffusion_model.input_blocks.0.0.weight"])
    _tensors(root / "checkpoints" / "detail-lora.safetensors", ["lora_unet_down_blocks_0.alpha"])
    (root / "checkpoints" / "broken.safetensors").write_bytes(b"\x00not a safetensors file")
    (root / "checkpoints" / "old.ckpt").write_bytes(b"pickle")
    _tensors(root / "checkpoints" / "flux-unet-only.safetensors", ["model.diffusion_model.double_blocks.0.x"])
    _tensors(root / "checkpoints" / "flux-aio.safetensors", ["model.diffusion_model.double_blocks.0.x", "vae.decoder.x",
                                                            "text_encoders.clip_l.x"])
    _tensors(root / "diffusion_models" / "flux1-dev.safetensors", ["double_blocks.0.img_attn.qkv.weight"])
    _tensors(root / "unet" / "mystery.safetensors", ["layers.0.attention.weight"])
    copy_configs(tiny_sd, root / "diffusers" / "tiny-sd")
    (root / "diffusers" / "not-a-model").mkdir()
    return root


def test_scan_comfyui_tells_each_family_without_loading(comfy):
    entries = {Path(e.ref).name: e for e in ml.scan_comfyui(comfy)}
    assert set(entries) == {"tiny-sd15.safetensors", "juggernaut.safetensors", "detail-lora.safetensors",
                            "broken.safetensors", "flux1-dev.safetensors", "mystery.safetensors", "tiny-sd",
                            "flux-unet-only.safetensors", "flux-aio.safetensors"}
    sd = entries["tiny-sd15.safetensors"]
    assert (sd.family, sd.kind, sd.source, sd.name, sd.note) == ("sd", ml.PIPELINE, "comfyui", "tiny-sd15", "")
    assert sd.usable and sd.positions == "base and refine" and Path(sd.ref).is_absolute()
    assert entries["juggernaut.safetensors"].family == "sdxl"
    lora = entries["detail-lora.safetensors"]
    assert lora.family is None and not lora.usable and "LoRAs" in lora.note
    assert "not a readable .safetensors file" in entries["broken.safetensors"].note
    flux = entries["flux1-dev.safetensors"]
    assert (flux.family, flux.kind) == ("flux", ml.DENOISER) and not flux.usable
    assert "needs a base pipeline" in flux.note and "needs a base pipeline" in flux.positions
    mystery = entries["mystery.safetensors"]
    assert mystery.family is None and mystery.kind == ml.DENOISER and "cannot tell" in mystery.note
    assert entries["tiny-sd"].family == "sd" and entries["tiny-sd"].usable
    # In checkpoints/ too, a file with no VAE or text encoder is a denoiser alone.
    only = entries["flux-unet-only.safetensors"]
    assert (only.family, only.kind, only.usable) == ("flux", ml.DENOISER, False)
    aio = entries["flux-aio.safetensors"]
    assert (aio.family, aio.kind, aio.usable) == ("flux", ml.PIPELINE, True)


def test_scan_accepts_the_comfyui_folder_itself(comfy):
    assert len(ml.scan_comfyui(comfy.parent)) == len(ml.scan_comfyui(comfy))
    with pytest.raises(FileNotFoundError):
        ml.scan_comfyui(comfy / "nowhere")


def test_scanning_imports_no_torch(comfy):
    code = ("import sys; from core import model_library as ml\n"
            f"ml.scan_comfyui({str(comfy)!r}); ml.cached_hub_models()\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_for_folder_file_hub_and_nothing(tiny_sd, comfy):
    folder = ml.entry_for(str(tiny_sd))
    assert (folder.family, folder.name, folder.source) == ("sd", "sd", "user")
    ckpt = ml.entry_for(str(comfy / "checkpoints" / "tiny-sd15.safetensors"))
    assert ckpt.family == "sd" and ckpt.ref_kind == "file"
    flux2 = ml.entry_for("black-forest-labs/FLUX.2-dev")  # not cached: the presets know it
    assert flux2.family == "flux2" and flux2.ref_kind == "hub" and flux2.positions == "base and refine"
    unknown = ml.entry_for("someone/some-model")
    assert unknown.family is None and unknown.usable and "not downloaded" in unknown.note
    with pytest.raises(ModelError):
        ml.entry_for(str(comfy / "checkpoints" / "gone.safetensors"))
    from core.model_info import info_for

    assert info_for("stabilityai/stable-diffusion-xl-refiner-1.0").family == "sdxl-refiner"
    assert info_for("").family is None and info_for("not a ref at all").family is None


def test_library_is_stored_beside_other_settings(handoff_home, tiny_sd):
    from core import paths

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text(json.dumps({"gui": {"recent_files": ["a.handoff"]}}))
    lib = ml.ModelLibrary.load()
    assert lib.entries == [] and any(e.source == "preset" for e in lib.all())
    assert lib.add(ml.entry_for(str(tiny_sd), name="My SD"))
    assert not lib.add(ml.entry_for(str(tiny_sd), name="Renamed"))  # same reference: updated
    assert lib.remove("black-forest-labs/FLUX.2-dev")  # a preset's model: hidden
    lib.save()
    data = json.loads(paths.settings_file().read_text())
    assert data["gui"] == {"recent_files": ["a.handoff"]}
    again = ml.ModelLibrary.load()
    assert [(e.name, e.family) for e in again.entries] == [("Renamed", "sd")]
    assert again.find("black-forest-labs/FLUX.2-dev") is None
    assert again.find("black-forest-labs/FLUX.1-dev").family == "flux"
    again.add(ml.LibraryEntry("FLUX.2", "black-forest-labs/FLUX.2-dev", "user", "flux2"))
    assert again.find("black-forest-labs/FLUX.2-dev").source == "user"


def test_damaged_settings_give_an_empty_library(handoff_home):
    from core import paths, settings_file

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text("{not json")
    assert ml.ModelLibrary.load().entries == []
    paths.settings_file().write_text(json.dumps({"models": {"entries": [{"bogus": 1}, {"name": "x", "ref": "a/b",
                                                                                      "source": "user"}]}}))
    assert [e.ref for e in ml.ModelLibrary.load().entries] == ["a/b"]
    said = settings_file.take_problem()
    assert "name, ref, source are missing" in said and "MISSING" not in said, said


def test_cached_hub_models_list_what_loads_offline(tiny_sd, tmp_path, monkeypatch):
    from core.downloads import download_model
    from tests.fake_hub import TINY_SD, serving_tiny_sd

    cache = tmp_path / "hf-cache"
    with serving_tiny_sd(tiny_sd, monkeypatch, cache):
        assert ml.cached_hub_models() == [] and ml.cached_snapshot(TINY_SD) is None
        folder = download_model(TINY_SD)
    listed = ml.cached_hub_models()
    assert [(c.repo_id, c.family, c.complete) for c in listed] == [(TINY_SD, "sd", True)]
    assert listed[0].folder == folder and listed[0].size_bytes > 0
    assert ml.cached_snapshot(TINY_SD) == folder
    entry = ml.entry_for(TINY_SD)
    assert entry.family == "sd" and ml.availability(entry) == (True, "cached: loads offline")
    # A component missing (an interrupted download): listed, but not offline-ready.
    for f in (folder / "vae").iterdir():
        if f.suffix == ".safetensors":
            f.unlink()
    assert ml.cached_snapshot(TINY_SD) is None
    assert not ml.cached_hub_models()[0].complete


def test_scan_lists_adapters_with_their_families_and_offers_them_by_family(tmp_path):
    import json

    root = tmp_path / "ComfyUI" / "models"
    _tensors(root / "loras" / "xl-style.safetensors", ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])
    from safetensors.numpy import save_file

    save_file({"lora_unet_x.lora_down.weight": np.zeros((2, 2), dtype=np.float32)},
              str(root / "loras" / "sd-style.safetensors"), metadata={"ss_base_model_version": "sd_v1"})
    save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": np.zeros((2, 2), dtype=np.float32)},
              str(root / "loras" / "flux-style.safetensors"))
    _tensors(root / "loras" / "not-a-lora.safetensors", ["model.diffusion_model.input_blocks.0.0.weight"])
    cn = root / "controlnet" / "sdxl-canny"
    cn.mkdir(parents=True)
    (cn / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "addition_embed_type": "text_time"}))
    _tensors(cn / "diffusion_pytorch_model.safetensors", ["conv_in.weight"])
    _tensors(root / "controlnet" / "control_canny.safetensors", ["input_hint_block.0.weight"])
    _tensors(root / "ipadapter" / "ip-adapter_sd15.safetensors", ["image_proj.proj.weight"])
    entries = {e.name: e for e in ml.scan_adapters(root)}
    assert set(entries) == {"xl-style", "sd-style", "flux-style", "not-a-lora", "sdxl-canny", "control_canny",
                            "ip-adapter_sd15"}
    assert (entries["sd-style"].kind, entries["sd-style"].family) == ("lora", "sd")
    assert entries["flux-style"].family == "flux" and entries["xl-style"].family is None
    assert "holds no LoRA tensors" in entries["not-a-lora"].note
    assert (entries["sdxl-canny"].kind, entries["sdxl-canny"].family) == ("controlnet", "sdxl")
    assert "single-file ControlNet" in entries["control_canny"].note
    assert not any(e.usable for e in entries.values())  # adapters are never a stage's model
    chroma = {e.name for e in ml.adapters_for(list(entries.values()), "lora", "chroma")}
    assert "flux-style" in chroma and "sd-style" not in chroma  # Flux.1 LoRAs load on Chroma
    assert {e.name for e in ml.adapters_for(list(entries.values()), "controlnet", "sd")} == {"control_canny"}


def test_hub_adapters_say_whether_they_are_in_the_cache(tmp_path):
    """A Hub LoRA file (owner/repo/file.safetensors) and a Hub ControlNet (a repo with a
    config.json, no model_index.json) read as not downloaded, then as offline-ready once
    the Hugging Face cache holds them (a fresh repo name: the session's cache is shared)."""
    from huggingface_hub import constants

    lora = ml.LibraryEntry("style", f"tester/lora-{tmp_path.name}/style.safetensors", "hf-cache", None, "lora")
    cn = ml.LibraryEntry("canny", f"tester/cn-{tmp_path.name}", "hf-cache", "sdxl", "controlnet")
    assert ml.availability(lora) == ml.availability(cn) == (False, "not downloaded: downloads on first use")
    for repo, name in ((f"tester/lora-{tmp_path.name}", "style.safetensors"), (cn.ref, "config.json")):
        root = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text("0" * 40)
        (root / "snapshots" / ("0" * 40)).mkdir(parents=True)
        (root / "snapshots" / ("0" * 40) / name).write_text("{}")
    assert ml.availability(lora) == ml.availability(cn) == (True, "cached: loads offline")
