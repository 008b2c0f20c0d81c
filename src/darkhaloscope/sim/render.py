"""One row of a simulated tier: host + observing conditions (+ an SIE-lensed Sersic arc for injections,
or an unlensed arc look-alike for confuser controls, sim/confusers.py).

`render_row(ctx, i)` is a pure function of (seed, row index, plan, config), so any row can be rebuilt
alone, shards are independent, and the same seed gives the same bytes.

Per injection the lensed light is rendered once (unit flux, `inject.render_lensed_source`), convolved
with the three band PSFs in one FFT call, and scaled per band by the source colours. The source
brightness never depends on the host's: it is either drawn (`src_mag_r`, uniform), fixed by the grid, or
set from a target peak S/N drawn from `arc_snr_dist` (the geometry is redrawn, up to 20 times, when the
magnitude this needs falls outside `src_mag_r`: rejection that keeps sources in the allowed range).

Definitions (also in the manual, docs/simulator.md):
- `arc_snr` = max over pixels of the PSF-convolved injected r-band flux / the r-band per-pixel sky sigma
  (peak per-pixel S/N of the arc, the users' definition).
- `arc_snr_sum` = sum of the injected r flux over the arc pixels / (sigma_r sqrt(N_arc pixels)), arc
  pixels being those where the convolved injected r flux exceeds 10% of its peak (a white-noise
  figure: with correlated sky noise the true integrated S/N is lower).
- `magnification` = lensed flux in the stamp (pre-PSF) / unlensed source flux.
- `src_dmag` = src_mag_r - host_mag_r, host_mag_r the r magnitude within 3" of the centre of the host
  stamp (without the arc).
- `centre_offset_x_px`, `centre_offset_y_px`: where a synthetic scene's centre (host, lens, arc, look-alike)
  lies relative to the centre of pixel (32, 32), drawn uniform within +-`centre_offset_px` (as a cutout
  centred on a catalogue position lands anywhere in its centre pixel); applied by moving the PSF kernels,
  so everything convolved with them moves together. 0 for real hosts (their own offset is in the pixels).

Exercised by `dhs simulate` and tests/sim/test_physics.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from darkhaloscope.sim.confusers import KNOT_BLUEING_MAG, knot_colour, render_confuser
from darkhaloscope.sim.hosts import (aperture_mag_r, colour_scale, draw_counts_mag, draw_synthetic_host,
                                     paint_synthetic_host)
from darkhaloscope.sim.inject import LensParams, render_clumpy_source
from darkhaloscope.sim.observing import (Conditions, bin_fwhm, correlated_noise, depth_from_sigma, draw_conditions,
                                         mag_to_nmgy, nmgy_to_mag, photon_noise, psf_kernel, shift_kernels)
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
    """(3, 63, 63) normalised PSF kernels of a stamp, one per band."""
    return np.stack([psf_kernel(f, cond.beta, kind) for f in cond.fwhm_arcsec])


def convolve_bands(model: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """Convolve each band of a (3, S, S) model (or one (S, S) image, broadcast) with its PSF."""
    if model.ndim == 2:
        model = np.broadcast_to(model, (psfs.shape[0],) + model.shape)
    return fftconvolve(model, psfs, mode="same", axes=(1, 2))


def host_draws(ctx, i: int, rng: np.random.Generator):
    """The draws of row i's host, in the row's order: (conditions, host: `SyntheticHost` or the real host's
    index, host phi for a real host (None: the synthetic host's own), centre offset (dy, dx) pixels).
    Shared by both engines, so that the torch engine draws exactly what this one does."""
    h = int(ctx.plan.host_idx[i])
    cond = draw_conditions(rng, BANDS)
    if ctx.real is not None:
        sigma = ctx.real.sigma_nmgy[h]
        fwhm = cond.fwhm_arcsec
        if ctx.real.psf_fwhm_arcsec is not None and np.all(ctx.real.psf_fwhm_arcsec[h] > 0):
            fwhm = tuple(bin_fwhm(float(f)) for f in ctx.real.psf_fwhm_arcsec[h])  # the host's own PSF size
        depth = tuple(depth_from_sigma(b, float(s), f) for b, s, f in zip(BANDS, sigma, fwhm))
        cond = Conditions(BANDS, fwhm, cond.beta, depth, tuple(float(s) for s in sigma))
        return cond, h, float(rng.uniform(0, math.pi)), (0.0, 0.0)
    host = draw_synthetic_host(np.random.default_rng([ctx.seed, 1, h]), ctx.cfg)
    h_px = ctx.cfg.centre_offset_px  # own stream: the offset changes no other draw of the row
    dy, dx = (float(v) for v in np.random.default_rng([ctx.seed, 2, i]).uniform(-h_px, h_px, 2)) if h_px else (0.0, 0.0)
    return cond, host, None, (dy, dx)


def _host(ctx, i: int, rng: np.random.Generator) -> tuple[np.ndarray, Conditions, np.ndarray, float, tuple]:
    """Observed host stamp (3, S, S), its conditions, PSF stack (moved by the scene's centre offset) and host
    phi (for lens alignment), and that offset (y, x) in pixels."""
    cond, host, phi, (dy, dx) = host_draws(ctx, i, rng)
    if ctx.real is not None:
        return ctx.real.images[host].astype(np.float64), cond, psf_stack(cond, ctx.cfg.psf), phi, (0.0, 0.0)
    model = paint_synthetic_host(host)
    psfs = shift_kernels(psf_stack(cond, ctx.cfg.psf), dy, dx)
    img = _with_photon_noise(ctx, rng, convolve_bands(model, psfs), cond)
    img = img + correlated_noise(rng, cond.sigma_nmgy, model.shape, ctx.cfg.noise_corr_lag1)
    return img, cond, psfs, host.phi_rad, (dy, dx)


@dataclass
class ArcChoice:
    """An accepted lens + clumpy source and its r magnitude (`arc_attempts`)."""

    lens: LensParams
    sources: list  # [(SourceParams, flux fraction)]
    knots: tuple  # (Knot, ...)
    mag_r: float
    target: float | None  # the drawn target peak S/N (arc_snr_dist), else None


def arc_attempts(ctx, point: dict, rng, sigma_r: float, host_phi: float, host_mag_r: float):
    """Generator of the lens + source draws of one arc: yields (lens, sources, knots) and is sent back the
    peak r flux of that geometry's unit-flux trial render (1 sample per pixel, after the r PSF); returns the
    accepted `ArcChoice`. The renderer (numpy here, torch in inject/) drives it, so both engines draw alike."""
    cfg = ctx.cfg
    target = None
    for attempt in range(MAX_SNR_TRIES):
        last = attempt == MAX_SNR_TRIES - 1
        lens = draw_lens(rng, cfg, point, host_phi, ctx.theta_e)
        sources, knots = draw_source(rng, cfg, point, lens.theta_e_arcsec)
        peak_unit = max(float((yield lens, sources, knots)), 1e-30)
        if "src_dmag" in point:
            mag_r = host_mag_r + point["src_dmag"]
        elif "src_mag_r" in point:
            mag_r = point["src_mag_r"]
        elif ctx.snr_sampler is not None:
            target = ctx.snr_sampler(rng)
            mag_r = float(nmgy_to_mag(target * sigma_r / peak_unit))
            lo, hi = cfg.src_mag_r
            if not lo <= mag_r <= hi:
                if not last:
                    continue
                mag_r = float(np.clip(mag_r, lo, hi))
        else:  # galaxy number counts, then detection: faint, weakly magnified arcs drop out (magnification bias)
            mag_r = draw_counts_mag(rng, *cfg.src_mag_r, cfg.src_count_slope)
            if rng.uniform() >= detection_probability(float(mag_to_nmgy(mag_r)) * peak_unit / sigma_r, cfg) \
                    and not last:
                continue
        break
    return ArcChoice(lens, sources, knots, mag_r, target)


def arc_colours(rng, cfg) -> tuple[float, float, float]:
    """(g-r, r-z, knots' g-r) of an accepted arc, drawn after its geometry."""
    gr, rz = float(rng.uniform(*cfg.src_g_r)), float(rng.uniform(*cfg.src_r_z))
    return gr, rz, knot_colour(rng, gr, cfg.src_g_r)


def arc_flux_scales(choice: ArcChoice, colours: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (3,) nanomaggies of the unit-flux lensed body and knots layers."""
    gr, rz, knot_gr = colours
    flux_r = float(mag_to_nmgy(choice.mag_r))
    return flux_r * colour_scale(gr, rz), flux_r * colour_scale(knot_gr, rz)


def arc_metadata(choice: ArcChoice, colours, host_mag_r: float, magnification: float, peak_r: float,
                 sum_arc_r: float, n_arc: int, sigma_r: float) -> dict:
    """The injection columns of an arc: its draws, its magnification (lensed unit-flux sum), and the peak r
    flux, the r flux summed over its arc pixels (> 10% of the peak) and their number."""
    gr, rz, knot_gr = colours
    lens, sources, knots, mag_r = choice.lens, choice.sources, choice.knots, choice.mag_r
    flux_r = float(mag_to_nmgy(mag_r))
    knot_frac = float(sum(k.flux_frac for k in knots))
    mag_g = float(nmgy_to_mag(flux_r * ((1 - knot_frac) * 10 ** (-0.4 * gr) + knot_frac * 10 ** (-0.4 * knot_gr))))
    src = sources[0][0]
    return {
        "theta_e_arcsec": lens.theta_e_arcsec, "src_dmag": mag_r - host_mag_r,
        "src_reff_arcsec": src.reff_arcsec, "src_mag_r": mag_r, "src_mag_g": mag_g, "src_mag_z": mag_r - rz,
        "src_n_sersic": src.n_sersic, "src_e1": src.e1, "src_e2": src.e2,
        "src_x_arcsec": src.x_arcsec, "src_y_arcsec": src.y_arcsec,
        "src_n_knots": float(len(knots)), "src_knot_frac": knot_frac,
        "src_n_sources": float(len(sources)),
        "lens_q": lens.q, "lens_phi_rad": lens.phi_rad, "shear_gamma": lens.shear_gamma,
        "shear_phi_rad": lens.shear_phi_rad, "magnification": magnification,
        "arc_snr": peak_r / sigma_r,
        "arc_snr_sum": float(sum_arc_r / (sigma_r * math.sqrt(max(n_arc, 1)))),
        "arc_flux_r_nmgy": flux_r * magnification,
        "arc_snr_target": choice.target,  # drawn from arc_snr_dist; differs from arc_snr only if it was unreachable
    }


def draw_arc(ctx, point: dict, rng, cond: Conditions, psfs: np.ndarray, host_phi: float, host_mag_r: float):
    """Draw lens + clumpy source (grid point `point`), render the arc (3, S, S) nmgy after PSF (noiseless),
    and its metadata."""
    attempts = arc_attempts(ctx, point, rng, cond.sigma_nmgy[R], host_phi, host_mag_r)
    request = next(attempts)
    while True:
        lens, sources, knots = request
        # trial at 1 sample per pixel, r band only: cheap enough to redraw the geometry many times
        trial = sum(render_clumpy_source(lens, sources, knots, ss=1))
        try:
            request = attempts.send(float(fftconvolve(trial, psfs[R], mode="same").max()))
        except StopIteration as done:
            choice = done.value
            break
    body, knot_img = render_clumpy_source(choice.lens, choice.sources, choice.knots, ss=ctx.cfg.supersample)
    body_conv, knot_conv = convolve_bands(body, psfs), convolve_bands(knot_img, psfs)  # unit flux, pre-PSF
    colours = arc_colours(rng, ctx.cfg)
    body_scale, knot_scale = arc_flux_scales(choice, colours)
    arc = body_conv * body_scale[:, None, None] + knot_conv * knot_scale[:, None, None]
    peak = float(arc[R].max())
    mask = arc[R] > 0.1 * peak
    meta = arc_metadata(choice, colours, host_mag_r, float(body.sum() + knot_img.sum()), peak,
                        float(arc[R][mask].sum()), int(mask.sum()), cond.sigma_nmgy[R])
    return arc, meta


def detection_probability(snr: float, cfg) -> float:
    """Probability that an arc of peak r S/N `snr` enters the lens sample: 0 below `arc_snr_min`, 1 above
    `arc_snr_full`, linear in log S/N between (the sample's completeness; selects magnified sources)."""
    lo, hi = cfg.arc_snr_min, cfg.arc_snr_full
    if snr <= lo:
        return 0.0
    return 1.0 if snr >= hi else math.log(snr / lo) / math.log(hi / lo)


def _with_photon_noise(ctx, rng, light: np.ndarray, cond: Conditions) -> np.ndarray:
    """Added light plus its own Poisson noise (when `photon_noise`)."""
    if not ctx.cfg.photon_noise:
        return light
    return light + photon_noise(rng, light, BANDS, cond.sigma_nmgy, ctx.cfg.noise_corr_lag1)


def confuser_point(ctx, rng) -> dict:
    """The grid point of a confuser's shadow arc (drawn first)."""
    return ctx.grid_points[int(rng.integers(len(ctx.grid_points)))]


def confuser_layers(rng, kind: str, shadow_meta: dict):
    """Pre-PSF (body, knots) light of a confuser of `kind` (numpy painters, sim/confusers.py), their per-band
    (3,) colour scales (the whole exactly as blue as the shadow arc, knots bluer than the body by dk mag),
    and the variant drawn."""
    g_r = shadow_meta["src_mag_g"] - shadow_meta["src_mag_r"]
    r_z = shadow_meta["src_mag_r"] - shadow_meta["src_mag_z"]
    body, knots, variant = render_confuser(rng, kind)
    dk = 10 ** (0.4 * rng.uniform(*KNOT_BLUEING_MAG))
    f_knots = float(knots.sum())
    g_body = 10 ** (-0.4 * g_r) / (1.0 - f_knots + dk * f_knots)
    z_ratio = 10 ** (0.4 * r_z)
    return body, knots, np.array([g_body, 1.0, z_ratio]), np.array([g_body * dk, 1.0, z_ratio]), variant


def _confuser(ctx, kind: str, rng, cond: Conditions, psfs: np.ndarray, host_phi: float,
              host_mag_r: float) -> tuple[np.ndarray, str]:
    """(3, S, S) nmgy after PSF: a confuser of `kind` with the peak r S/N and colours of a shadow arc drawn
    exactly as an injection's would be (so brightness and colour overlap the arcs' by construction); and
    the variant drawn."""
    point = confuser_point(ctx, rng)
    shadow, meta = draw_arc(ctx, point, rng, cond, psfs, host_phi, host_mag_r)
    body, knots, body_scale, knot_scale, variant = confuser_layers(rng, kind, meta)
    light = (convolve_bands(body, psfs) * body_scale[:, None, None]
             + convolve_bands(knots, psfs) * knot_scale[:, None, None])
    return light * (float(shadow[R].max()) / max(float(light[R].max()), 1e-30)), variant


def row_columns(ctx, cond: Conditions, host_mag_r: float, is_control: int, dy: float, dx: float) -> dict:
    """The columns every row has (observing conditions, host magnitude, centre offset)."""
    cols = {"is_control": is_control, "host_mag_r": host_mag_r,
            "psf_moffat_beta": cond.beta if ctx.cfg.psf == "moffat" else None,
            "centre_offset_x_px": dx, "centre_offset_y_px": dy}
    for b, f, d in zip(BANDS, cond.fwhm_arcsec, cond.depth_mag):
        cols[f"psf_fwhm_used_{b}"] = f
        cols[f"psfdepth_{b}"] = d
    return cols


def render_row(ctx, i: int, keep_ctrl: bool = False) -> RowResult:
    """Render row i of the plan: the observed stamp, its columns, and (pairing or `keep_ctrl`) the host
    without the arc (same noise)."""
    rng = np.random.default_rng([ctx.seed, 0, i])
    host_img, cond, psfs, host_phi, (dy, dx) = _host(ctx, i, rng)
    host_mag_r = aperture_mag_r(host_img)
    is_control = int(ctx.plan.is_control[i])
    cols = row_columns(ctx, cond, host_mag_r, is_control, dy, dx)
    if is_control:
        kind = ctx.plan.confuser_kind(i)
        cols["confuser_kind"], cols["confuser_variant"] = kind, None
        if kind is not None:
            light, cols["confuser_variant"] = _confuser(ctx, kind, rng, cond, psfs, host_phi, host_mag_r)
            host_img = host_img + _with_photon_noise(ctx, rng, light, cond)
        return RowResult(cols, host_img.astype(np.float32), None)
    point = ctx.grid_points[int(ctx.plan.inj_idx[i]) % len(ctx.grid_points)]
    arc, meta = draw_arc(ctx, point, rng, cond, psfs, host_phi, host_mag_r)
    cols.update(meta)
    ctrl = host_img.astype(np.float32) if ctx.cfg.pair or keep_ctrl else None
    return RowResult(cols, (host_img + _with_photon_noise(ctx, rng, arc, cond)).astype(np.float32), ctrl)
