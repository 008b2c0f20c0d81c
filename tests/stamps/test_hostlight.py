"""The host's smooth light (stamps.hostlight): a Sersic host is removed (>= 90 % of its light), an arc kept; the
batch is the stamps one at a time; blank, noisy and NaN-holed stamps give finite models."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.stamps.hostlight import (MAX_RADIUS_PIX, VALUE_BITS, HostShape, elliptical_radius, host_model,
                                            host_models, residual)

SIZE = 64
NOISE = np.array([0.002, 0.003, 0.008])  # nanomaggies per pixel: DR10-like g, r, z sky


def _sersic(q=0.7, angle=0.4, r_e=5.0, n=4.0, flux=(2.0, 5.0, 9.0), fwhm_px=4.6):
    """A red de Vaucouleurs (n = 4) host seen through 1.2" (4.6 px) Gaussian seeing, total flux per band in
    nanomaggies (bright: 5 nmgy = 20.75 mag in r)."""
    r = elliptical_radius(SIZE, HostShape(q, angle))
    b_n = 2 * n - 1 / 3  # the usual approximation of the Sersic b_n
    profile = np.exp(-b_n * ((r / r_e) ** (1 / n) - 1))
    k = np.fft.fftfreq(SIZE)
    psf_ft = np.exp(-2 * (np.pi * fwhm_px / 2.3548) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    seen = np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(profile)) * psf_ft).real  # centre at pixel 0 for the FFT
    seen = np.fft.fftshift(seen)
    return np.array(flux)[:, None, None] * seen / seen.sum()


def _arc(radius=9.0, flux=(0.3, 0.25, 0.12)):
    """A blue quarter ring at `radius` px (2.4"), 1 px wide: a lensed arc on the host's wings."""
    c = np.arange(SIZE) - SIZE // 2
    x, y = np.meshgrid(c, c)
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    ring = np.exp(-0.5 * ((r - radius) / 1.0) ** 2) * ((phi > 0.3) & (phi < 1.9))
    arc = np.array(flux)[:, None, None] * ring / ring.sum()
    return arc, ring > 0.3


INNER = np.hypot(*np.meshgrid(np.arange(SIZE) - 32, np.arange(SIZE) - 32)) < 15  # 4": the host and the arc


@pytest.mark.parametrize("q,angle", [(0.7, 0.4), (0.4, 1.0), (1.0, 0.0)])
def test_residual_removes_the_sersic_host_and_keeps_the_arc(q, angle):
    host, (arc, on_arc) = _sersic(q, angle), _arc()
    resid = residual(host + arc, NOISE)
    off = INNER & ~on_arc
    # >= 90 % of the host light removed, pixel by pixel, off the arc (measured 91.5-92.7 %, each band)
    left = np.abs(resid - arc)[:, off].sum(axis=1) / host[:, off].sum(axis=1)
    assert np.all(left < 0.10), left
    kept = resid[:, on_arc].sum(axis=1) / arc[:, on_arc].sum(axis=1)  # the arc: >= 85 % of it (measured 91-109 %)
    assert np.all((kept > 0.85) & (kept < 1.15)), kept


def test_residual_of_a_noisy_stamp_leaves_little_host_light():
    rng = np.random.default_rng(4)
    host, (arc, on_arc) = _sersic(), _arc()
    noise = rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE))
    resid = residual(host + arc + noise, NOISE)
    off = INNER & ~on_arc
    left = (resid - arc - noise)[:, off].sum() / host[:, off].sum()  # host light left, signed, bands summed
    assert abs(left) < 0.10, left  # measured 0.4-4.4 % over seeds 4-11
    kept = resid[:2, on_arc].sum(axis=1) / arc[:2, on_arc].sum(axis=1)  # g and r, where the blue arc is bright
    assert np.all(kept > 0.7), kept


def test_batch_equals_one_stamp_at_a_time_and_is_deterministic():
    rng = np.random.default_rng(5)
    shapes = [(0.5, 0.2), (0.9, 1.3), (0.35, -0.8), (1.0, 0.0)]
    stamps = np.stack([_sersic(q, a) + rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE)) for q, a in shapes])
    stamps[3] += _arc()[0]
    noise = np.tile(NOISE, (len(shapes), 1))
    batch, q, angle = host_models(stamps, noise)
    assert batch.dtype == np.float32 and batch.shape == stamps.shape
    for i, stamp in enumerate(stamps):
        one, shape = host_model(stamp, NOISE)
        np.testing.assert_array_equal(batch[i], one)  # a stamp's model does not depend on its batch
        assert (shape.axis_ratio, shape.angle_rad) == (q[i], angle[i])
    clean_q, clean_angle = host_models(np.stack([_sersic(q_in, a_in) for q_in, a_in in shapes]), noise)[1:]
    for (q_in, a_in), q_fit, a_fit in list(zip(shapes, clean_q, clean_angle))[:3]:  # each orientation is found;
        #   the seeing rounds the core the moments' window sees (q 0.35 -> 0.97): the axis ratio is only < 1
        assert abs(np.angle(np.exp(2j * (a_fit - a_in)))) < 0.01 and q_fit < 1
    np.testing.assert_array_equal(host_models(stamps, noise)[0], batch)


def test_blank_noisy_and_holed_stamps_give_finite_models():
    rng = np.random.default_rng(6)
    blank = np.zeros((3, SIZE, SIZE))
    noisy = rng.normal(0, 1.0, (3, SIZE, SIZE))
    holed = _sersic() + rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE))
    holed[1, 30:34, 30:34] = np.nan
    holed[2, 0, 0] = np.inf
    bright = noisy * 0.003
    bright[0, 10, 10] = 1e4  # a saturated star: the profile's value quantisation stays far below the noise
    models, q, angle = host_models(np.stack([blank, noisy, holed, bright]), np.tile([1.0, 1.0, 1.0], (4, 1)))
    assert np.isfinite(models).all() and np.isfinite(q).all() and np.isfinite(angle).all()
    assert np.all(models[0] == 0) and (q[0], angle[0]) == (1.0, 0.0)  # no light: a circle, a zero model
    assert np.abs(models[1]).max() < 1.0  # pure noise: medians of annuli, well inside the noise
    assert np.abs(models[3]).max() < 0.003  # the star moves no annulus median by more than the noise
    assert np.isfinite(residual(holed, NOISE)).all()


def test_annulus_and_value_fit_the_int32_sort_key():
    n_bins = int(MAX_RADIUS_PIX) + 1
    assert (n_bins - 1) << VALUE_BITS < 2**31  # the largest annulus number still leaves the sign bit alone
