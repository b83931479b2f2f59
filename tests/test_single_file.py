"""Single-file checkpoints in the original Stable Diffusion (LDM) layout, the kind
ComfyUI and Automatic1111 keep: detected, loaded offline from a local config folder,
bit-identical to the diffusers folder they came from, and refused with a readable
message when they cannot be used."""
from __future__ import annotations

import numpy as np
import pytest

from core import events as ev
from core.models import ModelCache, parse_ref, resolve
from core.errors import ModelError
from core.project import Project, Stage
from tests.engine_helpers import of, pixels, run_job
from tests.ldm_export import copy_configs, export_ldm

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def sd_checkpoint(tiny_models, tmp_path_factory):
    """The tiny SD pipeline as one LDM-layout model.safetensors (the export checks that
    diffusers' own conversion maps every tensor back exactly)."""
    return export_ldm(tiny_models["sd"], tmp_path_factory.mktemp("ckpt") / "model.safetensors")


@pytest.fixture
def sd_configs(tiny_models, handoff_home):
    """The pipeline's configs, no weights, where a user puts them for offline loading."""
    dest = copy_configs(tiny_models["sd"], handoff_home / "configs" / "sd")
    assert not list(dest.rglob("*.safetensors"))
    return dest


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def project(*stages) -> Project:
    return Project(prompt=PROMPT, width=32, height=32, seed=5, stages=list(stages))


def test_checkpoint_has_the_ldm_layout(sd_checkpoint):
    from safetensors import safe_open

    with safe_open(str(sd_checkpoint), framework="pt") as f:
        keys = set(f.keys())
        vae_q = f.get_tensor("first_stage_model.encoder.mid.attn_1.q.weight")
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight" in keys
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in keys  # upsampler after attention
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert vae_q.ndim == 4  # LDM's VAE attention is 1x1 convolutions


def test_resolves_as_sd_from_its_keys(sd_checkpoint):
    ref = parse_ref(str(sd_checkpoint))
    assert ref.kind == "file"
    resolved = resolve(ref)
    assert resolved.family.key == "sd" and resolved.is_file


def test_job_on_checkpoint_equals_job_on_folder(tiny_models, sd_checkpoint, sd_configs, offline, tmp_path):
    def job(model: str):
        stages = (Stage(model, steps=4, guidance=5.0), Stage(model, steps=6, handoff="pixel", strength=0.5, seed=9))
        models = ModelCache()
        done = of(run_job(project(*stages), tmp_path / str(len(model)), models), ev.StageFinished)
        return done, models

    from_file, file_models = job(str(sd_checkpoint))
    from_folder, _ = job(str(tiny_models["sd"]))
    assert [d.handoff for d in from_file] == ["generate", "pixel"]
    assert len(file_models.loaded) == 1, "a checkpoint used by two stages loads once"
    for a, b in zip(from_file, from_folder):
        assert np.array_equal(pixels(a.image), pixels(b.image))


def test_checkpoint_weights_round_trip_exactly(tiny_models, sd_checkpoint, sd_configs, offline):
    import torch

    from tests.engine_helpers import load

    loaded = ModelCache().get(resolve(parse_ref(str(sd_checkpoint))), torch.float32, "cpu")
    folder = load(tiny_models["sd"])
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(loaded.pipe, name).state_dict(), getattr(folder, name).state_dict()
        assert set(mine) == set(theirs), name
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert loaded.pipe.scheduler.config == folder.scheduler.config
    assert loaded.pipe.tokenizer("a red cat").input_ids == folder.tokenizer("a red cat").input_ids


