"""The panels of one candidate in `dhs grade serve`: PNG bytes of a (3, 64, 64) g/r/z stamp, every view at once.

Views (`VIEWS`, in page order):
- `asinh`: the Lupton et al. (2004) colour composite of `dhs candidates` (stamps.display.lupton_rgb, each band
  in S/N units of the stamp's own sky noise): colours kept, faint arcs above the noise.
- `linear`: the same colours on a linear scale from 0 to the 99.5th percentile of the intensity: the true
  contrast between the galaxy and an arc.
- `contrast`: asinh with a low saturation (`CONTRAST_MAX_SNR`): the core burns out, everything >= 1 sigma
  shows: the view for the faintest arcs.
- `g`, `r`, `z`: each band alone, grey, asinh of its S/N.
- `residual`: the stamp minus a smooth elliptical model of the host (stamps.hostlight), as an asinh composite.

The panels go out as one PNG, side by side in VIEWS order (64 x 448 pixels, RGB; the single bands grey): one
request per candidate instead of seven, which is what the page waits for on a loaded server. Row 0 is at the
bottom (as the `dhs evaluate` galleries and `dhs candidates`); the page cuts the strip into its panels and
scales them up with nearest-neighbour. Encoded here with zlib (no imaging library).
Exercised by `dhs grade serve` and tests/grade/test_images.py.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from darkhaloscope.stamps.hostlight import residual
from darkhaloscope.stamps.display import lupton_rgb, stamp_noise

VIEWS = ("asinh", "linear", "contrast", "g", "r", "z", "residual")
CONTRAST_MAX_SNR = 15.0  # S/N that saturates the high-contrast view (the default asinh view saturates at 150)
CONTRAST_SOFT_SNR = 1.5  # S/N where its asinh turns from linear to logarithmic
BAND_MAX_SNR = 60.0  # S/N that saturates a single-band panel
RESIDUAL_MAX_SNR = 25.0  # the residual holds little flux: a lower saturation than the composite
LINEAR_PERCENTILE = 99.5  # the linear view's white point, percent of the intensity pixels


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W) array in [0, 1] -> an 8-bit RGB / grey PNG file's bytes (top row first)."""
    a = np.clip(np.nan_to_num(np.asarray(pixels, np.float64)), 0.0, 1.0)
    a = np.round(a * 255).astype(np.uint8)
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, -1)], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def _linear_rgb(snr: np.ndarray) -> np.ndarray:
    intensity = np.maximum(snr.mean(axis=0), 0.0)
    white = max(float(np.percentile(intensity, LINEAR_PERCENTILE)), 1e-6)
    rgb = np.stack([snr[2], snr[1], snr[0]], axis=-1) / white
    return np.clip(rgb, 0.0, 1.0)


def _band(snr: np.ndarray) -> np.ndarray:
    return np.clip(np.arcsinh(np.maximum(snr, 0.0) / 2.0) / np.arcsinh(BAND_MAX_SNR / 2.0), 0.0, 1.0)


def render_views(image: np.ndarray) -> bytes:
    """Every view of one (3, H, W) g/r/z stamp in nanomaggies -> one PNG strip of the panels in VIEWS order."""
    image = np.nan_to_num(np.asarray(image, np.float64))
    noise = stamp_noise(image)
    snr = image / noise.reshape(3, 1, 1)
    panels = {
        "asinh": lupton_rgb(image, noise),
        "linear": _linear_rgb(snr),
        "contrast": lupton_rgb(image, noise, soft_snr=CONTRAST_SOFT_SNR, max_snr=CONTRAST_MAX_SNR),
        "g": _band(snr[0]),
        "r": _band(snr[1]),
        "z": _band(snr[2]),
        "residual": lupton_rgb(residual(image, noise), noise, max_snr=RESIDUAL_MAX_SNR),
    }
    rgb = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=-1) for p in (panels[name] for name in VIEWS)]
    return png_bytes(np.concatenate(rgb, axis=1)[::-1])
