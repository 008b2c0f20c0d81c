"""One row of a simulated tier: host + observing conditions (+ an SIE-lensed Sersic arc for injections,
or an unlensed arc look-alike for confuser controls, sim/confusers.py).

`render_row(ctx, i)` is a pure function of (seed, row index, plan, config), so any row can be rebuilt
alone, shards are independent, and the same seed gives the same bytes.

Per injection the lensed light is rendered once (unit flux, `inject.render_lensed_source`), convolved
with the three band PSFs in one FFT call, and scaled per band by the source colours. The source
brightness never depends on the host's: it is either drawn (`src_mag_r`, uniform), fixed by the grid, or
set from a target peak S/N drawn from `arc_snr_dist` (the geometry is redrawn, up to 20 times, when the
magnitude this needs falls outside `src_mag_r`: rejection that keeps sources in the allowed range).

Definitions (also in the README):
- `arc_snr` = max over pixels of the PSF-convolved injected r-band flux / the r-band per-pixel sky sigma
  (peak per-pixel S/N of the arc, the users' definition).
- `arc_snr_sum` = sum of the injected r flux over the arc pixels / (sigma_r sqrt(N_arc pixels)), arc
  pixels being those where the convolved injected r flux exceeds 10% of its peak (a white-noise
  figure: with correlated sky noise the true integrated S/N is lower).
- `magnification` = lensed flux in the stamp (pre-PSF) / unlensed source flux.
- `src_dmag` = src_mag_r - host_mag_r, host_mag_r the r magnitude within 3" of the centre of the host
  stamp (without the arc).

Exercised by `dhs simulate` and tests/sim/test_physics.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from darkhaloscope.sim.confusers import knot_colour, render_confuser
from darkhaloscope.sim.hosts import aperture_mag_r, colour_scale, render_synthetic_host
from darkhaloscope.sim.inject import render_lensed_source
from darkhaloscope.sim.observing import (Conditions, correlated_noise, depth_from_sigma, draw_conditions,
                                         mag_to_nmgy, nmgy_to_mag, psf_kernel)
from darkhaloscope.sim.params import draw_lens, draw_source
from darkhaloscope.stamps.schema import BANDS

R = BANDS.index("r")
MAX_SNR_TRIES = 20  # geometry redraws when a target S/N needs a source outside src_mag_r


@dataclass
class RowResult:
    columns: dict  # scalar columns of the row (injection metadata None for controls)
    image: np.ndarray  # (3, 64, 64) float32 stamp, g/r/z, nanomaggies
    ctrl_image: np.ndarray | None  # the host without the arc (injections, when pairing)


def psf_stack(cond: Conditions, kind: str) -> np.ndarray:
    """(3, 25, 25) normalised PSF kernels of a stamp, one per band."""
    return np.stack([psf_kernel(f, cond.beta, kind) for f in cond.fwhm_arcsec])


def convolve_bands(model: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """Convolve each band of a (3, S, S) model (or one (S, S) image, broadcast) with its PSF."""
    if model.ndim == 2:
        model = np.broadcast_to(model, (psfs.shape[0],) + model.shape)
    return fftconvolve(model, psfs, mode="same", axes=(1, 2))


def _host(ctx, i: int, rng: np.random.Generator) -> tuple[np.ndarray, Conditions, np.ndarray, float]:
    """Observed host stamp (3, S, S), its conditions, PSF stack and host phi (for lens alignment)."""
    h = int(ctx.plan.host_idx[i])
    cond = draw_conditions(rng, BANDS)
    if ctx.real is not None:
        img = ctx.real.images[h].astype(np.float64)
        sigma = ctx.real.sigma_nmgy[h]
        depth = tuple(depth_from_sigma(b, float(s), f) for b, s, f in zip(BANDS, sigma, cond.fwhm_arcsec))
        cond = Conditions(BANDS, cond.fwhm_arcsec, cond.beta, depth, tuple(float(s) for s in sigma))
        return img, cond, psf_stack(cond, ctx.cfg.psf), float(rng.uniform(0, math.pi))
    host_rng = np.random.default_rng([ctx.seed, 1, h])
    model, hp = render_synthetic_host(host_rng, ctx.cfg)
    psfs = psf_stack(cond, ctx.cfg.psf)
    img = convolve_bands(model, psfs) + correlated_noise(rng, cond.sigma_nmgy, model.shape, ctx.cfg.noise_corr_lag1)
    return img, cond, psfs, hp["phi_rad"]


def draw_arc(ctx, point: dict, rng, cond: Conditions, psfs: np.ndarray, host_phi: float, host_mag_r: float):
    """Draw lens + source (grid point `point`), render the arc (3, S, S) nmgy after PSF, and its metadata."""
    cfg = ctx.cfg
    sigma_r = cond.sigma_nmgy[R]
    target = None
    for attempt in range(MAX_SNR_TRIES):
        lens = draw_lens(rng, cfg, point, host_phi)
        src = draw_source(rng, cfg, point, lens.theta_e_arcsec)
        unit = render_lensed_source(lens, src, ss=cfg.supersample)  # unit unlensed flux, pre-PSF
        unit_conv = convolve_bands(unit, psfs)  # (3, S, S), each band unit flux
        if "src_dmag" in point:
            mag_r = host_mag_r + point["src_dmag"]
        elif "src_mag_r" in point:
            mag_r = point["src_mag_r"]
        elif ctx.snr_sampler is not None:
            target = ctx.snr_sampler(rng)
            mag_r = float(nmgy_to_mag(target * sigma_r / max(unit_conv[R].max(), 1e-30)))
            lo, hi = cfg.src_mag_r
            if not lo <= mag_r <= hi:
                if attempt < MAX_SNR_TRIES - 1:
                    continue
                mag_r = float(np.clip(mag_r, lo, hi))
        else:
            mag_r = float(rng.uniform(*cfg.src_mag_r))
        break
    gr, rz = float(rng.uniform(*cfg.src_g_r)), float(rng.uniform(*cfg.src_r_z))
    flux_r = float(mag_to_nmgy(mag_r))
    scale = flux_r * colour_scale(gr, rz)
    arc = unit_conv * scale[:, None, None]
    peak = float(arc[R].max())
    mask = arc[R] > 0.1 * peak
    meta = {
        "theta_e_arcsec": lens.theta_e_arcsec, "src_dmag": mag_r - host_mag_r,
        "src_reff_arcsec": src.reff_arcsec, "src_mag_r": mag_r, "src_mag_g": mag_r + gr, "src_mag_z": mag_r - rz,
        "src_n_sersic": src.n_sersic, "src_e1": src.e1, "src_e2": src.e2,
        "src_x_arcsec": src.x_arcsec, "src_y_arcsec": src.y_arcsec,
        "lens_q": lens.q, "lens_phi_rad": lens.phi_rad, "shear_gamma": lens.shear_gamma,
        "shear_phi_rad": lens.shear_phi_rad, "magnification": float(unit.sum()),
        "arc_snr": peak / sigma_r,
        "arc_snr_sum": float(arc[R][mask].sum() / (sigma_r * math.sqrt(max(int(mask.sum()), 1)))),
        "arc_flux_r_nmgy": flux_r * float(unit.sum()),
        "arc_snr_target": target,  # drawn from arc_snr_dist; differs from arc_snr only if it was unreachable
    }
    return arc, meta


def _confuser(ctx, kind: str, rng, cond: Conditions, psfs: np.ndarray, host_phi: float,
              host_mag_r: float) -> np.ndarray:
    """(3, S, S) nmgy after PSF: a confuser of `kind` with the peak r S/N and colours of a shadow arc drawn
    exactly as an injection's would be (so brightness and colour overlap the arcs' by construction)."""
    point = ctx.grid_points[int(rng.integers(len(ctx.grid_points)))]
    shadow, meta = draw_arc(ctx, point, rng, cond, psfs, host_phi, host_mag_r)
    g_r, r_z = meta["src_mag_g"] - meta["src_mag_r"], meta["src_mag_r"] - meta["src_mag_z"]
    body, knots = render_confuser(rng, kind)
    light = (convolve_bands(body, psfs) * colour_scale(g_r, r_z)[:, None, None]
             + convolve_bands(knots, psfs) * colour_scale(knot_colour(rng, g_r, ctx.cfg.src_g_r), r_z)[:, None, None])
    return light * (float(shadow[R].max()) / max(float(light[R].max()), 1e-30))


def render_row(ctx, i: int, keep_ctrl: bool = False) -> RowResult:
    """Render row i of the plan: the observed stamp, its columns, and (pairing or `keep_ctrl`) the host
    without the arc (same noise)."""
    rng = np.random.default_rng([ctx.seed, 0, i])
    host_img, cond, psfs, host_phi = _host(ctx, i, rng)
    host_mag_r = aperture_mag_r(host_img)
    is_control = int(ctx.plan.is_control[i])
    cols = {"is_control": is_control, "host_mag_r": host_mag_r,
            "psf_moffat_beta": cond.beta if ctx.cfg.psf == "moffat" else None}
    for b, f, d in zip(BANDS, cond.fwhm_arcsec, cond.depth_mag):
        cols[f"psf_fwhm_used_{b}"] = f
        cols[f"psfdepth_{b}"] = d
    if is_control:
        kind = ctx.plan.confuser_kind(i)
        cols["confuser_kind"] = kind
        if kind is not None:
            host_img = host_img + _confuser(ctx, kind, rng, cond, psfs, host_phi, host_mag_r)
        return RowResult(cols, host_img.astype(np.float32), None)
    point = ctx.grid_points[int(ctx.plan.inj_idx[i]) % len(ctx.grid_points)]
    arc, meta = draw_arc(ctx, point, rng, cond, psfs, host_phi, host_mag_r)
    cols.update(meta)
    ctrl = host_img.astype(np.float32) if ctx.cfg.pair or keep_ctrl else None
    return RowResult(cols, (host_img + arc).astype(np.float32), ctrl)
