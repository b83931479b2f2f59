"""What a single-file checkpoint is, from its safetensors header alone: its tensor names
tell the family and whether it is a whole model or a transformer/UNet only. No weights
are read and torch is not imported, so the window can ask too."""
from __future__ import annotations

import struct
from pathlib import Path

from core import checked
from core.errors import ReadError
from core.families import UnknownFamily, family_from_checkpoint_keys

PIPELINE, DENOISER = "pipeline", "denoiser"
MAX_HEADER = 100 * 1024 * 1024  # safetensors headers are JSON; anything larger is not one


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
                raise ReadError(f"not a readable .safetensors file (the header length is not plausible){broken}")
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
    meta = header.pop("__metadata__", None)
    return header, meta if isinstance(meta, dict) else {}


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