def test_missing_config_offline_fails_with_what_to_do(sd_checkpoint, handoff_home, offline, tmp_path):
    events = run_job(project(Stage(str(sd_checkpoint), steps=2)), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    assert len(failed) == 1 and not of(events, ev.StageFinished)
    message = failed[0].message
    assert "\n" not in message and "Traceback" not in message
    assert "model.safetensors" in message and "config" in message
    assert str(handoff_home / "configs" / "sd") in message  # where to put it
    assert "go online" in message


def test_config_cached_by_the_hub_is_used_offline(tiny_models, sd_checkpoint, offline, monkeypatch, tmp_path):
    """With no config folder, the configs diffusers would fetch for the checkpoint are
    used from the Hugging Face cache, with no network."""
    import huggingface_hub.constants
    import torch
    from diffusers.loaders.single_file_utils import fetch_diffusers_config

    from core.families import FAMILIES
    from core.models import single_file_config

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert single_file_config(FAMILIES["sd"], sd_checkpoint) is None
    # Lay the tiny configs out as a cached snapshot of the repo diffusers picks for this checkpoint.
    from safetensors.torch import load_file

    repo = fetch_diffusers_config(load_file(str(sd_checkpoint)))["pretrained_model_name_or_path"]
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    copy_configs(tiny_models["sd"], repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    assert single_file_config(FAMILIES["sd"], sd_checkpoint) == repo_dir / "snapshots" / commit
    loaded = ModelCache().get(resolve(parse_ref(str(sd_checkpoint))), torch.float32, "cpu")
    assert type(loaded.pipe).__name__ == "StableDiffusionPipeline"


def build_sdxl_wide_encoder(dest):
    """A tiny SDXL base whose second text encoder is wider than the first, as in the real
    model (768 vs 1280): diffusers' single-file loader tells SDXL's two encoders apart
    by width, so the pair from tiny_pipelines (both 32 wide) cannot round-trip."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from core.local_tokenizers import clip_tokenizer
    from tests import tiny_pipelines as tp

    tok = clip_tokenizer(tp.WORDS)
    torch.manual_seed(4)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=32 + 64, norm_num_groups=16)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    StableDiffusionXLPipeline(vae=tp._vae(1), text_encoder=tp._clip_text(len(tok), False, 2),
                              text_encoder_2=tp._clip_text(len(tok), True, 3, hidden=64), tokenizer=tok,
                              tokenizer_2=tok, unet=unet, scheduler=scheduler).save_pretrained(dest)
    return dest


def test_sdxl_checkpoint_job_equals_folder_job(tmp_path_factory, handoff_home, offline, tmp_path):
    from safetensors import safe_open

    folder = build_sdxl_wide_encoder(tmp_path_factory.mktemp("sdxl") / "folder")
    checkpoint = export_ldm(folder, tmp_path_factory.mktemp("sdxl-ckpt") / "sdxl.safetensors")
    with safe_open(str(checkpoint), framework="pt") as f:
        keys = set(f.keys())
    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in keys
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    assert resolve(parse_ref(str(checkpoint))).family.key == "sdxl"
    copy_configs(folder, handoff_home / "configs" / "sdxl")

    def job(model: str, out: str):
        return of(run_job(project(Stage(model, steps=4, guidance=5.0)), tmp_path / out), ev.StageFinished)

    (a,), (b,) = job(str(checkpoint), "file"), job(str(folder), "folder")
    assert np.array_equal(pixels(a.image), pixels(b.image))


def test_sdxl_encoders_of_equal_width_are_refused_by_the_exporter(tiny_models, tmp_path):
    from tests.ldm_export import ExportError

    with pytest.raises(ExportError, match="equal width"):
        export_ldm(tiny_models["sdxl"], tmp_path / "x.safetensors")


def test_unrelated_tensors_match_no_family(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1), "something.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelError, match="match no family") as info:
        resolve(parse_ref(str(path)))
    assert "\n" not in str(info.value)


def test_file_that_is_not_safetensors_says_so(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ModelError, match="not a readable .safetensors file") as info:
        resolve(parse_ref(str(path)))
    assert "\n" not in str(info.value)


def test_bad_checkpoint_fails_the_job_readably(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 64)
    events = run_job(project(Stage(str(path), steps=2)), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    assert len(failed) == 1 and "broken.safetensors: not a readable .safetensors file" in failed[0].message
    assert not failed[0].detail


def test_pickled_checkpoints_are_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(ModelError, match="only .safetensors"):
        resolve(parse_ref(str(path)))


def test_transformer_only_file_is_refused_before_any_download(tmp_path):
    """A ComfyUI diffusion_models/ file holds the denoiser alone: diffusers would fetch the
    VAE and text encoders from the Hub, so resolving it says what it is instead."""
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "flux1-dev.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": np.zeros((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(ModelError, match="flux1-dev.safetensors: a Flux.1 transformer/UNet only") as info:
        resolve(parse_ref(str(path)))
    assert "needs a base pipeline" in str(info.value) and "\n" not in str(info.value)
