"""How far a refine stage moved its input: SSIM on luminance and a mean colour shift.

SSIM is Wang et al. (2004): an 11×11 Gaussian window (sigma 1.5), C1 = (0.01 L)², C2 =
(0.03 L)² with L = 255, on BT.601 luma, averaged over the valid region (a window smaller
than the image where the image is small). The colour shift is the mean CIE76 ΔE between
the two images in CIELAB (D65): about 2.3 is a just-noticeable difference, above 10 the
colours read as different. Pure numpy: no image-processing dependency.

The warning band follows what users report for two-pass refinement: a refine at strength
above 0.5 may change the composition and any text, and a low SSIM says it did.
"""
from __future__ import annotations

from dataclasses import dataclass

STRENGTH_LIMIT = 0.5  # above this a refine may change composition and text
SSIM_LIMIT = 0.6  # below this the structure changed noticeably
DELTA_E_LIMIT = 10.0  # above this the colours read as different


@dataclass(frozen=True)
class Drift:
    ssim: float  # 1: the same structure
    delta_e: float  # mean CIE76 ΔE
    warning: str = ""  # why this refine may have changed more than detail; "" when it did not
    # The input was a cheap preview of handed-over latents (core.previews), not a decode:
    # the colour shift then includes the preview's own error.
    against_preview: bool = False

    def label(self) -> str:
        return (f"SSIM {self.ssim:.3f} ΔE {self.delta_e:.1f}" + (" (vs preview)" if self.against_preview else "")
                + (" ⚠" if self.warning else ""))

    def to_dict(self) -> dict:
        return {"ssim": round(self.ssim, 4), "delta_e": round(self.delta_e, 3), "warning": self.warning,
                "against_preview": self.against_preview}


def measure(before, after, strength: float | None = None, against_preview: bool = False) -> Drift:
    """The drift from PIL image `before` to `after` (resized to `before`'s size if it differs)."""
    import numpy as np
    from PIL import Image

    if after.size != before.size:
        after = after.resize(before.size, Image.LANCZOS)
    a = np.asarray(before.convert("RGB"), dtype=np.float64)
    b = np.asarray(after.convert("RGB"), dtype=np.float64)
    s, d = ssim(luma(a), luma(b)), delta_e(a, b)
    return Drift(s, d, warning(s, d, strength), against_preview)


def warning(ssim_value: float, delta_e_value: float, strength: float | None) -> str:
    reasons = []
    if strength is not None and strength > STRENGTH_LIMIT:
        reasons.append(f"strength {strength:g} > {STRENGTH_LIMIT:g} may change composition and text")
    if ssim_value < SSIM_LIMIT:
        reasons.append(f"SSIM {ssim_value:.2f} < {SSIM_LIMIT:g}: the structure changed")
    if delta_e_value > DELTA_E_LIMIT:
        reasons.append(f"ΔE {delta_e_value:.1f} > {DELTA_E_LIMIT:g}: the colours shifted")
    return "; ".join(reasons)


def luma(rgb):
    return rgb @ [0.299, 0.587, 0.114]


def _gaussian(size: int, sigma: float):
    import numpy as np

    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter(img, g):
    """Separable 'valid' correlation with the 1-D window g along both axes."""
    n = len(g)
    rows = sum(g[k] * img[k: img.shape[0] - n + 1 + k, :] for k in range(n))
    return sum(g[k] * rows[:, k: rows.shape[1] - n + 1 + k] for k in range(n))


def ssim(x, y, data_range: float = 255.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of two 2-D arrays (Wang et al. 2004, Gaussian-weighted)."""
    window = min(window, x.shape[0], x.shape[1])
    g = _gaussian(window, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def to_lab(rgb):
    """sRGB (0..255) to CIELAB, D65 white."""
    import numpy as np

    c = rgb / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps = 216 / 24389
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e(a, b) -> float:
    """Mean CIE76 ΔE of two sRGB arrays (0..255)."""
    import numpy as np

    return float(np.sqrt(((to_lab(a) - to_lab(b)) ** 2).sum(axis=-1)).mean())
