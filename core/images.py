"""Images a user gives (init images, control images, IP-Adapter references, the images
inside a project file): the pixel count is checked from the header before anything is
decoded, and whatever is wrong with the file comes back as one ReadError naming it, never
PIL's DecompressionBombError, an out-of-memory or a traceback."""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

from core.errors import ReadError
from core.project import MAX_SIDE

# The most pixels an image read from outside may have: as large as the largest side a
# stage can work at, squared (8192 x 8192, 192 MiB as RGB); the stage resizes to its own.
# PIL's own limit is larger and raises an exception that names no file.
MAX_PIXELS = MAX_SIDE * MAX_SIDE


def pixel_problem(width: int, height: int, what: str) -> str | None:
    """Why an image of this size is not read, or None."""
    if width * height > MAX_PIXELS:
        return (f"{what} is {width}x{height} ({width * height / 1e6:.0f} MP), more than the "
                f"{MAX_PIXELS / 1e6:.0f} MP ({MAX_SIDE}x{MAX_SIDE}) Handoff reads")
    return None


def image_size(source: Path | bytes, what: str) -> tuple[int, int]:
    """(width, height) from the header alone; ReadError when it is not an image or too large."""
    return _open(source, what, load=False)[0]


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header alone, however many pixels that makes (None when no
    image format reads it): what a file is, told before any limit applies, so a refusal
    can name the size. PIL's own open refuses past its bomb limit without saying it."""
    from PIL import Image

    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:  # Image.open's own order, without its bomb check
                factory, accept = Image.OPEN[fmt]
                said = accept(prefix) if accept else True
                if not said or isinstance(said, str):  # a str: a warning, not a match
                    continue
                fp.seek(0)
                try:
                    return tuple(factory(fp, str(path)).size)
                except Exception:  # this plugin cannot read it after all (as Image.open goes on)
                    continue
    except OSError:
        return None
    return None


def read_image(source: Path | bytes, what: str):
    """The image as RGB, decoded only after its header's size was checked."""
    return _open(source, what, load=True)[1].convert("RGB")


def open_image(path: Path, what: str = "image"):
    """The image as stored (its mode kept), loaded; ReadError naming `what` and the file."""
    path = Path(path)
    return _open(path, f"{what} {path.name}", load=True)[1]


def _open(source: Path | bytes, what: str, load: bool):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns of sizes past its own limit, which is above ours: refused below anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        with im:  # only the header is read so far
            size = im.size
            problem = pixel_problem(*size, what)
            if problem:
                raise ReadError(problem)
            if not load:
                return size, None
            im.load()
            return size, im.copy()
    except ReadError:
        raise
    except Image.DecompressionBombError as exc:  # past PIL's own limit, raised before the size is ours to see
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"has {int(found.group(1)) / 1e6:.0f} MP, more than" if found else "has more pixels than"
        raise ReadError(f"{what} {count} the {MAX_PIXELS / 1e6:.0f} MP ({MAX_SIDE}x{MAX_SIDE}) Handoff reads") from None
    except FileNotFoundError:
        raise ReadError(f"{what} not found") from None
    except UnidentifiedImageError:
        raise ReadError(f"{what} cannot be read as an image (not an image file, or a format PIL does not know)") from None
    except Exception as exc:  # PIL's decoders raise many types for damaged data (OSError, ValueError, SyntaxError...)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ReadError(f"{what} cannot be read as an image ({reason})") from None
