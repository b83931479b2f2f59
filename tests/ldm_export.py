"""Write a diffusers pipeline folder as ONE single-file checkpoint in the original
Stable Diffusion (LDM) key layout, the kind ComfyUI and Automatic1111 keep.

This is the inverse of diffusers' own single-file conversion
(`diffusers.loaders.single_file_utils.convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`).
The LDM names are derived from each diffusers key and the component's config (blocks,
layers per block, which blocks have attention), the same arithmetic the forward
conversion uses, so it works for any SD 1.x / SDXL-shaped config, not one key list.
Every export is checked by running diffusers' forward conversion on the result: it must
give back exactly the diffusers state dict (same keys, bit-identical tensors).

Layouts written:
  SD 1.x  model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.text_model.*
  SDXL    model.diffusion_model.*, first_stage_model.*, conditioner.embedders.0.transformer.text_model.*
          (CLIP ViT-L layout), conditioner.embedders.1.model.* (OpenCLIP layout: resblocks,
          fused in_proj q/k/v, transposed text_projection)
  SDXL refiner  model.diffusion_model.*, first_stage_model.*, conditioner.embedders.0.model.*
          (its one text encoder, OpenCLIP ViT-bigG, in the OpenCLIP layout)

The transformer families' all-in-one layouts (SD3, Flux.1, Chroma) are in
tests/single_file_export.py, which reuses the VAE and CLIP helpers here.
"""
from __future__ import annotations

import re
from pathlib import Path

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_OPENCLIP_PREFIX = "conditioner.embedders.0.model."


class ExportError(ValueError):
    pass


def _invert(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


# ---------------------------------------------------------------- UNet

# diffusers resnet names -> LDM ResBlock names (inverse of update_unet_resnet_ldm_to_diffusers)
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _unet_resnet_tail(tail: str) -> str:
    head, _, rest = tail.partition(".")
    if head not in _UNET_RESNET:
        raise ExportError(f"unknown UNet resnet parameter '{tail}'")
    return f"{_UNET_RESNET[head]}.{rest}"


def unet_key_to_ldm(key: str, config: dict) -> str:
    """One UNet2DConditionModel parameter name, in the LDM UNetModel layout."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["class_embed_type"])
    if config.get("addition_embed_type") == "text_time":
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"])
    if key in fixed:
        return fixed[key]
    if key == "class_embedding.weight" and config.get("num_class_embeds") is not None:
        return "label_emb.weight"

    per_down = config["layers_per_block"]
    if not isinstance(per_down, int):
        raise ExportError("per-block layers_per_block is not expressible in the LDM layout")
    per_up = per_down + 1  # up blocks have one resnet more (they also take the skip of the downsampler)

    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, i, tail = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (per_down + 1) + i}.0.{_unet_resnet_tail(tail)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        b, i, tail = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * (per_down + 1) + i}.1.{tail}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        b, tail = int(m[1]), m[2]
        return f"input_blocks.{1 + b * (per_down + 1) + per_down}.0.op.{tail}"

    # LDM middle_block: ResBlock, SpatialTransformer, ResBlock
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_unet_resnet_tail(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1]) + 1}.{m[2]}"

    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, i, tail = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * per_up + i}.0.{_unet_resnet_tail(tail)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        b, i, tail = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{b * per_up + i}.1.{tail}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b, tail = int(m[1]), m[2]
        # The upsampler follows the last layer's attention when the block has one.
        has_attention = "CrossAttn" in config["up_block_types"][b]
        return f"output_blocks.{b * per_up + per_up - 1}.{2 if has_attention else 1}.conv.{tail}"
    raise ExportError(f"no LDM name for UNet parameter '{key}'")


def unet_to_ldm(state_dict: dict, config: dict) -> dict:
    return {unet_key_to_ldm(k, config): v for k, v in state_dict.items()}


# ---------------------------------------------------------------- VAE

_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_resnet_tail(tail: str) -> str:
    head, _, rest = tail.partition(".")
    return f"{_VAE_RESNET.get(head, head)}.{rest}"


def vae_key_to_ldm(key: str, config: dict) -> str:
    """One AutoencoderKL parameter name, in the LDM AutoencoderKL layout."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in fixed:
        return fixed[key]
    n_up = len(config["up_block_types"])
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet_tail(m[3])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # LDM numbers the decoder's up blocks from the lowest resolution: reversed.
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet_tail(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet_tail(m[3])}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        if m[2] not in _VAE_ATTENTION:
            raise ExportError(f"unknown VAE attention parameter '{key}'")
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
    raise ExportError(f"no LDM name for VAE parameter '{key}'")


def vae_to_ldm(state_dict: dict, config: dict) -> dict:
    out = {}
    for k, v in state_dict.items():
        name = vae_key_to_ldm(k, config)
        # LDM's attention projections are 1x1 convolutions; diffusers' are linear layers.
        if ".mid.attn_1." in name and name.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) and v.ndim == 2:
            v = v[:, :, None, None]
        out[name] = v
    return out


