"""Measurements on the demo family's 64x64 images, as plain functions of PIL images (or
numpy masks), so that any test can reuse them: the ControlNet's (edge maps, the region
they enclose, the drawn shape's mask, IoU) and the LoRA's (a checkerboard score and the
fraction of black-and-white pixels). numpy only, plus OpenCV (cv2) for the Canny edges
and the flood fill."""
from __future__ import annotations

import math

import numpy as np

CANNY = (100, 200)  # the thresholds resources/demo/train_adapters.py trains the ControlNet with
# the colors resources/demo/train.py paints with (its RGB)
PALETTE = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (40, 170, 50),
    "cyan": (40, 210, 220), "blue": (30, 60, 210), "purple": (130, 40, 180), "pink": (245, 130, 190),
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128), "brown": (130, 80, 35),
}
# Control scenes no part of the demo was trained on. The base saw shapes centred within
# 8 pixels of the middle (x and y in 24..40), turned at most 12 degrees; the ControlNet saw
# them anywhere they fit EXCEPT centred at x > 40 and y > 40 (train_adapters.HELD_OUT), turned
# at most 12 degrees too. These sit in that held-out corner, and the triangle points down
# (turned 180 degrees) and the square stands on a corner (45 degrees).
# (shape, (cx, cy), radius, angle in degrees, shape color, background color)
HELD_OUT_SCENES = [
    ("triangle", (45.0, 45.0), 11.0, 180.0, "red", "blue"),
    ("square", (45.0, 45.0), 12.0, 45.0, "yellow", "purple"),
    ("circle", (47.0, 47.0), 10.0, 0.0, "green", "black"),
]


def rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def luma(image) -> np.ndarray:
    return rgb(image) @ np.array([0.299, 0.587, 0.114])


def draw_scene(shape: str, center: tuple[float, float], radius: float, angle: float = 0.0,
               color: str = "red", background: str = "blue", supersample: int = 4):
    """A 64x64 scene as resources/demo/train.py draws one (its shape geometry, its colors,
    supersampled and softened by a 0.9-pixel blur), at any placement: a circle of the
    radius, or a square / triangle / star whose corners lie 1.05 / 1.2 / 1.15 radii from the
    center, turned `angle` degrees clockwise (0: a square sits on a side, a triangle and a
    star point up)."""
    from PIL import Image, ImageDraw, ImageFilter

    k, (cx, cy), r = supersample, center, radius
    image = Image.new("RGB", (64 * k, 64 * k), PALETTE[background])
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k], fill=PALETTE[color])
    else:
        start, reach = {"square": (45.0, [1.05] * 4), "triangle": (-90.0, [1.2] * 3),
                        "star": (-90.0, [1.15, 0.5] * 5)}[shape]
        step = 360.0 / len(reach)
        points = [((cx + q * r * math.cos(math.radians(start + angle + i * step))) * k,
                   (cy + q * r * math.sin(math.radians(start + angle + i * step))) * k) for i, q in enumerate(reach)]
        draw.polygon(points, fill=PALETTE[color])
    return image.resize((64, 64), Image.BOX).filter(ImageFilter.GaussianBlur(0.9))


def edge_map(scene):
    """The ControlNet's control image for a drawn scene: cv2.Canny(scene, 100, 200) on the
    RGB pixels, as a 3-channel 0/255 image (what train_adapters.canny gives)."""
    import cv2
    from PIL import Image

    edges = cv2.Canny(np.ascontiguousarray(np.asarray(scene.convert("RGB"), dtype=np.uint8)), *CANNY)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=-1))


def edge_region(edges) -> np.ndarray:
    """The region an edge map encloses, filled (bool HxW): the pixels not reachable from the
    image border without crossing an edge. The edges are thickened by one pixel first, so
    that a diagonal step in a Canny line does not leak, and the region is thinned by one
    pixel after, so that it is not the bigger for it."""
    import cv2

    e = (rgb(edges).max(axis=-1) > 127).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    walls = cv2.dilate(e, kernel)
    h, w = walls.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = walls
    flood_mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(padded, flood_mask, (0, 0), 2)  # from the padding, which surrounds the image
    inside = (padded[1:-1, 1:-1] != 2).astype(np.uint8)
    return cv2.erode(inside, kernel).astype(bool)


