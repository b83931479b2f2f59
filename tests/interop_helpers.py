"""Helpers for the interop tests: the real samples in tests/data/interop (see its README
for where each came from), and small images carrying them as the tools store them."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.interop.model_lookup import Candidate, ModelLookup

DATA = Path(__file__).resolve().parent / "data" / "interop"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def comfyui_object_info() -> dict:
    """The pinned snapshot of ComfyUI's node definitions (its source is in the file's `_source`)."""
    import json

    return json.loads((DATA.parent / "comfyui_object_info.json").read_text(encoding="utf-8"))


def no_models() -> ModelLookup:
    """A lookup that knows no models: every name stays as the file wrote it."""
    return ModelLookup([])


def lookup_of(*refs: str) -> ModelLookup:
    """A lookup that knows exactly these references (files, folders or Hub ids)."""
    out = []
    for ref in refs:
        path = Path(ref)
        if ref.lower().endswith(".safetensors"):
            out.append(Candidate(ref, (path.name.lower(), path.stem.lower()), path))
        elif ref.startswith("/"):
            out.append(Candidate(ref, (path.name.lower(),)))
        else:
            out.append(Candidate(ref, (ref.lower(), ref.split("/")[-1].lower(), "cached")))
    return ModelLookup(out)


def png_with(path: Path, chunks: dict[str, str], size=(16, 16)) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, (40, 90, 160)).save(path, pnginfo=info)
    return path


def user_comment(text: str, charset: str = "unicode-be") -> bytes:
    """An EXIF UserComment as writers store it: the 8-byte charset prefix, then the text
    (A1111 uses piexif's UNICODE, UTF-16 big-endian; Windows tools write little-endian)."""
    if charset == "unicode-be":
        return b"UNICODE\0" + text.encode("utf-16-be")
    if charset == "unicode-le":
        return b"UNICODE\0" + text.encode("utf-16-le")
    return b"ASCII\0\0\0" + text.encode("ascii")


def with_exif(path: Path, comment: bytes | str, fmt: str, maker_note: str | None = None, in_exif_ifd: bool = True,
              size=(16, 16)) -> Path:
    exif = Image.Exif()
    if in_exif_ifd:
        exif.get_ifd(0x8769)[0x9286] = comment
    else:
        exif[0x9286] = comment  # Fooocus puts it in the base IFD
    if maker_note is not None:
        exif[0x927C] = maker_note
    Image.new("RGB", size, (200, 120, 40)).save(path, format=fmt, exif=exif)
    return path


def in_library(tmp_path: Path, kind: str, relative: str) -> str:
    """A file in a ComfyUI models folder (`relative` below models/), listed in the test's own
    model library under `kind`; its path."""
    from core.model_library import LibraryEntry, ModelLibrary

    path = tmp_path / "ComfyUI" / "models" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 16)
    lib = ModelLibrary.load()
    lib.add(LibraryEntry(path.stem, str(path), "comfyui", None, kind))
    lib.save()
    return str(path)
