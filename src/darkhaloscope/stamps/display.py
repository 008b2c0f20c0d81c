"""g/r/z colour composites of stamps for figures: `dhs simulate --preview` and the `dhs evaluate` galleries."""

from __future__ import annotations

import numpy as np

from darkhaloscope.stamps.robust import median_sigma
from darkhaloscope.stamps.schema import pixel_radius

SKY_RADIUS_PIX = 24  # pixels at r >= this from the centre give a stamp's own sky level and noise


def stamp_noise(image: np.ndarray) -> np.ndarray:
    """(3,) robust sky sigma of each band of one (3, H, W) stamp, from its outer pixels (floored at 1e-6)."""
    _, sigma = median_sigma(image[:, pixel_radius(image.shape[-1]) >= SKY_RADIUS_PIX], axis=1)
    return np.maximum(sigma, 1e-6)


NOISE_NMGY = (0.0018, 0.0030, 0.0080)  # typical per-pixel sigma g, r, z: each band is shown in S/N units


def lupton_rgb(image: np.ndarray, noise_nmgy=NOISE_NMGY, soft_snr: float = 4.0,
               max_snr: float = 150.0) -> np.ndarray:
    """(3, H, W) g/r/z nanomaggies -> (H, W, 3) RGB in [0, 1] (z red, r green, g blue).

    Each band is divided by its sky sigma (`noise_nmgy`: typical DR10 values by default, one fixed scale
    so that panels compare; `stamp_noise(image)` for the stamp's own), then the mean intensity is
    stretched with asinh(I / soft_snr) (Lupton et al. 2004: colours are kept, faint arcs show above the
    noise). Stamps are sky-subtracted nanomaggies, as in Phase 4c tiers and DR10 cutouts.
    """
    snr = np.asarray(image, np.float64) / np.asarray(noise_nmgy, np.float64).reshape(3, 1, 1)
    g, r, z = snr
    intensity = np.maximum((g + r + z) / 3.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.arcsinh(intensity / soft_snr) / np.arcsinh(max_snr / soft_snr)
        scale = np.where(intensity > 0, f / intensity, 0.0)
    rgb = np.stack([z, r, g], axis=-1).clip(0, None) * scale[..., None]
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = np.where(peak > 1, rgb / np.maximum(peak, 1e-12), rgb)
    return np.clip(rgb, 0.0, 1.0)
