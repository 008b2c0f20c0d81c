"""Lensed-source and host rendering on the stamp's pixel grid (lenstronomy for the lensing physics).

`render_lensed_source` ray-shoots the stamp's pixels through an SIE + external shear (lenstronomy's
`SinglePlane`: what `LensModel` delegates to for one plane, without `LensModel`'s import of the multi-plane
code and all of astropy.cosmology, ~2 s CPU in every process that simulates) and evaluates an elliptical
Sersic source (`LightModel`) on the traced coordinates: the lensed light is rendered ONCE per stamp, with
unit unlensed flux, and later scaled per band by the source's colours and convolved with each band's PSF.
Supersampling is adaptive: every pixel is evaluated at its centre, and only pixels whose traced position
lands near the source (where the light is) are re-evaluated on an ss x ss sub-pixel grid. Images are in
nanomaggies per pixel (surface brightness x pixel area), so `image.sum()` of a unit-flux source is its total
magnification.

`render_clumpy_source` does the same for a clumpy source (Sersic components plus Gaussian star-forming
knots), returning the lensed body and knots apart so that each gets its own colours.

`render_sersic` renders an unlensed Sersic (hosts, neighbours) the same way, supersampled in its core.

Exercised by `dhs simulate` and tests/sim/test_physics.py (ring radius, magnification, flux).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from lenstronomy.LensModel.single_plane import SinglePlane
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util.param_util import phi_q2_ellipticity, shear_polar2cartesian

from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, STAMP_SIZE

PIXEL_AREA_ARCSEC2 = PIXEL_SCALE_ARCSEC ** 2


@dataclass(frozen=True)
class LensParams:
    """SIE + external shear, centred on the stamp (the host galaxy)."""

    theta_e_arcsec: float  # Einstein radius
    q: float  # SIE axis ratio (minor/major), 0 < q <= 1
    phi_rad: float  # SIE major-axis angle
    shear_gamma: float  # external shear strength
    shear_phi_rad: float  # external shear angle
    center_x_arcsec: float = 0.0
    center_y_arcsec: float = 0.0


@dataclass(frozen=True)
class SourceParams:
    """Elliptical Sersic source, position in the source plane relative to the lens centre."""

    x_arcsec: float
    y_arcsec: float
    reff_arcsec: float  # half-light (Sersic) radius
    n_sersic: float
    e1: float
    e2: float


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int = STAMP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Flattened x (columns), y (rows) of pixel centres in arcsec; (0, 0) is pixel (size//2, size//2)."""
    idx = (np.arange(size) - size // 2) * PIXEL_SCALE_ARCSEC
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    x, y = xx.ravel().copy(), yy.ravel().copy()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=16)
def _subpixel_offsets(ss: int) -> tuple[np.ndarray, np.ndarray]:
    o = (np.arange(ss) - (ss - 1) / 2.0) / ss * PIXEL_SCALE_ARCSEC
    oy, ox = np.meshgrid(o, o, indexing="ij")
    return ox.ravel(), oy.ravel()


def _supersample(fn, x: np.ndarray, y: np.ndarray, coarse: np.ndarray, mask: np.ndarray, ss: int) -> np.ndarray:
    """Replace `coarse` at the pixels in `mask` by the mean of fn over an ss x ss sub-pixel grid."""
    out = coarse.copy()
    idx = np.flatnonzero(mask)
    if ss > 1 and idx.size:
        ox, oy = _subpixel_offsets(ss)
        xs = (x[idx, None] + ox[None, :]).ravel()
        ys = (y[idx, None] + oy[None, :]).ravel()
        out[idx] = fn(xs, ys).reshape(idx.size, ss * ss).mean(axis=1)
    return out


_LENS = SinglePlane(["SIE", "SHEAR"])  # = LensModel(["SIE", "SHEAR"]).lens_model; stateless, safe to share
_SERSIC = LightModel(["SERSIC_ELLIPSE"])