# ---------------------------------------------------------------- text encoders


def _clip_keys(model) -> dict:
    """A CLIP text model's state dict with the `text_model.` prefix the LDM layout keeps
    (transformers >= 5.6 flattened CLIPTextModel; the WithProjection variant still wraps)."""
    sd = model.state_dict()
    if hasattr(model, "text_model"):
        return dict(sd)
    return {f"text_model.{k}": v for k, v in sd.items()}


def clip_to_ldm(model, prefix: str) -> dict:
    return {prefix + k: v for k, v in _clip_keys(model).items() if not k.endswith("position_ids")}


_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}


def open_clip_to_ldm(model, prefix: str) -> dict:
    """CLIPTextModelWithProjection in the OpenCLIP layout SDXL's second encoder uses."""
    import torch
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    sd = _clip_keys(model)
    fixed = DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"]
    out: dict = {}
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        if k in fixed:
            # OpenCLIP applies text_projection as x @ P; diffusers keeps a Linear weight (P^T).
            out[prefix + fixed[k]] = v.T.contiguous() if k == "text_projection.weight" else v
            continue
        m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", k)
        if not m:
            raise ExportError(f"no OpenCLIP name for text encoder parameter '{k}'")
        layer, module, kind = m[1], m[2], m[3]
        base = f"{prefix}transformer.resblocks.{layer}."
        if q := re.fullmatch(r"self_attn\.([qkv])_proj", module):
            fused.setdefault((base, kind), {})[q[1]] = v
        elif module in _OPENCLIP_LAYER:
            out[f"{base}{_OPENCLIP_LAYER[module]}.{kind}"] = v
        else:
            raise ExportError(f"no OpenCLIP name for text encoder parameter '{k}'")
    for (base, kind), parts in fused.items():
        out[f"{base}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0).contiguous()
    return out


# ---------------------------------------------------------------- whole pipelines


def _load(folder: Path, name: str):
    import diffusers
    import transformers

    index = __import__("json").loads((folder / "model_index.json").read_text())
    library, cls_name = index[name]
    module = diffusers if library == "diffusers" else transformers
    return getattr(module, cls_name).from_pretrained(str(folder / name))


def _is_sdxl_refiner(index: dict) -> bool:
    """An SDXL pipeline without its first (CLIP ViT-L) text encoder: the refiner."""
    return (index.get("_class_name") == "StableDiffusionXLImg2ImgPipeline"
            and (index.get("text_encoder") or [None])[0] is None)


def pipeline_to_ldm(folder: Path) -> dict:
    """The LDM-layout state dict of a diffusers SD 1.x, SDXL base or SDXL refiner pipeline folder."""
    import json

    index = json.loads((Path(folder) / "model_index.json").read_text())
    cls = index.get("_class_name")
    unet, vae = _load(folder, "unet"), _load(folder, "vae")
    state = {}
    state.update({UNET_PREFIX + k: v for k, v in unet_to_ldm(unet.state_dict(), dict(unet.config)).items()})
    state.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()})
    if cls == "StableDiffusionPipeline":
        state.update(clip_to_ldm(_load(folder, "text_encoder"), SD_CLIP_PREFIX))
    elif _is_sdxl_refiner(index):
        # One encoder, so nothing to tell apart by width: it is embedder 0, in the OpenCLIP layout.
        state.update(open_clip_to_ldm(_load(folder, "text_encoder_2"), SDXL_REFINER_OPENCLIP_PREFIX))
    elif cls in ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"):
        te1, te2 = _load(folder, "text_encoder"), _load(folder, "text_encoder_2")
        if te1.config.hidden_size == te2.config.hidden_size:
            # diffusers tells SDXL's two encoders apart by width (position embedding size):
            # with equal widths it loads encoder 1's weights into encoder 2.
            raise ExportError("SDXL text encoders of equal width do not round-trip through diffusers' single-file loader")
        state.update(clip_to_ldm(te1, SDXL_CLIP_PREFIX))
        state.update(open_clip_to_ldm(te2, SDXL_OPENCLIP_PREFIX))
    else:
        raise ExportError(f"exporting {cls} to the LDM layout is not supported")
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    verify_round_trip(folder, state, index)
    return state


