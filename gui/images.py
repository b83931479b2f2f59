"""PIL <-> Qt image conversion. Runs on the GUI thread: QImage may be made anywhere,
but the QPixmaps built from these only on the GUI thread."""
from __future__ import annotations

import io
import weakref
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage


def pil_to_qimage(image) -> QImage:
    """A deep copy, so the QImage does not point into memory PIL may free."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    data = image.tobytes()
    fmt = QImage.Format_RGBA8888 if image.mode == "RGBA" else QImage.Format_RGB888
    bytes_per_line = image.width * (4 if image.mode == "RGBA" else 3)
    return QImage(data, image.width, image.height, bytes_per_line, fmt).copy()


# id(PIL image) -> (a weak reference to it, its QImage). PIL images compare by value and
# do not hash, so they are known by identity; the entry goes when the image does.
_shown: dict[int, tuple[weakref.ref, QImage]] = {}


def qimage_of(image) -> QImage | None:
    """The QImage of a PIL image held by the document (core.document), converted once and
    kept while the PIL image lives, so the views show the same object each time."""
    if image is None:
        return None
    key = id(image)
    entry = _shown.get(key)
    if entry is not None and entry[0]() is image:
        return entry[1]
    q = pil_to_qimage(image)
    _shown[key] = (weakref.ref(image, lambda _ref, key=key: _shown.pop(key, None)), q)
    return q


def qimage_to_png(image: QImage) -> bytes:
    buf = QBuffer()
    buf.open(QIODevice.WriteOnly)
    image.save(buf, "PNG")
    return bytes(buf.data())


def png_to_qimage(data: bytes) -> QImage:
    image = QImage()
    image.loadFromData(QByteArray(data))
    return image


def pil_to_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height of an image file, read from its header only."""
    from PySide6.QtGui import QImageReader

    reader = QImageReader(str(path))
    size = reader.size()
    if not size.isValid():
        return None
    return size.width(), size.height()
