"""Single-file checkpoints, the kind ComfyUI and Automatic1111 keep: SD 1.x and SDXL in the
original Stable Diffusion (LDM) layout, the SDXL refiner, and SD3, Flux.1 and Chroma in
ComfyUI's all-in-one layout. Each is detected from its tensor names, loaded offline from
a local config folder, bit-identical to the diffusers folder it came from, and refused
with a readable message when it cannot be used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


# ---------------------------------------------------------------- SD3, Flux.1, Chroma, SDXL refiner
# All-in-one checkpoints in the layouts ComfyUI saves (tests/single_file_export.py): each is
# exported from a diffusers folder, checked against diffusers' own forward conversion, told
# apart by its tensor names alone, and run through a job that must give the folder's image.


def build_sd3_for_single_file(dest, qk_norm=None, dual_attention_layers=()):
    """A tiny SD3 shaped like the real one where diffusers' single-file loader depends on it:
    CLIP-G wider than CLIP-L (1280 vs 768; the loader tells them apart by width), CLIP-L's
    text_projection the identity (the loader sets it so: SD3 pools CLIP-L unprojected), and
    a T5 wider than the two CLIPs side by side (4096 > 768 + 1280). Two layers, so the last
    block's text-stream ending (context_pre_only) is covered; qk_norm="rms_norm" with a
    dual-attention layer is SD3.5 Medium's layout."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from core.local_tokenizers import clip_tokenizer, t5_tokenizer
    from tests import tiny_pipelines as tp

    clip, t5 = clip_tokenizer(tp.WORDS), t5_tokenizer(tp.WORDS, max_length=256)
    clip_l = tp._clip_text(len(clip), True, 2)  # 32 wide, projected to 32
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(32))
    torch.manual_seed(1)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=128, pooled_projection_dim=64, pos_embed_max_size=32,
                                        qk_norm=qk_norm, dual_attention_layers=dual_attention_layers)
    StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tp._vae(5, **tp.SD3_VAE), text_encoder=clip_l, tokenizer=clip,
        text_encoder_2=tp._clip_text(len(clip), True, 3, hidden=64), tokenizer_2=clip,
        text_encoder_3=tp._t5_text(len(t5), 4, d_model=128), tokenizer_3=t5,
    ).save_pretrained(dest)
    return dest


def _full_width(cls, seed: int, **config):
    """A Flux-shaped transformer at the real width (3072: diffusers' converter splits the
    single blocks at it) with one block of each kind. Its half-billion parameters are filled
    straight into bf16 (uniform, fan-in scaled, norms near 1), not initialized in fp32 and
    cast: two seconds instead of eight."""
    import math

    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    with init_empty_weights():
        model = cls(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=32, axes_dims_rope=[16, 56, 56], **config)
    g = torch.Generator().manual_seed(seed)
    for name, p in list(model.named_parameters()):
        value = torch.empty(p.shape, dtype=torch.bfloat16)
        if p.ndim >= 2:
            bound = 1 / math.sqrt(math.prod(p.shape[1:]))
            value.uniform_(-bound, bound, generator=g)
        else:
            value.uniform_(-0.05, 0.05, generator=g)
            if "norm" in name:
                value += 1
        set_module_tensor_to_device(model, name, "cpu", value=value, dtype=torch.bfloat16)
    return model


def _flux_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256,
                                           base_shift=0.5, max_shift=1.15)


def build_flux_full_width(dest):
    """FLUX.1 [dev]-shaped (guidance embedding) at the real width; tiny VAE and encoders."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    from core.local_tokenizers import clip_tokenizer, t5_tokenizer
    from tests import tiny_pipelines as tp

    clip, t5 = clip_tokenizer(tp.WORDS), t5_tokenizer(tp.WORDS)
    transformer = _full_width(FluxTransformer2DModel, 0, pooled_projection_dim=32, guidance_embeds=True)
    FluxPipeline(scheduler=_flux_scheduler(), vae=tp._flux_vae(7), text_encoder=tp._clip_text(len(clip), False, 2),
                 tokenizer=clip, text_encoder_2=tp._t5_text(len(t5), 3), tokenizer_2=t5,
                 transformer=transformer).save_pretrained(dest)
    return dest


def build_chroma_full_width(dest):
    """Chroma at the real width (its approximator small); tiny VAE and T5."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    from core.local_tokenizers import t5_tokenizer
    from tests import tiny_pipelines as tp

    t5 = t5_tokenizer(tp.WORDS)
    transformer = _full_width(ChromaTransformer2DModel, 1, approximator_num_channels=16, approximator_hidden_dim=32,
                              approximator_layers=2)
    ChromaPipeline(scheduler=_flux_scheduler(), vae=tp._flux_vae(7), text_encoder=tp._t5_text(len(t5), 2), tokenizer=t5,
                   transformer=transformer).save_pretrained(dest)
    return dest


