"""Draw Handoff's icon, resources/icon.png: two overlapping tiles, a soft one handing over
to a sharp one (base -> refiner). Drawn here so it can be regenerated and changed.

    python packaging/make_icon.py [--out resources/icon.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent


def draw(size: int = 256) -> Image.Image:
    ss = 4  # supersample, then downscale for smooth edges
    s = size * ss
    icon = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(icon)
    r = s // 9
    # back tile: the base stage's soft rendering
    back = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ImageDraw.Draw(back).rounded_rectangle((s * 0.06, s * 0.06, s * 0.66, s * 0.66), r, fill=(48, 72, 200, 255))
    ImageDraw.Draw(back).ellipse((s * 0.18, s * 0.18, s * 0.50, s * 0.50), fill=(214, 48, 48, 255))
    icon.alpha_composite(back.filter(ImageFilter.GaussianBlur(s * 0.012)))
    # front tile: the refiner's crisp one, with an outline
    d.rounded_rectangle((s * 0.34, s * 0.34, s * 0.94, s * 0.94), r, fill=(30, 52, 180, 255),
                        outline=(255, 255, 255, 255), width=max(2, s // 64))
    d.ellipse((s * 0.46, s * 0.46, s * 0.78, s * 0.78), fill=(232, 40, 40, 255), outline=(20, 20, 20, 255),
              width=max(2, s // 96))
    return icon.resize((size, size), Image.LANCZOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "resources" / "icon.png")
    args = ap.parse_args()
    draw().save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
