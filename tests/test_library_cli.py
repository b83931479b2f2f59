"""`main.py library add/list/remove/where`: the model library from the command line, shared
with the window through the settings file; and the missing-model hint's file name."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import model_library as ml
from core import paths
from core.interop.model_lookup import ModelLookup, legacy_hash
from core.cli import main

ROOT = Path(__file__).resolve().parent.parent
SD15_KEYS = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x",
             "first_stage_model.decoder.x"]


def _tensors(path: Path, keys: list[str], rows: int = 2) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.full((rows, 2), i, dtype=np.float32) for i, k in enumerate(keys)}, str(path))
    return path


def cli(capsys, *args) -> tuple[int, list[str], str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture
def comfy(tmp_path) -> Path:
    root = tmp_path / "ComfyUI" / "models"
    _tensors(root / "checkpoints" / "sd15.safetensors", SD15_KEYS)
    _tensors(root / "loras" / "detail.safetensors", ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])
    (root / "upscale_models").mkdir()
    (root / "upscale_models" / "4x-UltraSharp.pth").write_bytes(b"upscaler")
    (root / "unet").mkdir()
    (root / "unet" / "flux1-dev-Q4_K_S.gguf").write_bytes(b"GGUF")
    return root


@pytest.fixture
def a1111(tmp_path) -> Path:
    webui = tmp_path / "stable-diffusion-webui"
    # Past 0x110000 bytes, so the old 8-hex hash reads real bytes.
    _tensors(webui / "models" / "Stable-diffusion" / "dreamshaper_8.safetensors", SD15_KEYS, rows=0x24000)
    return webui


@pytest.fixture
def invoke(tmp_path) -> Path:
    root = tmp_path / "invokeai"
    root.mkdir()
    (root / "invokeai.yaml").write_text("schema_version: 4.0.2\n")
    _tensors(root / "models" / "sdxl" / "main" / "juggernautXL.safetensors", SD15_KEYS)
    _tensors(root / "models" / "sd-1" / "lora" / "style.safetensors",
             ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])
    return root


def test_add_list_and_remove_each_tool_folder(capsys, tmp_path, comfy, a1111, invoke):
    for folder, tool in ((comfy.parent, "ComfyUI folder"), (a1111, "Automatic1111 folder"), (invoke, "InvokeAI folder")):
        code, _out, err = cli(capsys, "library", "add", folder)
        assert code == 0 and tool in err, err
    code, lines, _ = cli(capsys, "library", "list")
    rows = {tuple(line.split("\t")) for line in lines}
    assert all(len(line.split("\t")) == 3 for line in lines)
    mine = {(k, n, Path(p).name) for k, n, p in rows if p.startswith(str(tmp_path.resolve()))}
    assert mine == {("checkpoint", "sd15", "sd15.safetensors"), ("lora", "detail", "detail.safetensors"),
                    ("upscaler", "4x-UltraSharp", "4x-UltraSharp.pth"),
                    ("gguf", "flux1-dev-Q4_K_S", "flux1-dev-Q4_K_S.gguf"),
                    ("checkpoint", "dreamshaper_8", "dreamshaper_8.safetensors"),
                    ("checkpoint", "juggernautXL", "juggernautXL.safetensors"), ("lora", "style", "style.safetensors")}
    code, lines, _ = cli(capsys, "library", "list", "--kind", "lora")
    assert code == 0 and sorted(line.split("\t")[1] for line in lines) == ["demo lora", "detail", "style"]
    code, lines, _ = cli(capsys, "library", "list", "--kind", "gguf")
    assert [line.split("\t")[:2] for line in lines] == [["gguf", "flux1-dev-Q4_K_S"]]
    # Kept in the settings file's "models" section: what the window's Model Library reads.
    stored = json.loads(paths.settings_file().read_text())["models"]
    assert len(stored["folders"]) == 3
    assert "sd15" in {e.name for e in ml.ModelLibrary.load().all()}
    code, _out, err = cli(capsys, "library", "remove", comfy.parent)
    assert code == 0 and "4 entries" in err
    names = {line.split("\t")[1] for line in cli(capsys, "library", "list")[1]}
    assert "sd15" not in names and {"dreamshaper_8", "juggernautXL", "style"} <= names
    assert len(ml.ModelLibrary.load().folders) == 2


def test_bad_folders_are_refused_with_one_line(capsys, tmp_path):
    plain = tmp_path / "holiday photos"
    plain.mkdir()
    (plain / "beach.jpg").write_bytes(b"jpeg")
    for folder in (plain, tmp_path / "nowhere"):
        code, out, err = cli(capsys, "library", "add", folder)
        assert code == 2 and out == [] and err.count("\n") == 1 and str(folder) in err, err
    assert ml.ModelLibrary.load().folders == []
    code, _out, err = cli(capsys, "library", "remove", plain)
    assert code == 2 and err.count("\n") == 1 and "not a folder of the library" in err


def test_where_resolves_names_and_both_a1111_hashes(capsys, a1111):
    assert cli(capsys, "library", "add", a1111)[0] == 0
    ckpt = a1111 / "models" / "Stable-diffusion" / "dreamshaper_8.safetensors"
    autov2 = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:10]
    for name in ("dreamshaper_8", "dreamshaper_8.safetensors", autov2, legacy_hash(ckpt), f"dreamshaper [{autov2}]"):
        code, lines, err = cli(capsys, "library", "where", name)
        assert (code, lines) == (0, [str(ckpt.resolve())]), (name, err)
    code, lines, err = cli(capsys, "library", "where", "0123456789")
    assert code == 1 and lines == [] and err.count("\n") == 1


def test_library_is_a_cli_command_of_main_py(tmp_path):
    import main as entry

    assert "library" in entry.CLI_COMMANDS  # else `main.py library ...` would open the window
    result = subprocess.run([sys.executable, "main.py", "library", "add", str(tmp_path / "nowhere")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HANDOFF_HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 2 and result.stderr.startswith("handoff: ") and result.stderr.count("\n") == 1


def test_the_window_adds_folders_to_the_same_list(comfy):
    # The window's Model Library calls the same ModelLibrary.add_folder: the CLI then lists and removes it.
    lib = ml.ModelLibrary.load()
    tools, found, added = lib.add_folder(comfy)
    lib.save()
    assert tools == ["comfyui"] and added == len(found) == 4
    assert ml.ModelLibrary.load().folders == [str(comfy.resolve())]


# Every models/ subfolder Handoff reads something in (core.model_library.COMFYUI_SUBFOLDERS).
@pytest.mark.parametrize("sub", ["checkpoints", "diffusers", "diffusion_models", "unet", "loras", "controlnet",
                                 "ipadapter", "clip_vision", "clip", "text_encoders", "upscale_models"])
def test_a_models_folder_holding_any_one_folder_handoff_reads_is_comfyuis(capsys, tmp_path, sub):
    # A folder kept apart for ComfyUI (extra_model_paths.yaml) may hold one kind of model only.
    shared = tmp_path / "shared"
    (shared / sub).mkdir(parents=True)
    code, out, err = cli(capsys, "library", "add", shared)
    assert (code, out) == (0, []) and "ComfyUI folder: 0 file(s) found" in err, err
    assert ml.ModelLibrary.load().folders == [str(shared.resolve())]


def test_a_folder_of_what_handoff_never_reads_is_still_refused(capsys, tmp_path):
    shared = tmp_path / "shared"
    (shared / "vae").mkdir(parents=True)  # VAEs come with their model; Handoff reads none alone
    code, _out, err = cli(capsys, "library", "add", shared)
    assert code == 2 and "clip_vision" in err and "upscale_models" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name, hinted", [
    ("v2-1_768-ema-pruned.ckpt", "v2-1_768-ema-pruned.ckpt"),
    ("SDXL\\juggernaut.safetensors", "SDXL\\juggernaut.safetensors"),
    ("flux1-dev-Q4_K_S.gguf", "flux1-dev-Q4_K_S.gguf"),
    ("sd_xl_turbo_1.0", "sd_xl_turbo_1.0.safetensors"),  # A1111 writes no ending: '.0' is not one
])
def test_a_missing_model_hint_names_the_file_as_the_other_tool_did(name, hinted):
    notes: list[str] = []
    assert ModelLookup(candidates=[]).resolve(name, None, "stage 1", notes) == name
    assert len(notes) == 1 and f"add {hinted} to the library" in notes[0], notes