def frame_median(a: np.ndarray, width: int = 4) -> np.ndarray:
    """The median color of a frame `width` pixels wide around the image: its background."""
    frame = np.concatenate([a[:width].reshape(-1, 3), a[-width:].reshape(-1, 3),
                            a[:, :width].reshape(-1, 3), a[:, -width:].reshape(-1, 3)])
    return np.median(frame, axis=0)


def shape_mask(image, threshold: float = 90.0) -> np.ndarray:
    """The drawn shape (bool HxW): the pixels whose color is far (RGB distance > threshold)
    from the background, the median of the border frame (as tests/test_demo_semantics.py)."""
    a = rgb(image)
    return np.linalg.norm(a - frame_median(a), axis=-1) > threshold


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def frame(size: int = 64, width: int = 16) -> np.ndarray:
    """A bool mask of the border frame `width` pixels wide: where the demo's shape, drawn
    near the middle, seldom reaches (only a big one's corners), so it is background."""
    m = np.ones((size, size), bool)
    m[width:-width, width:-width] = False
    return m


def checker_score(image, cell: int = 8, where: np.ndarray | None = None, cover: float = 0.5) -> float:
    """How much the image's luma is a checkerboard of `cell`-pixel cells, locally: in every
    window of 2x2 cells (stride one cell) with at least `cover` of its pixels `where`
    (default: all), the largest Pearson correlation, over the board's cell phases, between
    those pixels' luma and a +-1 board; the mean over the windows. Local, because the toy
    model's boards drift in phase across the image (a cell too wide here and there), which
    a single whole-image correlation counts as failure. 1 for a drawn board of any two
    tones, shifted or not; 0.2-0.4 for the demo's plain, gradient, dotted or textured backgrounds
    (the best of 64 phases fits some of the grain); a striped background scores low, as a
    window holds one whole period of the board across the stripes."""
    y = luma(image)
    where = np.ones(y.shape, bool) if where is None else where
    yy, xx = np.mgrid[0:2 * cell, 0:2 * cell]
    boards = [np.where(((yy + oy) // cell + (xx + ox) // cell) % 2 == 0, 1.0, -1.0)
              for oy in range(cell) for ox in range(cell)]
    scores = []
    for y0 in range(0, y.shape[0] - 2 * cell + 1, cell):
        for x0 in range(0, y.shape[1] - 2 * cell + 1, cell):
            m = where[y0:y0 + 2 * cell, x0:x0 + 2 * cell]
            if m.mean() < cover:
                continue
            v = y[y0:y0 + 2 * cell, x0:x0 + 2 * cell][m]
            v = v - v.mean()
            best = 0.0
            if (v * v).sum() > 0:
                for board in boards:
                    b = board[m] - board[m].mean()
                    best = max(best, abs(float((v * b).sum() / np.sqrt((v * v).sum() * (b * b).sum()))))
            scores.append(best)
    return float(np.mean(scores)) if scores else 0.0


def color_fraction(image, color: str, within: float = 90.0) -> float:
    """The fraction of the image's pixels within RGB distance `within` of a palette color."""
    return float((np.linalg.norm(rgb(image) - np.asarray(PALETTE[color], float), axis=-1) < within).mean())


def black_white_fraction(image, where: np.ndarray | None = None) -> float:
    """The fraction of the pixels `where` (default all) that are near-black or near-white:
    colorless (max - min channel < 60) and of luma below 70 or above 180."""
    a = rgb(image)
    y = a @ np.array([0.299, 0.587, 0.114])
    gray = (a.max(axis=-1) - a.min(axis=-1)) < 60
    bw = gray & ((y < 70) | (y > 180))
    where = np.ones(y.shape, bool) if where is None else where
    return float(bw[where].mean())
