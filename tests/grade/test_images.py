"""The panels of `dhs grade serve`: valid PNGs of the stamp, and a residual view that removes a smooth
elliptical host and keeps an arc (checked against the known host and arc of a hand-made stamp)."""

from __future__ import annotations

import io
import zlib

import numpy as np

from darkhaloscope.grade.images import VIEWS, png_bytes, render_views
from darkhaloscope.stamps.hostlight import HostShape, elliptical_radius, host_model, host_shape

SIZE = 64
NOISE = np.array([0.002, 0.003, 0.008])


def _host(q=0.6, angle=0.5, r_e=4.0, flux=(0.3, 0.8, 1.2)):
    r = elliptical_radius(SIZE, HostShape(q, angle))
    profile = np.exp(-(r / r_e))  # an exponential disc: smooth, elliptical
    return np.array(flux)[:, None, None] * profile / profile.sum() * 60


def _arc(radius=10.0, flux=0.04):
    """A blue arc: a quarter of a ring at `radius` px, 1 px wide."""
    c = np.arange(SIZE) - SIZE // 2
    x, y = np.meshgrid(c, c)
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    ring = np.exp(-0.5 * ((r - radius) / 1.0) ** 2) * ((phi > 0.2) & (phi < 1.8))
    return np.array([flux, flux * 0.8, flux * 0.4])[:, None, None] * ring, ring > 0.5


def _decode_png(data: bytes) -> np.ndarray:
    """Our own PNGs: one IDAT, filter 0 on every row (what png_bytes writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, colour = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), data[24], data[25]
    idat = data.index(b"IDAT")
    size = int.from_bytes(data[idat - 4:idat], "big")
    raw = np.frombuffer(zlib.decompress(data[idat + 4:idat + 4 + size]), np.uint8)
    channels = 3 if colour == 2 else 1
    rows = raw.reshape(h, 1 + w * channels)
    assert depth == 8 and (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, channels)


def test_png_bytes_round_trip():
    a = np.random.default_rng(0).random((5, 7, 3))
    back = _decode_png(png_bytes(a))
    assert back.shape == (5, 7, 3) and np.abs(back / 255.0 - a).max() <= 0.5 / 255 + 1e-9
    grey = _decode_png(png_bytes(np.linspace(0, 1, 12).reshape(3, 4)))
    assert grey.shape == (3, 4, 1) and grey[0, 0, 0] == 0 and grey[-1, -1, 0] == 255
    try:
        import matplotlib.pyplot as plt  # an independent PNG reader, where installed
    except ImportError:
        return
    assert np.allclose(plt.imread(io.BytesIO(png_bytes(a)))[..., :3], np.round(a * 255) / 255)


def test_host_shape_recovers_the_ellipse():
    s = host_shape(_host(q=0.5, angle=0.7).sum(axis=0))
    assert abs(s.axis_ratio - 0.5) < 0.08 and abs(s.angle_rad - 0.7) < 0.05
    round_ = host_shape(_host(q=1.0).sum(axis=0))
    assert round_.axis_ratio > 0.95
    assert host_shape(np.zeros((SIZE, SIZE))) == HostShape(1.0, 0.0)  # no light: circular annuli


def test_residual_removes_the_host_and_keeps_the_arc():
    rng = np.random.default_rng(1)
    host = _host()
    arc, on_arc = _arc()
    noise = rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE))
    image = host + arc + noise
    model, shape = host_model(image, NOISE)
    resid = image - model
    off = ~on_arc & (elliptical_radius(SIZE, shape) > 2)
    # the host is gone where there is no arc: what is left is the noise (rms within 30 % of it)
    assert np.all(np.std(resid[:, off], axis=1) < 1.3 * NOISE)
    # the arc is kept: >= 70 % of its flux in each band (the annulus median moves a little towards it)
    kept = resid[:, on_arc].sum(axis=1) / arc[:, on_arc].sum(axis=1)
    assert np.all(kept > 0.7), kept
    # under the arc, what the residual gets wrong is < 30 % of the host light the raw stamp has there
    error = np.abs((resid - arc)[:, on_arc].sum(axis=1))
    assert np.all(error < 0.3 * host[:, on_arc].sum(axis=1)), (error, host[:, on_arc].sum(axis=1))


def test_render_views_gives_every_panel():
    rng = np.random.default_rng(2)
    image = (_host() + _arc()[0] + rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE))).astype(np.float32)
    strip = _decode_png(render_views(image))
    assert strip.shape == (SIZE, SIZE * len(VIEWS), 3)
    panels = {name: strip[:, k * SIZE:(k + 1) * SIZE] for k, name in enumerate(VIEWS)}
    for name, px in panels.items():
        assert px.max() > 100, name  # something shows
    for band in "grz":
        assert (panels[band][..., 0] == panels[band][..., 2]).all(), band  # grey
    c = SIZE // 2
    assert panels["asinh"][c, c].max() > 150 and panels["residual"][c - 1:c + 2, c - 1:c + 2].mean() < 60  # core gone
    bad = image.copy()
    bad[0, 3, 3] = np.nan
    assert _decode_png(render_views(bad)).shape == strip.shape  # NaN pixels render (as 0), no exception


def test_residual_keeps_a_complete_ring():
    """A full Einstein ring lifts the median of its annuli; the non-increasing profile does not follow it.
    (Where the host at the ring's radius is brighter than the ring and still falling steeply, host + ring
    falls too and the profile takes part of the ring: docs/grading.md says so.)"""
    rng = np.random.default_rng(3)
    r = elliptical_radius(SIZE, HostShape(1.0, 0.0))
    ring = np.exp(-0.5 * ((r - 9.0) / 1.0) ** 2)
    arc = np.array([0.03, 0.025, 0.012])[:, None, None] * ring
    host = _host(q=0.8, angle=0.3, r_e=2.0, flux=(0.03, 0.08, 0.12))  # compact host, ring at 2.4" above it
    image = host + arc + rng.normal(0, NOISE[:, None, None], (3, SIZE, SIZE))
    resid = image - host_model(image, NOISE)[0]
    on = ring > 0.5
    kept = resid[:, on].sum(axis=1) / arc[:, on].sum(axis=1)
    assert np.all(kept[:2] > 0.6), kept  # g and r, where a blue ring stands above the red host
