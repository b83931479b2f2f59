"""What a single-file checkpoint is, from its safetensors header alone: its tensor names
tell the family and whether it is a whole model or a transformer/UNet only. No weights
are read and torch is not imported, so the window can ask too."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from core import checked
from core.errors import ReadError
from core.families import UnknownFamily, family_from_checkpoint_keys

PIPELINE, DENOISER = "pipeline", "denoiser"
MAX_HEADER = 100 * 1024 * 1024  # safetensors headers are JSON; anything larger is not one
MAX_DIMS = 16  # no weight has more axes; a shape of a million is a hostile header


def read_header(path: Path) -> tuple[dict, dict]:
    """(tensor entries by name, the __metadata__ table) of a .safetensors file, from its
    header alone (8 bytes of length, then JSON): no weights are read and torch is not
    imported. Raises ReadError (a ValueError) for a file that is not a readable one."""
    path = Path(path)
    broken = ("; it may be incomplete (re-download it) or another format renamed")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ReadError(f"not a readable .safetensors file (it is shorter than a safetensors header){broken}")
            (length,) = struct.unpack("<Q", head)
            if not 0 < length <= MAX_HEADER:
                raise ReadError(f"not a readable .safetensors file (the header length {length} is not plausible){broken}")
            if 8 + length > os.fstat(f.fileno()).st_size:
                raise ReadError(f"not a readable .safetensors file (its header length {length} is more than the "
                                f"file holds){broken}")
            data = f.read(length)
    except OSError as exc:
        raise ReadError(f"not a readable .safetensors file ({exc.strerror or exc})") from None
    if len(data) != length:
        raise ReadError(f"not a readable .safetensors file (the header is cut short){broken}")
    try:
        header = checked.parse_json(data, "the header")
    except ReadError as exc:
        raise ReadError(f"not a readable .safetensors file ({exc}){broken}") from None
    if not isinstance(header, dict):
        raise ReadError("not a readable .safetensors file (its header is not a table)")
    meta = header.pop("__metadata__", {})
    try:
        checked.nesting(header, "the header", cap=4)
        _check_metadata(meta)
        body = path.stat().st_size - 8 - length
        for name, entry in header.items():
            _check_entry(name, entry, body)
    except ReadError as exc:
        raise ReadError(f"not a readable .safetensors file ({exc})") from None
    except OSError as exc:
        raise ReadError(f"not a readable .safetensors file ({exc.strerror or exc})") from None
    return header, meta


# safetensors' types and their sizes in bits (the sub-byte float types pack several a byte).
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
              "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def _check_metadata(meta) -> None:
    """__metadata__ is text to text, as safetensors writes it (and as loaders read it)."""
    checked.table(meta, "__metadata__")
    for key, value in meta.items():
        checked.text(value, f"__metadata__ field {checked.names([key])}")


def _short(value) -> str:
    """A header value as JSON, cut to a message's length."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_entry(name: str, entry, body: int) -> None:
    """A tensor's dtype, shape and data_offsets: known, whole numbers, inside the file and
    as long as the shape says."""
    where = f"tensor {checked.names([name])}"
    checked.table(entry, where)
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ReadError(f"{where}: dtype {_short(dtype)} is not a safetensors type")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= checked.MAX_INTEGER for n in shape):
        raise ReadError(f"{where}: shape {_short(shape)} is not a list of whole numbers")
    offsets = entry.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body):
        raise ReadError(f"{where}: data_offsets {_short(offsets)} are not a span of the file's {body} data bytes")
    count = 1
    for n in shape:
        count *= n
    if offsets[1] - offsets[0] != (count * DTYPE_BITS[dtype] + 7) // 8:
        raise ReadError(f"{where}: shape {shape} of {dtype} does not fit its {offsets[1] - offsets[0]} bytes")


def checkpoint_keys(path: Path) -> set[str]:
    """The tensor names of a .safetensors file (see read_header)."""
    return set(read_header(path)[0])


# Prefixes of the parts a whole-model checkpoint carries besides its denoiser (the VAE and
# text encoders, in the LDM, SDXL and ComfyUI all-in-one layouts).
WHOLE_MODEL_PARTS = ("first_stage_model.", "vae.", "cond_stage_model.", "conditioner.", "text_encoders.",
                     "text_encoder.", "text_encoder_2.", "te.")


def describe_file(path: Path) -> tuple[str | None, str, str]:
    """(family key or None, kind, note) of a .safetensors file, told from its tensor names:
    a whole model (PIPELINE) or a transformer/UNet alone (DENOISER, which needs a base
    pipeline for its VAE and text encoders and cannot be a stage's model on its own)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return None, PIPELINE, "only .safetensors checkpoints are loaded (pickled .ckpt/.pt files can run code)"
    try:
        keys = checkpoint_keys(path)
    except ReadError as exc:
        return None, PIPELINE, str(exc)
    if not keys:
        return None, PIPELINE, "holds no tensors"
    whole = any(k.startswith(WHOLE_MODEL_PARTS) for k in keys)
    try:
        family = family_from_checkpoint_keys(keys)
    except UnknownFamily as exc:
        return None, PIPELINE, (f"{exc} (a whole-model checkpoint holds the denoiser, VAE and text encoder; "
                                "LoRAs, VAEs and single components cannot be a stage's model)")
    if not whole:
        return family.key, DENOISER, (f"a {family.title} transformer/UNet only: it needs a base pipeline (VAE and "
                                      "text encoders), so give it as the transformer of a stage whose model is a "
                                      f"{family.title} diffusers folder or Hub id")
    return family.key, PIPELINE, ""
