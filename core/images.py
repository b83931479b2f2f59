"""Opening images a user gives (init images, control images, IP-Adapter references): the
pixel count is checked from the header before anything is decoded, so a file that claims
20000x20000 gets a sentence, not PIL's DecompressionBombError or an out-of-memory."""
from __future__ import annotations

from pathlib import Path

from core.errors import ProjectError

MAX_PIXELS = 8192 * 8192  # far beyond any model's size; the stage resizes to its own


def open_image(path: Path, what: str = "image"):
    """The image, loaded (RGB or as stored), or ProjectError naming `what` and the reason."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ProjectError([f"{what} {path.name} is {width}x{height}: more than "
                                    f"{MAX_PIXELS // 1_000_000} megapixels, too large to open"])
            im.load()
            return im.copy()
    except ProjectError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ProjectError([f"{what} {path} cannot be read as an image ({exc})"]) from exc