def verify_round_trip(folder: Path, state: dict, index: dict) -> None:
    """Run diffusers' forward conversion on `state`: it must give back every diffusers
    parameter, bit for bit, and nothing else."""
    import torch
    from diffusers.loaders import single_file_utils as sfu

    def same(component: str, mine: dict, theirs: dict) -> None:
        if set(mine) != set(theirs):
            missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
            raise ExportError(f"{component}: round trip lost {missing[:5]} and invented {extra[:5]}")
        for k, v in mine.items():
            if theirs[k].shape != v.shape or not torch.equal(theirs[k], v):
                raise ExportError(f"{component}: {k} does not round-trip")

    unet, vae = _load(folder, "unet"), _load(folder, "vae")
    same("unet", unet.state_dict(), sfu.convert_ldm_unet_checkpoint(state, dict(unet.config)))
    same("vae", vae.state_dict(), sfu.convert_ldm_vae_checkpoint(state, dict(vae.config)))
    if _is_sdxl_refiner(index):
        te2 = _load(folder, "text_encoder_2")
        theirs = sfu.convert_open_clip_checkpoint(te2, state, prefix=SDXL_REFINER_OPENCLIP_PREFIX)
        mine = {k: v for k, v in _clip_keys(te2).items() if not k.endswith("position_ids")}
        same("text_encoder_2", mine, theirs)
        return
    te1 = _load(folder, "text_encoder")
    theirs = sfu.convert_ldm_clip_checkpoint(state)
    mine = {k: v for k, v in _clip_keys(te1).items() if not k.endswith("position_ids")}
    same("text_encoder", mine, {k: v for k, v in theirs.items() if not k.endswith("position_ids")})
    if index.get("_class_name") in ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"):
        te2 = _load(folder, "text_encoder_2")
        theirs = sfu.convert_open_clip_checkpoint(te2, state, prefix=SDXL_OPENCLIP_PREFIX)
        mine = {k: v for k, v in _clip_keys(te2).items() if not k.endswith("position_ids")}
        same("text_encoder_2", mine, theirs)


def export_ldm(folder: Path, dest: Path) -> Path:
    """Write the pipeline at `folder` as one LDM-layout .safetensors file at `dest`."""
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(pipeline_to_ldm(Path(folder)), str(dest))
    return dest


def copy_configs(folder: Path, dest: Path) -> Path:
    """A pipeline folder's configs without its weights (model_index.json, each component's
    config, the scheduler and tokenizer files): what a single-file checkpoint lacks."""
    import shutil

    folder, dest = Path(folder), Path(dest)
    weights = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx")
    for src in folder.rglob("*"):
        if src.is_file() and not src.name.endswith(weights):
            target = dest / src.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest
