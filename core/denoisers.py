"""A stage's transformer/UNet from one file, and quantized denoisers.

A denoiser file is a GGUF (city96's layout: the original key names, weights quantized
per tensor), an fp8 .safetensors or a bf16/fp16/fp32 one, in the original or ComfyUI
layout (`model.diffusion_model.` prefix). What it is (family, quant type) is read from
its header alone, with no torch, so the model library can ask too; whether it fits a
stage is checked before anything loads. Loading goes through diffusers' single-file
loader with the stage model's own config for the component, so the text encoders, VAE
and scheduler stay the model's.

`quantize` shrinks the denoiser a stage loads: fp8 storage upcast per layer (diffusers'
layerwise casting, any device), torchao int8 weight-only, or bitsandbytes NF4 (CUDA).
"""
from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.checkpoints import WHOLE_MODEL_PARTS, read_header
from core.errors import ModelError, ReadError
from core.families import FAMILIES, Family, UnknownFamily, family_from_checkpoint_keys

PREFIX = "model.diffusion_model."  # ComfyUI's prefix for the denoiser's tensors
DENOISER_SUFFIXES = (".gguf", ".safetensors")
FLOAT_NAMES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8", "F8_E5M2": "fp8 (e5m2)"}
# The GGML types that are plain floats: a GGUF holding only these is not quantized.
GGUF_FLOATS = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}
DENOISER_COMPONENTS = ("transformer", "unet")


@dataclass(frozen=True)
class DenoiserFile:
    path: Path
    format: str  # "gguf" or "safetensors"
    family: str | None  # a core.families key; None when the tensor names tell none
    quant: str  # "Q8_0", "Q4_K"... for a GGUF; "fp8", "bf16", "fp16", "fp32" otherwise
    types: frozenset[str]  # every tensor type in the file (GGML type names, or safetensors dtypes)
    whole_model: bool = False  # it holds a VAE or text encoders too
    note: str = ""  # why the family is unknown


def _family(keys: set[str]) -> tuple[str | None, str]:
    """The family from the denoiser's tensor names, with or without ComfyUI's prefix,
    by the same rules that tell a whole checkpoint's family."""
    prefixed = {k if k.startswith(PREFIX) else PREFIX + k for k in keys}
    try:
        return family_from_checkpoint_keys(prefixed).key, ""
    except UnknownFamily as exc:
        return None, str(exc)


def describe_denoiser(path: Path) -> DenoiserFile:
    """What a denoiser file is, from its header; ReadError when it is not a readable one."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return _describe_gguf(path)
    if path.suffix.lower() != ".safetensors":
        raise ReadError("a transformer file must be a .gguf or a .safetensors file")
    header, _ = read_header(path)
    dtypes = Counter(str(v.get("dtype")) for v in header.values() if isinstance(v, dict))
    keys = set(header)
    family, note = _family({k for k in keys if not k.startswith(WHOLE_MODEL_PARTS)})
    main = dtypes.most_common(1)[0][0] if dtypes else "F32"
    return DenoiserFile(path, "safetensors", family, FLOAT_NAMES.get(main, main.lower()), frozenset(dtypes),
                        any(k.startswith(WHOLE_MODEL_PARTS) for k in keys), note)


def _describe_gguf(path: Path) -> DenoiserFile:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ReadError("reading GGUF files needs the gguf package (pip install gguf)") from None
    try:
        reader = GGUFReader(str(path), "r")
        tensors = [(t.name, t.tensor_type.name) for t in reader.tensors]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ReadError(f"not a readable GGUF file ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    if not tensors:
        raise ReadError("the GGUF file holds no tensors")
    types = Counter(kind for _, kind in tensors)
    quantized = [k for k, _ in types.most_common() if k not in GGUF_FLOATS]
    quant = quantized[0] if quantized else GGUF_FLOATS[types.most_common(1)[0][0]]
    keys = {name for name, _ in tensors}
    family, note = _family({k for k in keys if not k.startswith(WHOLE_MODEL_PARTS)})
    return DenoiserFile(path, "gguf", family, quant, frozenset(types),
                        any(k.startswith(WHOLE_MODEL_PARTS) for k in keys), note)


def unsupported_gguf_types(info: DenoiserFile) -> tuple[list[str], list[str]]:
    """(the tensor types of a GGUF that diffusers cannot dequantize, the ones it can)."""
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    known = {t.name for t in SUPPORTED_GGUF_QUANT_TYPES} | set(GGUF_FLOATS)
    return sorted(t for t in info.types if t not in known), sorted(known)


# ---------------------------------------------------------------- checks before loading


def denoiser_component(index: dict) -> tuple[str, str] | None:
    """(component name, model class) of a diffusers folder's transformer or UNet."""
    for name in DENOISER_COMPONENTS:
        entry = index.get(name)
        if isinstance(entry, list) and len(entry) == 2 and entry[1]:
            return name, entry[1]
    return None