@dataclass(frozen=True)
class Case:
    """One family's all-in-one checkpoint: how its folder is built, what its file must hold,
    and the job run on both."""

    family: str  # the family Handoff must tell from the tensor names
    build: Callable  # (dest, tiny_models) -> the diffusers folder
    prefixes: set  # the file's top-level name prefixes, exactly
    keys: list  # tensor names the layout must have (a sample: the export checks them all)
    stages: Callable  # (model, tiny_models) -> the job's stages
    dtype: str = "auto"
    handoffs: tuple = ("generate",)


CASES = {
    "sd3": Case(
        "sd3", lambda dest, tiny: build_sd3_for_single_file(dest),
        {"model", "first_stage_model", "text_encoders"},
        ["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
         "model.diffusion_model.joint_blocks.1.context_block.adaLN_modulation.1.weight",
         "model.diffusion_model.final_layer.adaLN_modulation.1.weight", "model.diffusion_model.pos_embed",
         "first_stage_model.encoder.mid.attn_1.q.weight",
         "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight",
         "text_encoders.clip_g.transformer.text_projection.weight", "text_encoders.t5xxl.transformer.shared.weight"],
        lambda m, tiny: [Stage(m, steps=3, guidance=4.0)]),
    "sd3.5": Case(
        "sd3", lambda dest, tiny: build_sd3_for_single_file(dest, qk_norm="rms_norm", dual_attention_layers=(0,)),
        {"model", "first_stage_model", "text_encoders"},
        ["model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight",
         "model.diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight",
         "model.diffusion_model.joint_blocks.1.context_block.attn.ln_k.weight"],
        lambda m, tiny: [Stage(m, steps=3, guidance=4.0)]),
    # Flux.1 and Chroma run in bf16, their dtype on a GPU (and fast on a CPU with AMX).
    "flux": Case(
        "flux", lambda dest, tiny: build_flux_full_width(dest),
        {"model", "vae", "text_encoders"},
        ["model.diffusion_model.double_blocks.0.img_attn.qkv.weight",
         "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
         "model.diffusion_model.single_blocks.0.linear1.weight", "model.diffusion_model.guidance_in.in_layer.weight",
         "model.diffusion_model.final_layer.adaLN_modulation.1.weight", "vae.decoder.up.1.upsample.conv.weight",
         "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight",
         "text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight"],
        lambda m, tiny: [Stage(m, steps=2, guidance=3.5)], dtype="bf16"),
    "chroma": Case(
        "chroma", lambda dest, tiny: build_chroma_full_width(dest),
        {"model", "vae", "text_encoders"},
        ["model.diffusion_model.distilled_guidance_layer.in_proj.bias",
         "model.diffusion_model.distilled_guidance_layer.norms.1.scale",
         "model.diffusion_model.double_blocks.0.txt_attn.qkv.weight", "model.diffusion_model.single_blocks.0.linear2.weight",
         "text_encoders.t5xxl.transformer.shared.weight"],
        lambda m, tiny: [Stage(m, steps=2, guidance=4.0)], dtype="bf16"),
    # The refiner cannot start a chain: both jobs start from the same SDXL base folder and
    # hand over to the refiner as an ensemble (one schedule, the refiner runs its tail).
    "sdxl-refiner": Case(
        "sdxl-refiner", lambda dest, tiny: tiny["sdxl_refiner"],
        {"model", "first_stage_model", "conditioner"},
        ["conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight",
         "conditioner.embedders.0.model.text_projection", "model.diffusion_model.label_emb.0.0.weight"],
        lambda m, tiny: [Stage(str(tiny["sdxl"]), steps=4, guidance=5.0), Stage(m, steps=4, guidance=5.0)],
        handoffs=("generate", "ensemble")),
}


@pytest.fixture(scope="module", params=list(CASES))
def all_in_one(request, tiny_models, tmp_path_factory):
    """(case, diffusers folder, all-in-one checkpoint). The export checks that diffusers'
    own conversion maps every tensor of the file back to the folder's exactly; the
    full-width Flux.1 and Chroma files (a gigabyte each) are removed after their tests."""
    import shutil

    from tests.single_file_export import export_single_file

    case = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    folder = case.build(root / "folder", tiny_models)
    checkpoint = export_single_file(folder, root / f"{request.param}.safetensors")
    yield case, folder, checkpoint
    shutil.rmtree(root, ignore_errors=True)


def test_all_in_one_checkpoint_has_the_comfyui_layout(all_in_one):
    from safetensors import safe_open

    case, _, checkpoint = all_in_one
    with safe_open(str(checkpoint), framework="pt") as f:
        keys = set(f.keys())
    assert {k.split(".")[0] for k in keys} == case.prefixes
    assert all(k.startswith("model.diffusion_model.") for k in keys if k.startswith("model."))
    assert set(case.keys) <= keys, sorted(set(case.keys) - keys)