def lens_kwargs(lens: LensParams) -> list[dict]:
    e1, e2 = phi_q2_ellipticity(lens.phi_rad, lens.q)
    g1, g2 = shear_polar2cartesian(lens.shear_phi_rad, lens.shear_gamma)
    cx, cy = lens.center_x_arcsec, lens.center_y_arcsec
    return [{"theta_E": lens.theta_e_arcsec, "e1": e1, "e2": e2, "center_x": cx, "center_y": cy},
            {"gamma1": g1, "gamma2": g2, "ra_0": cx, "dec_0": cy}]


def sersic_kwargs(flux_nmgy: float, reff_arcsec: float, n_sersic: float, e1: float, e2: float,
                  x_arcsec: float, y_arcsec: float) -> list[dict]:
    """lenstronomy SERSIC_ELLIPSE kwargs whose total (unlensed) flux is `flux_nmgy`."""
    kw = {"amp": 1.0, "R_sersic": reff_arcsec, "n_sersic": n_sersic, "e1": e1, "e2": e2,
          "center_x": x_arcsec, "center_y": y_arcsec}
    kw["amp"] = flux_nmgy / float(_SERSIC.total_flux([kw])[0])
    return [kw]


def _near_mask(dx: np.ndarray, dy: np.ndarray, reff_arcsec: float, e1: float, e2: float, k: float) -> np.ndarray:
    """Pixels within k half-light radii (along the major axis) plus 2 pixels of a Sersic centre."""
    q = (1.0 - min(np.hypot(e1, e2), 0.9)) / (1.0 + min(np.hypot(e1, e2), 0.9))
    r_cut = k * reff_arcsec / np.sqrt(q) + 2.0 * PIXEL_SCALE_ARCSEC
    return dx * dx + dy * dy < r_cut * r_cut


def render_lensed_source(lens: LensParams, src: SourceParams, ss: int = 4, size: int = STAMP_SIZE,
                         flux_nmgy: float = 1.0, near_k: float = 4.0) -> np.ndarray:
    """(size, size) lensed image of a source of unlensed flux `flux_nmgy`, nanomaggies per pixel, pre-PSF.

    Its sum over the stamp divided by `flux_nmgy` is the total magnification (of the light in the stamp).
    """
    x, y = pixel_grid(size)
    kl = lens_kwargs(lens)
    ks = sersic_kwargs(flux_nmgy, src.reff_arcsec, src.n_sersic, src.e1, src.e2,
                       src.x_arcsec + lens.center_x_arcsec, src.y_arcsec + lens.center_y_arcsec)

    def sb(xs, ys):
        bx, by = _LENS.ray_shooting(xs, ys, kl)
        return _SERSIC.surface_brightness(bx, by, ks)

    bx, by = _LENS.ray_shooting(x, y, kl)
    coarse = _SERSIC.surface_brightness(bx, by, ks)
    mask = _near_mask(bx - ks[0]["center_x"], by - ks[0]["center_y"], src.reff_arcsec, src.e1, src.e2, near_k)
    img = _supersample(sb, x, y, coarse, mask, ss)
    return (img * PIXEL_AREA_ARCSEC2).reshape(size, size)


@dataclass(frozen=True)
class Knot:
    """A star-forming clump in the source plane: a circular Gaussian (position relative to the lens centre)."""

    x_arcsec: float
    y_arcsec: float
    sigma_arcsec: float
    flux_frac: float  # fraction of the source's total unlensed flux


def _gaussian_sb(bx: np.ndarray, by: np.ndarray, knots: tuple[Knot, ...]) -> np.ndarray:
    """Surface brightness (flux / arcsec^2) of unit-total-flux-scaled Gaussian knots at (bx, by)."""
    out = np.zeros_like(bx)
    for k in knots:
        s2 = k.sigma_arcsec ** 2
        out += k.flux_frac / (2 * np.pi * s2) * np.exp(-0.5 * ((bx - k.x_arcsec) ** 2 + (by - k.y_arcsec) ** 2) / s2)
    return out


