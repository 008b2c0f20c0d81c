"""The host's smooth light: a fast elliptical model of the central galaxy, fitted per stamp, for subtraction.

Arcs sit on the wings of the lens galaxy and hide under them; subtracting the host's light leaves them (and
rings, spiral arms, companions) on a flat background. One implementation, numpy only (torch-free), vectorised
over a batch of stamps, serves both users: the "residual" panel of `dhs grade serve` (one stamp) and the
`host_light=subtract` input view of training and scoring (`models.preprocess.prepare_batch`, whole batches).

1. Shape: flux-weighted second moments of the central galaxy on the band-summed S/N image, inside a
   Gaussian window of `WINDOW_SIGMA_PIX` around the centre pixel, iterated `MOMENT_ITERATIONS` times with
   the window stretched to the current ellipse (adaptive moments); axis ratio floored at `MIN_AXIS_RATIO`.
2. Profile: in each band, the median of the pixels in elliptical annuli of width `ANNULUS_WIDTH_PIX`
   (elliptical radius = semi-major axis). A median ignores an arc that covers less than half of an
   annulus, so the arc stays in the residual. The profile is then made non-increasing outwards (running
   minimum from the centre): a galaxy's light falls with radius, so a complete Einstein ring, which lifts
   the median of its annuli, is not taken for host light and stays in the residual too.
3. Model = that median profile interpolated linearly in elliptical radius between the annuli's mean radii
   (held flat beyond the first and last); residual = stamp - model.

Non-finite pixels count as 0 in the fit (a blank or NaN-holed stamp gives a finite model). Deterministic: no
random draws; a stamp's model does not depend on the batch it is in. Cost: ~0.9 ms CPU per 64x64x3 stamp in a
batch of 64 (prepare_batch: 0.15 -> 1.03 ms CPU per stamp on this 2-core box, 2026-12-07, load 2-5; the
training cost: benchmarks/RESULTS.md, "host-light view"). Tests: tests/stamps/test_hostlight.py,
tests/grade/test_images.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_SIGMA_PIX = 4.0  # Gaussian weight of the moments: ~1" (the half-light radius of a typical lens galaxy)
MOMENT_ITERATIONS = 3  # adaptive-moment passes; the shape settles in 2-3 on simulated and DR10 hosts
MOMENT_HALF_WIDTH_PIX = 24  # the moments' pixels: 6 window sigmas about the centre (48 px = 12.6")
MIN_AXIS_RATIO = 0.3  # b/a floor: a flatter fit is a blend or an edge-on disc, where rounder is safer
ANNULUS_WIDTH_PIX = 1.0  # pixels (0.262"): the median profile's resolution along the semi-major axis
MAX_RADIUS_PIX = 30.0  # annuli beyond this hold the sky: the model is the outermost median there
VALUE_BITS = 26  # a pixel's rank key in an annulus: 2^26 levels between the stamp's min and max (5 bits left
VALUE_LEVELS = (1 << VALUE_BITS) - 1  # for the annulus number, < 32: MAX_RADIUS_PIX / ANNULUS_WIDTH_PIX + 1)


@dataclass(frozen=True)
class HostShape:
    """The host's ellipse: axis ratio b/a, position angle (radians, from the +x axis, counter-clockwise)."""

    axis_ratio: float
    angle_rad: float


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(c, c, indexing="xy")  # x: column offset, y: row offset from the centre pixel


