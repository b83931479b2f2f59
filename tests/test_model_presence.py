"""A stage's model that is not here and cannot be downloaded is found before the run, with
what to do about it (core.model_presence); one that is here, or downloads on first use, is
no problem."""
from __future__ import annotations

from core import demo
from core.model_presence import absent_model, absent_models
from core.project import Project, Stage
from tests.interop_helpers import in_library

HEAD = "is not a file or folder here, in your model library or in the Hugging Face cache"


def test_a_name_another_tool_wrote_says_which_file_to_add_and_which_hub_model_it_is(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert absent_model("sd_xl_base_1.0.safetensors", "ComfyUI") == (
        f"model 'sd_xl_base_1.0.safetensors' (as ComfyUI named it) {HEAD}: add the folder that holds "
        "sd_xl_base_1.0.safetensors with Models > Model Library, or set the stage's model to "
        "stabilityai/stable-diffusion-xl-base-1.0 to download it")
    # A1111 drops the ending: the file to look for is the .safetensors of that name.
    assert "add the folder that holds sd_xl_refiner_1.0.safetensors with" in absent_model("sd_xl_refiner_1.0")
    # No Hub model is known by that name: only the file can help.
    assert absent_model("Anything-V3.0.ckpt", "ComfyUI").endswith(
        "add the folder that holds Anything-V3.0.ckpt with Models > Model Library, or set the stage's model to "
        "your copy of it")
    # A path from the machine the recipe was made on: its file name is what to look for.
    line = absent_model("C:\\SD\\models\\Stable-diffusion\\dreamshaper_8.safetensors")
    assert "holds dreamshaper_8.safetensors with" in line and "(as" not in line
    # Offline, the Hub model cannot download now.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert absent_model("sd_xl_base_1.0.safetensors").endswith(
        "or go online and set the stage's model to stabilityai/stable-diffusion-xl-base-1.0 to download it")


def test_the_librarys_file_of_that_name_is_the_one_to_choose(tmp_path):
    path = in_library(tmp_path, "pipeline", "checkpoints/sdxl/sd_xl_base_1.0.safetensors")
    assert absent_model("sdxl\\sd_xl_base_1.0.safetensors", "ComfyUI") == (
        "model 'sdxl\\sd_xl_base_1.0.safetensors' (as ComfyUI named it) is not a file or folder here, but your "
        f"model library has it: set the stage's model to {path}")
    assert absent_model(path) is None  # chosen: it is here


def test_what_is_here_or_downloads_on_first_use_is_no_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    for ref in (demo.BASE, demo.REFINER, demo.UPSCALER, str(tmp_path / "model"), str(tmp_path / "model.safetensors"),
                "someone/not-downloaded-yet", ""):
        assert absent_model(ref) is None, ref
    # Offline, a Hub id not in the cache can no longer be had: the engine's own words.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = absent_model("someone/not-downloaded-yet")
    assert line.startswith("someone/not-downloaded-yet is not in the local Hugging Face cache and offline mode is on")
    assert absent_model(demo.BASE) is None
    # There, but not a model; a builtin that does not exist.
    (tmp_path / "model.png").write_bytes(b"x")
    assert "is neither a diffusers folder nor a .safetensors checkpoint" in absent_model(str(tmp_path / "model.png"))
    assert absent_model("builtin:demo-nothing") == ("there is no builtin model 'builtin:demo-nothing' "
                                                    "(builtin models: demo-base, demo-refiner)")


def test_only_enabled_stages_count_and_each_line_names_its_stage():
    project = Project(prompt="a cat", stages=[Stage(model=demo.BASE), Stage(model="gone.safetensors"),
                                              Stage(model="v1-5-pruned-emaonly.safetensors", enabled=False)])
    lines = absent_models(project, "ComfyUI")
    assert len(lines) == 1 and lines[0].startswith("stage 2: model 'gone.safetensors' (as ComfyUI named it) ")
    project.stages[2].enabled = True
    assert [line.split(":")[0] for line in absent_models(project)] == ["stage 2", "stage 3"]
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in absent_models(project)[1]
    # A Handoff recipe's names are Handoff's own: no "as ... named it".
    assert "(as" not in absent_models(project, "Handoff")[0]


def test_a_repeated_check_scans_nothing_and_a_new_model_or_download_is_seen(tmp_path, monkeypatch):
    """The window validates on every edit: with nothing changed, the library and the Hub
    cache are not scanned again; a file added to the library and a download are seen at once."""
    from core.downloads import download_model
    from core.interop import model_lookup
    from tests import tiny_pipelines as tp
    from tests.fake_hub import serving_tiny_sd

    scans = []
    scan = model_lookup.library_candidates
    monkeypatch.setattr(model_lookup, "library_candidates", lambda: scans.append(1) or scan())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for _ in range(3):
        assert HEAD in absent_model("my_mix_v2.safetensors", "ComfyUI")
        assert HEAD in absent_model("tiny-sd")
    assert len(scans) == 1
    # A file added to the library (the settings file is rewritten): found on the next check.
    path = in_library(tmp_path, "pipeline", "checkpoints/my_mix_v2.safetensors")
    assert absent_model("my_mix_v2.safetensors", "ComfyUI").endswith(f"set the stage's model to {path}")
    assert len(scans) == 2
    # A download into the Hub cache: the cached model of that name is offered.
    folder = tp.build_sd(tmp_path / "served", seed=0)
    with serving_tiny_sd(folder, monkeypatch, tmp_path / "hf-cache"):
        assert HEAD in absent_model("tiny-sd")
        download_model("fake-org/tiny-sd")
    assert absent_model("tiny-sd").endswith("set the stage's model to fake-org/tiny-sd")
