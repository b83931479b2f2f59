"""The metadata texts an image carries, whatever the tool wrote them with: PNG text chunks
(tEXt, zTXt, iTXt), and for JPEG and WebP (and PNGs with an eXIf chunk) the EXIF
UserComment A1111, Forge and Fooocus write their `parameters` into, Fooocus's MakerNote
naming its metadata scheme, and Software. Every text comes back under the key a PNG would
hold it in, so the format readers see one shape."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import ReadError

USER_COMMENT, MAKER_NOTE, SOFTWARE, EXIF_IFD = 0x9286, 0x927C, 0x0131, 0x8769
# The 8-byte character-code prefix of an EXIF UserComment (EXIF 2.3, 4.6.5).
_CHARSETS = {b"ASCII\0\0\0": "ascii", b"UNICODE\0": "utf-16", b"JIS\0\0\0\0\0": "shift_jis", b"\0" * 8: "undefined"}


@dataclass
class ImageText:
    chunks: dict[str, str]  # key -> text, as PNG text chunks would hold them
    size: tuple[int, int]
    format: str  # "PNG", "JPEG", "WEBP"…


def read_texts(path: Path) -> ImageText:
    """Every metadata text of the image at `path`. Raises ReadError when it is not an
    image Pillow can open, or its metadata is damaged."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # text chunks after the image data are read with it
            chunks = {k: v for k, v in getattr(im, "text", {}).items() if isinstance(k, str) and isinstance(v, str)}
            for key in ("parameters", "prompt", "workflow", "Comment", "comment"):
                value = im.info.get(key)
                if key not in chunks and isinstance(value, (str, bytes)):
                    chunks[key] = value if isinstance(value, str) else value.decode("utf-8", "replace")
            _add_exif(im, chunks)
            return ImageText(chunks, im.size, im.format or path.suffix.lstrip(".").upper())
    except FileNotFoundError as exc:
        raise ReadError(f"{path.name}: the file is not there") from exc
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ReadError(f"{path.name} is not an image Handoff can read ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow's damaged-file and oversized-text-chunk errors.
        raise ReadError(f"{path.name}: the image or its metadata is damaged ({exc})") from exc


def _add_exif(im, chunks: dict[str, str]) -> None:
    exif = im.getexif()
    tags: dict[int, object] = dict(exif)
    try:
        tags.update({k: v for k, v in exif.get_ifd(EXIF_IFD).items()})
    except (KeyError, TypeError, ValueError, OSError, SyntaxError):
        pass  # no Exif sub-IFD, or one Pillow cannot follow: the base IFD still counts
    endian = getattr(exif, "endian", None) or ">"
    comment = decode_user_comment(tags.get(USER_COMMENT), endian)
    if comment and "parameters" not in chunks:
        chunks["parameters"] = comment
    note = tags.get(MAKER_NOTE)
    note = note.decode("ascii", "replace").strip("\0 ") if isinstance(note, bytes) else note
    if isinstance(note, str) and note in ("fooocus", "a1111") and "fooocus_scheme" not in chunks:
        chunks["fooocus_scheme"] = note
    software = tags.get(SOFTWARE)
    if isinstance(software, str) and "Software" not in chunks:
        chunks["Software"] = software.strip("\0 ")


def decode_user_comment(value: object, endian: str = ">") -> str | None:
    """The text of an EXIF UserComment: an 8-byte charset prefix, then the text (UNICODE:
    UTF-16 in the TIFF's byte order, though writers disagree, so the zero bytes decide);
    Pillow gives a str when the writer stored the text as ASCII without a prefix."""
    if isinstance(value, str):
        return value.strip("\0") or None
    if not isinstance(value, bytes) or not value:
        return None
    prefix, body = value[:8], value[8:]
    charset = _CHARSETS.get(prefix)
    if charset is None:  # no prefix at all: a writer that put the text in raw
        body, charset = value, "utf-8"
    if charset == "utf-16":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf-16", "replace")
        else:
            text = body.decode(_utf16_order(body, endian), "replace")
    elif charset in ("ascii", "undefined"):
        text = body.decode("utf-8", "replace")
    else:
        text = body.decode(charset, "replace")
    return text.strip("\0") or None


def _utf16_order(body: bytes, endian: str) -> str:
    """Mostly-Latin text has a zero in every other byte: the high byte comes first in
    big-endian UTF-16, second in little-endian."""
    even, odd = body[0:200:2].count(0), body[1:200:2].count(0)
    if even != odd:
        return "utf-16-be" if even > odd else "utf-16-le"
    return "utf-16-le" if endian == "<" else "utf-16-be"