def _radii(x: np.ndarray, y: np.ndarray, axis_ratio: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """(B, *x.shape) semi-major-axis radius at offsets (x, y) from the centre, for B ellipses; x's dtype."""
    cos = np.cos(angle_rad).astype(x.dtype)[:, None, None]
    sin = np.sin(angle_rad).astype(x.dtype)[:, None, None]
    major = x * cos + y * sin
    minor = (y * cos - x * sin) / np.asarray(axis_ratio).astype(x.dtype)[:, None, None]
    return np.sqrt(major * major + minor * minor)


def elliptical_radii(size: int, axis_ratio: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """(B, size, size) semi-major-axis radius (pixels) of every pixel, for B ellipses (axis ratios, angles)."""
    return _radii(*_grid(size), axis_ratio, angle_rad)


def elliptical_radius(size: int, shape: HostShape) -> np.ndarray:
    """(size, size) semi-major-axis radius in pixels of every pixel on the ellipse family of `shape`."""
    return elliptical_radii(size, np.array([shape.axis_ratio]), np.array([shape.angle_rad]))[0]


def host_shapes(detection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive second moments of the central source of B (H, W) S/N images (sky ~0): (axis ratios, angles),
    each (B,). A stamp with no positive light inside the window gets a circle (1, 0).

    Only the central (2 x MOMENT_HALF_WIDTH_PIX + 1)^2 pixels enter (the window weighs pixels further out by
    < 1.5e-8: an elliptical radius is never less than the distance), in float32 (~2x faster than float64)."""
    size = detection.shape[-1]
    lo = max(size // 2 - MOMENT_HALF_WIDTH_PIX, 0)
    hi = min(size // 2 + MOMENT_HALF_WIDTH_PIX + 1, size)
    centre = np.asarray(detection)[:, lo:hi, lo:hi]
    flux = np.maximum(np.nan_to_num(centre.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    x, y = (g[lo:hi, lo:hi].astype(np.float32) for g in _grid(size))
    products = np.stack([x * x, y * y, x * y]).reshape(3, -1)
    q = np.ones(detection.shape[0])
    angle = np.zeros(detection.shape[0])
    for _ in range(MOMENT_ITERATIONS):
        r_ell = _radii(x, y, q, angle)
        w = (flux * np.exp(-0.5 * (r_ell / np.float32(WINDOW_SIGMA_PIX)) ** 2)).reshape(len(q), -1)
        total = w.sum(axis=1, dtype=np.float64)
        lit = total > 0
        # a row-wise sum, not a matmul: BLAS kernels vary with the batch size, this gives every stamp the same
        # ellipse whatever batch it is in (a score does not depend on its neighbours)
        xx, yy, xy = (w[:, None, :] * products).sum(axis=-1, dtype=np.float64).T / np.where(lit, total, 1.0)
        trace, diff = xx + yy, np.hypot(xx - yy, 2 * xy)
        major, minor = (trace + diff) / 2, np.maximum((trace - diff) / 2, 0.0)
        ratio = np.sqrt(np.divide(minor, major, out=np.ones_like(major), where=major > 0))
        q = np.where(lit, np.maximum(ratio, MIN_AXIS_RATIO), 1.0)
        angle = np.where(lit, 0.5 * np.arctan2(2 * xy, xx - yy), 0.0)
    return q, angle


def host_shape(detection: np.ndarray) -> HostShape:
    """Adaptive second moments of the central source of one (H, W) S/N image (sky ~0)."""
    q, angle = host_shapes(np.asarray(detection)[None])
    return HostShape(float(q[0]), float(angle[0]))


def _annulus_medians(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """(B, C, n_bins) median of values (B, C, N) in each annulus of bins (B, N); +inf where an annulus is empty.

    One sort per stamp and band of the int32 key (annulus << 26 | value quantised to 26 bits between the
    stamp's minimum and maximum): each annulus's pixels end up together, in value order, so its median is the
    middle of its run. A plain value sort (numpy's SIMD sort) is ~9x an argsort with the annulus as a second
    key; the quantisation step is 1.5e-8 of the stamp's range (a pixel 10^4 x the sky noise still leaves it
    ~10^-4 of the noise)."""
    b, c, n = values.shape
    values = values.astype(np.float64)  # the quantisation in float64: float32 steps would merge close values
    lo = values.min(axis=-1, keepdims=True)
    span = values.max(axis=-1, keepdims=True) - lo
    step = np.where(span > 0, span, 1.0) / VALUE_LEVELS
    key = np.sort((bins[:, None, :].astype(np.int32) << VALUE_BITS)
                  | np.rint((values - lo) / step).astype(np.int32), axis=-1)
    counts = np.bincount((bins + n_bins * np.arange(b)[:, None]).ravel(), minlength=b * n_bins).reshape(b, n_bins)
    starts = np.cumsum(counts, axis=1) - counts
    low = np.clip(starts + (counts - 1) // 2, 0, n - 1)[:, None, :]
    high = np.clip(starts + counts // 2, 0, n - 1)[:, None, :]
    level = (np.take_along_axis(key, low, axis=-1) & VALUE_LEVELS) + (np.take_along_axis(key, high, axis=-1) & VALUE_LEVELS)
    return np.where(counts[:, None, :] > 0, lo + 0.5 * level * step, np.inf)


def host_models(images: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, C, H, W) float32 smooth elliptical models of the hosts (the images' units), and their axis ratios
    and angles (B,). `noise` (B, C): each band's sky sigma (> 0), to sum the bands in S/N for the shape."""
    images = np.asarray(images, np.float32)
    images = np.where(np.isfinite(images), images, np.float32(0.0))
    b, c, h, w = images.shape
    q, angle = host_shapes((images / np.asarray(noise, np.float32).reshape(b, c, 1, 1)).sum(axis=1))
    r_ell = _radii(*(g.astype(np.float32) for g in _grid(w)), q, angle).reshape(b, h * w)
    n_bins = int(MAX_RADIUS_PIX / ANNULUS_WIDTH_PIX) + 1
    bins = np.minimum(r_ell // np.float32(ANNULUS_WIDTH_PIX), n_bins - 1).astype(np.int32)
    median = _annulus_medians(images.reshape(b, c, h * w), bins, n_bins)
    median = np.minimum.accumulate(median, axis=-1).astype(np.float32)  # never rising outwards (and an empty
    #                                                                      annulus: the model of the one inside)
    offset = n_bins * np.arange(b, dtype=np.int32)[:, None]  # annulus k of stamp i is flat node i * n_bins + k
    counts = np.bincount((bins + offset).ravel(), minlength=b * n_bins)
    sums = np.bincount((bins + offset).ravel(), weights=r_ell.ravel(), minlength=b * n_bins)
    mid = np.tile((np.arange(n_bins) + 0.5) * ANNULUS_WIDTH_PIX, b)  # an empty annulus's node
    centres = np.where(counts > 0, sums / np.maximum(counts, 1), mid).astype(np.float32)  # increasing: annulus
    #                                                                                    k's mean radius lies in it
    # linear interpolation in r_ell between the nodes (np.interp's, batched): node j <= r < node j + 1
    j = np.clip(bins - (r_ell < np.take(centres, bins + offset)), 0, n_bins - 2) + offset
    c0, c1 = np.take(centres, j), np.take(centres, j + 1)
    t = np.clip((r_ell - c0) / (c1 - c0), 0.0, 1.0)[:, None, :]
    node = (j - offset)[:, None, :] + (n_bins * np.arange(b * c, dtype=np.int32)).reshape(b, c, 1)
    m0, m1 = np.take(median, node), np.take(median, node + 1)  # np.take: ~2x fancy indexing
    return (m0 + t * (m1 - m0)).reshape(b, c, h, w), q, angle


def host_model(image: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, HostShape]:
    """(C, H, W) smooth elliptical model of one stamp's host (nanomaggies), and the fitted ellipse.

    `noise` (C,): each band's sky sigma, to sum the bands in S/N for the shape."""
    model, q, angle = host_models(np.asarray(image)[None], np.asarray(noise, np.float64)[None])
    return model[0], HostShape(float(q[0]), float(angle[0]))


def residual(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(C, H, W) stamp minus its host model (nanomaggies): what is not smooth and elliptical."""
    model, _ = host_model(image, noise)
    return np.nan_to_num(np.asarray(image, np.float32)) - model