def render_clumpy_source(lens: LensParams, sources: list[tuple[SourceParams, float]], knots: tuple[Knot, ...],
                         ss: int = 4, size: int = STAMP_SIZE, near_k: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Lensed (body, knots) images, (size, size) each, nanomaggies per pixel pre-PSF, of a source whose
    unlensed flux is 1: Sersic components `sources` [(params, flux fraction)] plus Gaussian `knots`.
    The rays are shot once; pixels whose traced position lands near any component are supersampled."""
    x, y = pixel_grid(size)
    kl = lens_kwargs(lens)
    cx, cy = lens.center_x_arcsec, lens.center_y_arcsec
    kss = [sersic_kwargs(f, s.reff_arcsec, s.n_sersic, s.e1, s.e2, s.x_arcsec + cx, s.y_arcsec + cy)
           for s, f in sources]
    kn = tuple(Knot(k.x_arcsec + cx, k.y_arcsec + cy, k.sigma_arcsec, k.flux_frac) for k in knots)

    def body_sb(bx, by):
        return sum(_SERSIC.surface_brightness(bx, by, ks) for ks in kss)

    bx, by = _LENS.ray_shooting(x, y, kl)
    mask = np.zeros(bx.shape, bool)
    for (s, _), ks in zip(sources, kss):
        mask |= _near_mask(bx - ks[0]["center_x"], by - ks[0]["center_y"], s.reff_arcsec, s.e1, s.e2, near_k)
    for k in kn:
        r_cut = near_k * k.sigma_arcsec + 2.0 * PIXEL_SCALE_ARCSEC
        mask |= (bx - k.x_arcsec) ** 2 + (by - k.y_arcsec) ** 2 < r_cut ** 2

    def traced(fn):
        return lambda xs, ys: fn(*_LENS.ray_shooting(xs, ys, kl))

    body = _supersample(traced(body_sb), x, y, body_sb(bx, by), mask, ss)
    knot = _supersample(traced(lambda u, v: _gaussian_sb(u, v, kn)), x, y, _gaussian_sb(bx, by, kn), mask, ss)
    return ((body * PIXEL_AREA_ARCSEC2).reshape(size, size), (knot * PIXEL_AREA_ARCSEC2).reshape(size, size))


def render_sersic(flux_nmgy: float, reff_arcsec: float, n_sersic: float, e1: float, e2: float,
                  x_arcsec: float = 0.0, y_arcsec: float = 0.0, ss: int = 8, size: int = STAMP_SIZE,
                  core_arcsec: float = 0.8, centre_ss: int = 32) -> np.ndarray:
    """(size, size) unlensed Sersic image, nanomaggies per pixel, pre-PSF.

    Only the core (pixels within `core_arcsec` of the centre, where a high-n profile is cuspy) is
    supersampled by ss, and the pixel holding the centre by `centre_ss` (even factors never sample the
    cusp itself: the central pixel of an n = 4-5 profile is then within 1% of its integral); elsewhere
    the profile is smooth on the pixel scale."""
    x, y = pixel_grid(size)
    ks = sersic_kwargs(flux_nmgy, reff_arcsec, n_sersic, e1, e2, x_arcsec, y_arcsec)

    def sb(xs, ys):
        return _SERSIC.surface_brightness(xs, ys, ks)

    coarse = sb(x, y)
    r2 = (x - x_arcsec) ** 2 + (y - y_arcsec) ** 2
    img = _supersample(sb, x, y, coarse, r2 < core_arcsec ** 2, ss)
    img = _supersample(sb, x, y, img, r2 == r2.min(), centre_ss)
    return (img * PIXEL_AREA_ARCSEC2).reshape(size, size)


def add_point_source(img: np.ndarray, flux_nmgy: float, x_arcsec: float, y_arcsec: float) -> None:
    """Add a point source (a star, pre-PSF) by bilinear sharing among the 4 nearest pixels, in place."""
    size = img.shape[-1]
    px = x_arcsec / PIXEL_SCALE_ARCSEC + size // 2
    py = y_arcsec / PIXEL_SCALE_ARCSEC + size // 2
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    fx, fy = px - x0, py - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                img[y0 + dy, x0 + dx] += flux_nmgy * wy * wx
