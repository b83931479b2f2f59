"""Model names in other tools' metadata resolve to the user's files: by file name, by a
well-known name of a Hub model in the cache, by AutoV2 or the old 8-digit hash (computed
once and remembered); a name that is not found stays, with a note saying what to do."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core import model_library as ml
from core.interop.detect import from_chunks
from core.interop.model_lookup import ModelLookup, legacy_hash, library_candidates, normalized, split_name
from tests.interop_helpers import sample


@pytest.fixture
def library(tmp_path) -> dict[str, Path]:
    """A library holding an A1111 install's checkpoints (scanned) and one file the user added."""
    sd = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    (sd / "SDXL").mkdir(parents=True)
    dreamshaper = sd / "dreamshaper_8.safetensors"
    dreamshaper.write_bytes(b"dreamshaper weights" * 100)
    juggernaut = sd / "SDXL" / "juggernautXL_v8Rundiffusion.safetensors"
    juggernaut.write_bytes(b"\1" * 0x110000)  # past 0x110000: the old hash reads real bytes
    renamed = tmp_path / "downloads" / "model-from-civitai.safetensors"
    renamed.parent.mkdir()
    renamed.write_bytes(b"some other weights" * 50)
    lib = ml.ModelLibrary()
    found = ml.scan_models_folder(tmp_path / "stable-diffusion-webui")
    assert {e.source for e in found} == {"a1111"} and len(found) == 2
    lib.add_many(found)
    lib.add(ml.LibraryEntry("my model", str(renamed), "user"))
    lib.save()
    return {"dreamshaper": dreamshaper, "juggernaut": juggernaut, "renamed": renamed}


def resolve(name, model_hash=None, lookup=None):
    notes: list[str] = []
    ref = (lookup or ModelLookup()).resolve(name, model_hash, "stage 1", notes)
    return ref, notes


def test_a1111_model_names_resolve_to_the_library(library):
    imported = from_chunks({"parameters": sample("a1111/landscape-hires-latent-adetailer.txt")}, "a.png")
    assert imported.project.stages[0].model == str(library["dreamshaper"])
    assert not any("not in your model library" in n for n in imported.notes)


def test_comfyui_names_with_subfolders_and_case(library):
    assert resolve("SDXL\\juggernautXL_v8Rundiffusion.safetensors")[0] == str(library["juggernaut"])
    assert resolve("sdxl/JUGGERNAUTXL_V8RUNDIFFUSION.safetensors")[0] == str(library["juggernaut"])


def test_by_autov2_hash_computed_once(library, monkeypatch):
    digest = hashlib.sha256(library["renamed"].read_bytes()).hexdigest()
    ref, notes = resolve("civitai_name_the_user_never_kept", digest[:10])
    assert ref == str(library["renamed"]) and notes == []
    # The hashes are remembered (by path, size and mtime): a later import reads no file.
    import core.models

    monkeypatch.setattr(core.models.hashlib, "sha256", lambda *a: pytest.fail("hashed a file twice"))
    assert resolve("another_name", digest[:10])[0] == str(library["renamed"])


def test_by_the_old_8_digit_hash(library):
    old = legacy_hash(library["juggernaut"])
    assert old == hashlib.sha256(b"\1" * 0x10000).hexdigest()[:8]
    assert resolve("elsewhere_called_this", old)[0] == str(library["juggernaut"])


def test_a_refiner_given_as_name_and_hash():
    assert split_name("sd_xl_refiner_1.0 [7440042bbd]") == ("sd_xl_refiner_1.0", "7440042bbd")
    assert split_name("plain name") == ("plain name", None)


def test_a_name_not_found_stays_and_says_which_file(library):
    ref, notes = resolve("someone_elses_mix_v3", "abcdef0123")
    assert ref == "someone_elses_mix_v3"
    assert len(notes) == 1 and "someone_elses_mix_v3.safetensors" in notes[0] and "Model Library" in notes[0]


def test_a_well_known_name_finds_its_cached_hub_model(monkeypatch):
    cached = [ml.CachedModel("stabilityai/stable-diffusion-xl-base-1.0", Path("/nowhere"), "sdxl", 1, True)]
    monkeypatch.setattr(ml, "cached_hub_models", lambda: cached)
    assert resolve("sd_xl_base_1.0.safetensors")[0] == "stabilityai/stable-diffusion-xl-base-1.0"
    # By the model's own name too (precision words set aside).
    cached.append(ml.CachedModel("Tongyi-MAI/Z-Image-Turbo", Path("/nowhere"), "zimage", 1, True))
    assert resolve("z_image_turbo_bf16.safetensors", lookup=ModelLookup(library_candidates()))[0] == "Tongyi-MAI/Z-Image-Turbo"


def test_a_well_known_name_not_downloaded_says_which_hub_model():
    ref, notes = resolve("v1-5-pruned-emaonly-fp16.safetensors")
    assert ref == "v1-5-pruned-emaonly-fp16.safetensors"
    assert len(notes) == 1 and "stable-diffusion-v1-5/stable-diffusion-v1-5" in notes[0]


def test_hub_ids_and_builtins_pass_through():
    assert resolve("Tongyi-MAI/Z-Image") == ("Tongyi-MAI/Z-Image", [])
    assert resolve("builtin:demo-base") == ("builtin:demo-base", [])


def test_normalized_names():
    assert normalized("z_image_turbo_bf16.safetensors") == normalized("Z-Image-Turbo") == "z_image_turbo"


def test_a_hash_budget_leaves_big_files_unhashed_and_says_so(library):
    digest = hashlib.sha256(library["renamed"].read_bytes()).hexdigest()
    lookup = ModelLookup(hash_budget=1000)  # smaller than two of the three files
    ref, notes = resolve("nameless", digest[:10], lookup=lookup)
    assert ref == str(library["renamed"])  # the small one still hashed
    ref, notes = resolve("nameless", "ffffffffff", lookup=ModelLookup(hash_budget=1000))
    assert ref == "nameless" and any("are not hashed yet" in n for n in notes)


def test_every_hub_model_the_comfyui_writer_names_by_its_file_reads_back_as_that_model():
    from core.interop.comfyui_write import graph_for
    from core.interop.model_lookup import WELL_KNOWN
    from core.project import Project, Stage
    from tests.interop_helpers import lookup_of

    for hub in dict.fromkeys(next(h for h in WELL_KNOWN if WELL_KNOWN[h] == k) for k in WELL_KNOWN.values()):
        graph = graph_for(Project(prompt="a", stages=[Stage(hub, steps=4)]))
        (loader,) = [n for n in graph.nodes.values() if n.class_type in ("CheckpointLoaderSimple", "UNETLoader")]
        name = loader.inputs.get("ckpt_name") or loader.inputs["unet_name"]
        notes: list[str] = []
        assert lookup_of(hub).resolve(name, None, "stage 1", notes) == hub, (hub, name, notes)
    # The other names users keep a file under.
    sdxl = lookup_of("stabilityai/stable-diffusion-xl-base-1.0")
    assert sdxl.resolve("sd_xl_base_1.0_0.9vae.safetensors", None, "s", []) == "stabilityai/stable-diffusion-xl-base-1.0"
