"""Batched robust statistics of stamps: exact per-stamp, per-band median and MAD, vectorised.

`np.median(x, axis=...)` partitions around two pivots, which takes numpy's slow generic path
(~37 us per 4096-pixel band on the dev box). A single-pivot `np.partition` uses the SIMD
(AVX-512) selection and is ~10x faster; the lower middle value of an even-length band is then the
maximum of the half below the pivot. The results equal `np.median` up to float32 rounding.

Used by `dhs bench loader` as the vectorised normalisation (the training preprocessing may use its own).
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826  # robust sigma = 1.4826 x MAD for Gaussian noise
NORM_EPS_NMGY = 1e-8  # nanomaggies: keeps a blank (constant) band from dividing by zero
CHUNK_STAMPS = 16  # stamps per chunk: 16 x 48 KiB temporaries stay in L2 (~30 us/stamp vs ~44 unchunked)


def _middle(part: np.ndarray, k: int, n: int) -> np.ndarray:
    """Median of each row of `part`, already partitioned around index k = n // 2."""
    if n % 2:
        return part[:, k]
    return (part[:, :k].max(axis=1) + part[:, k]) * np.float32(0.5)


def median_sigma(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(median, robust sigma = 1.4826 MAD) along `axis`, with np.median (exact, any dtype): the sky level
    and noise of a set of pixels (an outer ring, a stamp's border) wherever the package needs them."""
    med = np.median(x, axis=axis, keepdims=True)
    sigma = MAD_TO_SIGMA * np.median(np.abs(x - med), axis=axis)
    return np.squeeze(med, axis=axis), sigma


def median_lastaxis(x: np.ndarray) -> np.ndarray:
    """Exact median along the last axis (float32 in, float32 out), vectorised over leading axes."""
    n = x.shape[-1]
    k = n // 2
    med = _middle(np.partition(x.reshape(-1, n), k, axis=1), k, n)
    return med.reshape(x.shape[:-1])


def median_mad(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-stamp, per-band (median, MAD) of (N, C, H, W) images, each (N, C)."""
    n, c = images.shape[:2]
    flat = images.reshape(n, c, -1)
    med = median_lastaxis(flat)
    mad = median_lastaxis(np.abs(flat - med[..., None]))
    return med, mad


def normalize_median_mad(images: np.ndarray, out: np.ndarray | None = None,
                         chunk_stamps: int = CHUNK_STAMPS) -> np.ndarray:
    """(x - median) / (1.4826 MAD + eps), per stamp and band: the users' Phase 5 normalisation, batched.

    Works through `chunk_stamps` stamps at a time so that the temporaries stay in cache; the one
    scratch array per chunk is partitioned for the median, then reused for |x - median|."""
    if out is None:
        out = np.empty(images.shape, dtype=np.float32)
    if out.shape != images.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {images.shape}")
    n_pix = images.shape[-1] * images.shape[-2]
    k = n_pix // 2
    for i in range(0, len(images), chunk_stamps):
        x = images[i:i + chunk_stamps].reshape(-1, n_pix)
        o = out[i:i + chunk_stamps].reshape(-1, n_pix)  # a view: out is C-contiguous
        scratch = np.partition(x, k, axis=1)
        med = _middle(scratch, k, n_pix)
        np.subtract(x, med[:, None], out=o)
        np.abs(o, out=scratch)
        scratch.partition(k, axis=1)
        mad = _middle(scratch, k, n_pix)
        o /= (MAD_TO_SIGMA * mad + NORM_EPS_NMGY).astype(np.float32)[:, None]
    return out


def normalize_median_mad_one(stamp: np.ndarray) -> np.ndarray:
    """The same normalisation the slow way, per band with `np.median`: what the users' loop ran."""
    out = np.empty_like(stamp, dtype=np.float32)
    for c in range(stamp.shape[0]):
        band = stamp[c]
        med = np.median(band)
        mad = np.median(np.abs(band - med))
        out[c] = (band - med) / (MAD_TO_SIGMA * mad + NORM_EPS_NMGY)
    return out
