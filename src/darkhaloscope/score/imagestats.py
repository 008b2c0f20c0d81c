"""Per-stamp image statistics written by `dhs score` beside every score (the `img_*` columns): central and
total flux and colours, what the shortcut baselines of `dhs evaluate` fit a logistic regression on.
Exercise: `dhs score ... --image_stats=true` (the default).
"""

from __future__ import annotations

import numpy as np

from darkhaloscope.stamps.schema import BANDS, masked_pixels, pixel_radius

CENTRAL_RADIUS_PIX = 4  # "core" aperture radius: ~1.0" = the lens galaxy's core at 0.262"/pixel
TOTAL_RADIUS_PIX = 16  # "total" aperture radius: 4.2", encloses arcs of theta_E up to ~3"
MIN_FLUX_NMGY = 1e-4  # floor before taking magnitudes (22.5 - 2.5 log10(1e-4) = 32.5 AB mag)

def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-stamp statistics of (N, 3, H, W) nanomaggy images (sky = median of the outer border).

    img_core_flux_<b>   flux in r < 4 px [nmgy]            img_total_flux_<b>   flux in r < 16 px [nmgy]
    img_core_frac_<b>   core / total
    img_core_g_r, img_core_r_z, img_total_g_r, img_total_r_z   colours [AB mag]
    """
    x = images.astype(np.float64, copy=False)
    r = pixel_radius(x.shape[-1])
    border = r >= x.shape[-1] / 2 - 2
    sky = np.median(masked_pixels(x, border), axis=-1)  # (N, 3) nmgy per pixel
    x = x - sky[..., None, None]
    core = masked_pixels(x, r < CENTRAL_RADIUS_PIX).sum(-1)
    total = masked_pixels(x, r < TOTAL_RADIUS_PIX).sum(-1)
    out: dict[str, np.ndarray] = {}
    safe_total = np.where(np.abs(total) > MIN_FLUX_NMGY, total, MIN_FLUX_NMGY)
    for i, b in enumerate(BANDS):
        out[f"img_core_flux_{b}"] = core[:, i]
        out[f"img_total_flux_{b}"] = total[:, i]
        out[f"img_core_frac_{b}"] = core[:, i] / safe_total[:, i]

    def colour(f, a, b):
        return -2.5 * np.log10(np.maximum(f[:, a], MIN_FLUX_NMGY) / np.maximum(f[:, b], MIN_FLUX_NMGY))
    out["img_core_g_r"], out["img_core_r_z"] = colour(core, 0, 1), colour(core, 1, 2)
    out["img_total_g_r"], out["img_total_r_z"] = colour(total, 0, 1), colour(total, 1, 2)
    return {k: v.astype(np.float32) for k, v in out.items()}