def test_all_in_one_checkpoint_resolves_from_its_tensor_names(all_in_one):
    from core.checkpoints import PIPELINE, describe_file

    case, _, checkpoint = all_in_one
    assert describe_file(checkpoint) == (case.family, PIPELINE, "")
    resolved = resolve(parse_ref(str(checkpoint)))
    assert resolved.family.key == case.family and resolved.is_file


def test_all_in_one_job_equals_folder_job(all_in_one, tiny_models, handoff_home, offline, tmp_path):
    """The user's path: the file plus the family's configs (no weights) set up offline."""
    import torch

    from core.models import WEIGHT_COMPONENTS

    case, folder, checkpoint = all_in_one
    copy_configs(folder, handoff_home / "configs" / case.family)

    def job(model: str, out: str):
        job_project = project(*case.stages(model, tiny_models))
        job_project.dtype = case.dtype
        models = ModelCache()
        done = of(run_job(job_project, tmp_path / out, models), ev.StageFinished)
        path = resolve(parse_ref(model)).path
        (loaded,) = [m for m in models.loaded.values() if m.resolved.path == path]
        return done, loaded

    from_file, file_model = job(str(checkpoint), "file")
    from_folder, folder_model = job(str(folder), "folder")
    assert [d.handoff for d in from_file] == list(case.handoffs)
    for a, b in zip(from_file, from_folder, strict=True):
        assert np.array_equal(pixels(a.image), pixels(b.image))
    # The same weights, not just the same image: every component, bit for bit.
    assert type(file_model.pipe) is type(folder_model.pipe)
    for name in WEIGHT_COMPONENTS:
        mine, theirs = getattr(file_model.pipe, name, None), getattr(folder_model.pipe, name, None)
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            a, b = mine.state_dict(), theirs.state_dict()
            assert set(a) == set(b), name
            assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a), name
    assert file_model.pipe.scheduler.config == folder_model.pipe.scheduler.config


@pytest.mark.parametrize("family, why", [("flux", "splits the single blocks at the real model's width"),
                                         ("chroma", "splits the single blocks at the real model's width"),
                                         ("sd3", "identity text_projection")], ids=["flux", "chroma", "sd3"])
def test_tiny_transformer_families_are_refused_by_the_exporter(family_models, family, why, tmp_path):
    """Why the cases above build their own models: diffusers' loader could not read the
    tiny ones back, and the exporter says so rather than write a file that loads wrong."""
    from tests.ldm_export import ExportError
    from tests.single_file_export import export_single_file

    with pytest.raises(ExportError, match=why):
        export_single_file(family_models[family], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_checkpoint_missing_weights_fails_the_job_readably(handoff_home, offline, tmp_path):
    """A T5 without its blocks leaves parameters unloaded: the job says which component,
    instead of failing in torch on a meta tensor."""
    from safetensors.torch import load_file, save_file

    from tests.single_file_export import export_single_file

    folder = build_sd3_for_single_file(tmp_path / "sd3")
    state = load_file(str(export_single_file(folder, tmp_path / "whole.safetensors")))
    path = tmp_path / "sd3-no-t5-blocks.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("text_encoders.t5xxl.transformer.encoder.block.")},
              str(path))
    copy_configs(folder, handoff_home / "configs" / "sd3")
    events = run_job(project(Stage(str(path), steps=2)), tmp_path, on_event=lambda e: None)
    failed = of(events, ev.JobFailed)
    assert len(failed) == 1 and not of(events, ev.StageFinished)
    assert failed[0].message == ("sd3-no-t5-blocks.safetensors: the checkpoint lacks some of the text_encoder_3 "
                                 "weights (T5EncoderModel)")


@pytest.mark.gpu
@pytest.mark.parametrize("offload", [True, "group"])
def test_a_checkpoint_is_offloaded_where_the_plan_says(sd_checkpoint, sd_configs, offline, offload):
    """On CUDA: a single-file checkpoint takes the plan's offload like a diffusers folder (it
    was always loaded whole onto the GPU), and a cached one placed otherwise loads again."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    models = ModelCache()
    resolved = resolve(parse_ref(str(sd_checkpoint)))
    whole = models.get(resolved, torch.float16, "cuda")
    assert whole.pipe.unet.device.type == "cuda" and whole.offload is False
    placed = models.get(resolved, torch.float16, "cuda", offload=offload)
    assert placed is not whole and placed.offload == offload
    assert placed.pipe.unet.device.type == "cpu"  # waits in RAM; moved to the GPU layer by layer or when used