def check_transformer_file(path: Path, family: Family, index: dict) -> DenoiserFile:
    """The file described, or ModelError (one line) when it cannot be the denoiser of a
    `family` model whose model_index.json is `index`: another family, a whole model, a
    quant type diffusers cannot read, or a stage model that is not a diffusers folder."""
    path = Path(path)
    name = path.name
    if not index:
        raise ModelError(f"{name}: a transformer file replaces a diffusers model's own; the stage's model must be "
                         "a diffusers folder or Hub id (a single-file checkpoint carries its own)")
    if denoiser_component(index) is None:
        raise ModelError(f"{name}: the stage's model has no transformer or UNet to replace")
    try:
        info = describe_denoiser(path)
    except ReadError as exc:
        raise ModelError(f"{name}: {exc}") from None
    if info.whole_model:
        raise ModelError(f"{name} is a whole model (it holds a VAE or text encoders): give it as the stage's model")
    if info.family is None:
        raise ModelError(f"{name}: its tensor names match no transformer/UNet family Handoff knows")
    theirs = FAMILIES[info.family]
    # A UNet's names cannot tell an SDXL base from its refiner (one ensemble group): the
    # load itself then checks the shapes against the model's config.
    if theirs is not family and not (theirs.ensemble_group and theirs.ensemble_group == family.ensemble_group):
        raise ModelError(f"{name} is a {FAMILIES[info.family].title} denoiser; the stage's model is "
                         f"{family.title}: give a {family.title} file, or a {FAMILIES[info.family].title} model")
    if info.format == "gguf":
        bad, known = unsupported_gguf_types(info)
        if bad:
            raise ModelError(f"{name}: quant type {', '.join(bad)} cannot be read (diffusers' GGUF loader "
                             f"reads {', '.join(known)})")
    return info


def check_quantize(quantize: str, device: str, transformer: DenoiserFile | None, index: dict) -> None:
    """ModelError (one line) where the quantize setting cannot run here (`index`: the stage
    model's model_index.json, empty for a single-file checkpoint)."""
    if quantize == "none":
        return
    if transformer is not None and transformer.format == "gguf":
        raise ModelError(f"{transformer.path.name} is already quantized ({transformer.quant}): set quantize to none")
    if quantize == "nf4":
        if device != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
            raise ModelError("nf4 needs a CUDA GPU and bitsandbytes (pip install '.[quant]')")
        if not index:
            raise ModelError("nf4 quantizes the weights as they load: the stage's model must be a diffusers "
                             "folder or Hub id (use fp8 or int8 on a single-file checkpoint)")
    if quantize == "int8":
        if importlib.util.find_spec("torchao") is None:
            raise ModelError("int8 needs torchao (pip install '.[quant]')")
        if device == "mps":
            raise ModelError("int8 (torchao) does not run on Apple's MPS; use fp8 there")


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class DenoiserSpec:
    """How a stage's denoiser is loaded: from the model, or from `file`, and quantized."""

    file: Path | None = None
    quantize: str = "none"

    @property
    def plain(self) -> bool:
        return self.file is None and self.quantize == "none"

    @property
    def quantized(self) -> bool:
        """Whether the denoiser is kept quantized: set to, or a GGUF or fp8 file (a
        bf16/fp16 file loads as plain weights)."""
        if self.quantize != "none":
            return True
        return self.file is not None and (self.file.suffix.lower() == ".gguf" or describe_denoiser(self.file).quant == "fp8")



def spec_of(stage) -> DenoiserSpec:
    return DenoiserSpec(Path(stage.transformer).expanduser() if stage.transformer else None, stage.quantize)


def load_denoiser(spec: DenoiserSpec, folder: Path, component: str, cls_name: str, dtype) -> Any:
    """The denoiser a spec asks for: from its file with the folder's config for the
    component, or the folder's own, quantized as asked."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if spec.quantize == "nf4":
        kwargs["quantization_config"] = diffusers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    try:
        if spec.file is None:
            model = cls.from_pretrained(str(folder), subfolder=component, **kwargs)
        else:
            if spec.file.suffix.lower() == ".gguf":
                kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
            model = cls.from_single_file(str(spec.file), config=str(folder), subfolder=component,
                                         local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers raises many types here; all mean "cannot load"
        text = str(exc).strip()
        reason = text.splitlines()[0][:300] if text else type(exc).__name__
        what = spec.file.name if spec.file is not None else f"{folder.name}/{component}"
        raise ModelError(f"{what} could not be loaded as the {component}: {reason}") from exc
    stored_fp8 = spec.file is not None and spec.file.suffix.lower() == ".safetensors" and \
        describe_denoiser(spec.file).quant == "fp8"
    # An fp8 file stays fp8: its weights were upcast losslessly, and go back to fp8 storage.
    quantize_module(model, "fp8" if stored_fp8 and spec.quantize == "none" else spec.quantize, dtype)
    return model


def quantize_module(model, quantize: str, dtype) -> None:
    """Quantize a loaded denoiser in place: fp8 storage upcast per layer as it computes,
    or torchao int8 weight-only (nf4 quantizes as it loads: see load_denoiser)."""
    if quantize == "fp8":
        import torch

        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    elif quantize == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())


def quantize_loaded(pipe, quantize: str, dtype) -> None:
    """Quantize a loaded pipeline's transformer/UNet in place (fp8 or int8)."""
    for name in DENOISER_COMPONENTS:
        model = getattr(pipe, name, None)
        if model is not None:
            quantize_module(model, quantize, dtype)
            return
