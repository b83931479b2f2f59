"""Write a diffusers Z-Image transformer as a single file in its ORIGINAL key layout (the
one city96's GGUFs and ComfyUI's diffusion_models/ files use): a GGUF, quantized per
tensor with the `gguf` package, or a .safetensors, optionally with ComfyUI's prefix.

The mapping is the inverse of diffusers' `convert_z_image_transformer_checkpoint_to_diffusers`
(fused attention.qkv, attention.out, q_norm/k_norm, final_layer, x_embedder), and each
export is checked by running that converter on the result: it must give back the
diffusers state dict, every key and (unquantized) tensor.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.ldm_export import ExportError
from tests.single_file_export import CAT, COPY, DENOISER_PREFIX, _stored, apply_rules

RENAMES = (  # diffusers -> original, the converter's rename table read backwards
    ("all_final_layer.2-1.", "final_layer."),
    ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def zimage_rules(sd: dict) -> list:
    """(original name, [diffusers names], how) for every tensor of a ZImageTransformer2DModel."""
    rules = []
    for key in sorted(sd):
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue  # fused into qkv with to_q
        if ".attention.to_q." in key:
            parts = [key, key.replace(".to_q.", ".to_k."), key.replace(".to_q.", ".to_v.")]
            rules.append((key.replace(".attention.to_q.", ".attention.qkv."), parts, CAT))
            continue
        original = key
        for new, old in RENAMES:
            original = original.replace(new, old)
        rules.append((original, [key], COPY))
    return rules


def zimage_original(folder: Path, prefix: str = "") -> tuple[dict, dict]:
    """(config, original-layout state dict) of a Z-Image pipeline folder's transformer,
    checked against diffusers' own converter."""
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    config, sd = _stored(Path(folder), "transformer")
    state = {prefix + k: v for k, v in apply_rules(zimage_rules(sd), sd, "transformer").items()}
    back = convert_z_image_transformer_checkpoint_to_diffusers(dict(state))
    if set(back) != set(sd) or any(not back[k].equal(sd[k]) for k in sd):
        raise ExportError("the Z-Image transformer does not round-trip through diffusers' converter")
    return config, state


def export_safetensors(folder: Path, dest: Path, dtype=None, comfyui: bool = False) -> Path:
    """The transformer as a .safetensors in the original layout, cast to `dtype`."""
    from safetensors.torch import save_file

    _, state = zimage_original(folder, DENOISER_PREFIX if comfyui else "")
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dest))
    return dest


def write_gguf(state: dict, dest: Path, quant: str, arch: str = "zimage") -> Path:
    """Tensors to a GGUF: 2-D layer weights whose rows split into whole blocks quantized
    to `quant`, the rest kept F32 (as city96's converter keeps norms, biases and pad
    tokens, which are used as tensors, not through a layer that dequantizes them)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[quant]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    writer = gguf.GGUFWriter(str(dest), arch)
    for name, tensor in state.items():
        data = tensor.float().numpy()
        if name.endswith(".weight") and data.ndim == 2 and data.shape[-1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def export_gguf(folder: Path, dest: Path, quant: str = "Q8_0") -> Path:
    """The Z-Image transformer of a pipeline folder as a GGUF in the original layout."""
    _, state = zimage_original(folder)
    return write_gguf(state, dest, quant)


def forge_gguf(dest: Path, names: dict[str, tuple[int, int]], raw_type: str) -> Path:
    """A GGUF whose tensors claim type `raw_type` with bytes of the right size for it
    (any content: a file only its header is read from)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[raw_type]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    writer = gguf.GGUFWriter(str(dest), "test")
    for name, (rows, cols) in names.items():
        writer.add_tensor(name, np.zeros((rows, cols // block * size), dtype=np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def config_of(folder: Path) -> dict:
    return json.loads((Path(folder) / "transformer" / "config.json").read_text())
