"""DR10-like observing model: per-band constants with units, PSF kernels, per-pixel sky noise.

Everything a simulated stamp needs to look like a Legacy Surveys DR10 g/r/z coadd cutout:
- `mag_to_nmgy` / `nmgy_to_mag`: AB magnitudes <-> nanomaggies (zeropoint 22.5: 1 nmgy = 22.5 mag).
- `BAND_MODELS`: per band, the median PSF FWHM (arcsec), Moffat beta, 5-sigma point-source depth (AB mag)
  and the measured per-pixel noise of real DR10 cutouts (nanomaggies).
- `draw_conditions(rng, bands)`: one stamp's PSF FWHM / beta / depth per band (with scatter).
- `pixel_sigma_nmgy(band, depth_mag, fwhm_arcsec)`: per-pixel sky noise. A white-noise estimate from the
  5-sigma depth (sigma_pix = f5 / 5 / sqrt(NEA)) overestimates the scatter of real coadd pixels (they are
  correlated by resampling), so it is multiplied by a per-band calibration factor chosen so that median
  conditions give the robust sigma measured on the real cutouts in ../shared/data/dr10_cutouts
  (g 0.0018, r 0.0030, z 0.0080 nmgy/pixel).
- `correlated_noise`: sky noise with the lag-1 pixel correlations (x and y apart) of resampled coadds;
  `noise_lag1` is the one estimator that measures them, on real and simulated stamps alike.
- `photon_noise`: the Poisson noise of added light (arcs, confusers, synthetic hosts) relative to the sky's,
  from the DECam sky brightness per band (`BandModel.sky_mag_arcsec2`).
- `psf_kernel(band_fwhm, beta, kind)`: pixel-integrated, normalised (sum = 1) Moffat or Gaussian kernels,
  cached per FWHM bin (0.02") so that a tier of millions of stamps builds only a few hundred kernels.

Exercised by `dhs simulate` (every stamp) and tests/sim/test_physics.py.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, ZEROPOINT_AB

PSF_FWHM_BIN_ARCSEC = 0.02  # kernels are cached per FWHM bin; the binned value is what is recorded
PSF_BETA_BIN = 0.25  # Moffat beta bin
PSF_HALF_SIZE_PIX = 31  # kernel (2*31+1)^2 px = 16.5" on a side: at its edge a 17.5 mag star's Moffat wings are
# < 0.1 sky sigma (a 12-px kernel cut them into a visible square, 4-7 sigma at its edge; +20% simulate time)
PSF_SUPERSAMPLE = 5  # sub-pixels per pixel side when integrating the PSF over pixels
FWHM_RANGE_ARCSEC = (0.7, 2.2)  # clip of drawn seeing
DEPTH_SCATTER_MAG = 0.25  # 1-sigma scatter of the 5-sigma depth around its median
FWHM_SCATTER_DEX = 0.08  # 1-sigma scatter of log10(FWHM) (common to all bands): DR10 r 0.95-1.9" (5-95%)
BETA_RANGE = (2.5, 4.5)  # Moffat beta drawn uniformly here (median 3.5)


@dataclass(frozen=True)
class BandModel:
    """Median DR10 observing conditions of one band."""

    psf_fwhm_arcsec: float  # median PSF FWHM
    psfdepth_mag: float  # median 5-sigma point-source depth, AB mag
    pixel_sigma_nmgy: float  # measured robust per-pixel sigma of real DR10 coadd cutouts, nanomaggies
    sky_mag_arcsec2: float  # typical DECam sky surface brightness, AB mag / arcsec^2 (sets photon noise)


# PSF medians: DR10 south psfsize (r ~1.3"; Gaussian fits to ../shared/data/dr10_cutouts give r 1.3-1.5");
# sky: DECam exposure-time-calculator dark-to-grey sky (g 22.0, r 21.0, z 18.9 mag/arcsec^2).
BAND_MODELS: dict[str, BandModel] = {
    "g": BandModel(psf_fwhm_arcsec=1.45, psfdepth_mag=24.0, pixel_sigma_nmgy=0.0018, sky_mag_arcsec2=22.0),
    "r": BandModel(psf_fwhm_arcsec=1.3, psfdepth_mag=23.4, pixel_sigma_nmgy=0.0030, sky_mag_arcsec2=21.0),
    "z": BandModel(psf_fwhm_arcsec=1.2, psfdepth_mag=22.5, pixel_sigma_nmgy=0.0080, sky_mag_arcsec2=18.9),
}


def check_bands(bands) -> tuple[str, ...]:
    """Validate a band list against the observing model; UsageError names the unknown band."""
    bands = tuple(bands)
    if not bands:
        raise UsageError("no bands given; use e.g. --bands=g,r,z")
    for b in bands:
        if b not in BAND_MODELS:
            raise UsageError(f"unknown band {b!r}: the observing model knows {', '.join(BAND_MODELS)}")
    if len(set(bands)) != len(bands):
        raise UsageError(f"band list {','.join(bands)} repeats a band")
    return bands


def mag_to_nmgy(mag):
    """AB magnitude -> flux in nanomaggies (22.5 mag = 1 nmgy)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - ZEROPOINT_AB))


def nmgy_to_mag(flux_nmgy):
    """Flux in nanomaggies -> AB magnitude; non-positive flux gives +inf."""
    f = np.asarray(flux_nmgy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, ZEROPOINT_AB - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.inf)


def _nea_pix(fwhm_arcsec: float) -> float:
    """Noise-equivalent area (pixels) of a Gaussian PSF: 4 pi sigma^2."""
    sigma_pix = fwhm_arcsec / 2.3548 / PIXEL_SCALE_ARCSEC
    return 4.0 * math.pi * sigma_pix ** 2


def white_sigma_nmgy(depth_mag: float, fwhm_arcsec: float) -> float:
    """Per-pixel sigma that white noise would need to give a 5-sigma point-source depth `depth_mag`."""
    return float(mag_to_nmgy(depth_mag)) / 5.0 / math.sqrt(_nea_pix(fwhm_arcsec))


@functools.lru_cache(maxsize=None)
def noise_calibration(band: str) -> float:
    """Ratio measured / white-noise sigma at the band's median conditions (about 0.24-0.27)."""
    m = BAND_MODELS[band]
    return m.pixel_sigma_nmgy / white_sigma_nmgy(m.psfdepth_mag, m.psf_fwhm_arcsec)


def pixel_sigma_nmgy(band: str, depth_mag: float, fwhm_arcsec: float) -> float:
    """Per-pixel sky noise (nanomaggies) of a stamp with this depth and seeing, calibrated to real DR10."""
    return noise_calibration(band) * white_sigma_nmgy(depth_mag, fwhm_arcsec)


def depth_from_sigma(band: str, sigma_nmgy: float, fwhm_arcsec: float) -> float:
    """Inverse of `pixel_sigma_nmgy`: the 5-sigma depth (AB mag) that a measured pixel sigma implies."""
    f5 = sigma_nmgy / noise_calibration(band) * 5.0 * math.sqrt(_nea_pix(fwhm_arcsec))
    return float(nmgy_to_mag(f5))


def bin_fwhm(fwhm_arcsec: float) -> float:
    return round(round(fwhm_arcsec / PSF_FWHM_BIN_ARCSEC) * PSF_FWHM_BIN_ARCSEC, 4)


def bin_beta(beta: float) -> float:
    return round(round(beta / PSF_BETA_BIN) * PSF_BETA_BIN, 4)


@dataclass(frozen=True)
class Conditions:
    """Observing conditions of one stamp, per band (same order as `bands`)."""

    bands: tuple[str, ...]
    fwhm_arcsec: tuple[float, ...]  # binned PSF FWHM actually used
    beta: float  # Moffat beta (ignored for a Gaussian PSF)
    depth_mag: tuple[float, ...]  # 5-sigma point-source depth, AB mag
    sigma_nmgy: tuple[float, ...]  # per-pixel sky noise, nanomaggies


def draw_conditions(rng: np.random.Generator, bands: tuple[str, ...]) -> Conditions:
    """Seeing (one log-normal factor for all bands, per-band jitter), Moffat beta and depths of a stamp."""
    common = 10.0 ** rng.normal(0.0, FWHM_SCATTER_DEX)
    beta = bin_beta(rng.uniform(*BETA_RANGE))
    fwhm, depth, sigma = [], [], []
    for b in bands:
        m = BAND_MODELS[b]
        f = m.psf_fwhm_arcsec * common * (1.0 + rng.normal(0.0, 0.03))
        f = bin_fwhm(float(np.clip(f, *FWHM_RANGE_ARCSEC)))
        d = float(m.psfdepth_mag + np.clip(rng.normal(0.0, DEPTH_SCATTER_MAG), -0.75, 0.75))
        fwhm.append(f)
        depth.append(d)
        sigma.append(pixel_sigma_nmgy(b, d, f))
    return Conditions(bands, tuple(fwhm), beta, tuple(depth), tuple(sigma))


def _kernel_weight(rho: float) -> float:
    """a of the [a, 1, a] smoothing kernel whose lag-1 autocorrelation 2a / (1 + 2a^2) is rho."""
    return 0.0 if rho <= 0 else (1.0 - math.sqrt(1.0 - 2.0 * rho ** 2)) / (2.0 * rho)


def noise_kernel_weights(lag1_xy) -> tuple[float, float]:
    """(a_x, a_y) of the [a, 1, a] smoothing kernels that give lag-1 correlations `lag1_xy` (x, y; one
    number: both)."""
    rx, ry = (lag1_xy, lag1_xy) if np.isscalar(lag1_xy) else lag1_xy
    return _kernel_weight(float(rx)), _kernel_weight(float(ry))


def white_normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The unit normals a noise field of `shape` (bands, H, W) is smoothed from (one pixel of margin)."""
    return rng.normal(0.0, 1.0, (shape[0], shape[1] + 2, shape[2] + 2))


def correlated_noise(rng: np.random.Generator, sigma_nmgy, shape: tuple[int, ...], lag1_xy) -> np.ndarray:
    """Gaussian sky noise (bands, H, W) with per-pixel sigma `sigma_nmgy` (per band) and lag-1
    correlations `lag1_xy` = (along x = columns, along y = rows) between neighbouring pixels, like
    resampled coadd pixels. White noise is smoothed by the separable kernels [a, 1, a] (2a / (1 + 2a^2) =
    rho per axis) and rescaled so that the per-pixel sigma is exactly the requested one. A single number
    is the same correlation along both axes."""
    ax, ay = noise_kernel_weights(lag1_xy)
    sigma = np.asarray(sigma_nmgy, dtype=np.float64).reshape(-1, 1, 1)
    w = white_normals(rng, shape)
    w = w[:, 1:-1, :] + ay * (w[:, :-2, :] + w[:, 2:, :])
    w = w[:, :, 1:-1] + ax * (w[:, :, :-2] + w[:, :, 2:])
    return w * (sigma / math.sqrt((1.0 + 2.0 * ax * ax) * (1.0 + 2.0 * ay * ay)))


def noise_lag1(image: np.ndarray, clip: float = 3.0) -> tuple[float, float]:
    """Measured lag-1 pixel correlation (x, y) of the sky noise of one band (H, W): high-passed by a 7x7
    median filter (removes galaxies and faint background structure), pixels beyond `clip` robust sigma
    dropped. The estimator that sets `noise_corr_lag1` (real DR10 cutouts: median x 0.19, y 0.27)."""
    from scipy.ndimage import median_filter

    from darkhaloscope.stamps.robust import median_sigma

    x = np.asarray(image, np.float64)
    x = x - median_filter(x, 7)
    med, sig = median_sigma(x.ravel())
    ok = np.abs(x - med) < clip * sig

    def corr(a, b, keep):
        a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
        return float((a * b).mean() / (a.std() * b.std()))

    return (corr(x[:, 1:], x[:, :-1], ok[:, 1:] & ok[:, :-1]), corr(x[1:], x[:-1], ok[1:] & ok[:-1]))


def sky_pixel_nmgy(band: str) -> float:
    """Sky flux falling on one pixel, nanomaggies (before sky subtraction)."""
    return float(mag_to_nmgy(BAND_MODELS[band].sky_mag_arcsec2)) * PIXEL_SCALE_ARCSEC ** 2


def photon_noise(rng: np.random.Generator, light_nmgy: np.ndarray, bands, sigma_nmgy, lag1_xy) -> np.ndarray:
    """Poisson noise of added light (bands, H, W), nanomaggies: in a sky-limited coadd, light f on a
    pixel adds variance sigma_sky^2 x f / f_sky (photons of the object over photons of the sky, whatever
    the exposure time), correlated like the sky noise by the same resampling."""
    f_sky = np.array([sky_pixel_nmgy(b) for b in bands]).reshape(-1, 1, 1)
    sigma = np.asarray(sigma_nmgy, np.float64).reshape(-1, 1, 1)
    unit = correlated_noise(rng, np.ones(len(bands)), light_nmgy.shape, lag1_xy)
    return unit * sigma * np.sqrt(np.clip(light_nmgy, 0.0, None) / f_sky)


@functools.lru_cache(maxsize=4096)
def psf_kernel(fwhm_arcsec: float, beta: float = 3.5, kind: str = "moffat") -> np.ndarray:
    """Pixel-integrated PSF kernel, (63, 63) float64, centred, normalised to sum 1 (read-only)."""
    if kind not in PSF_PROFILES:
        raise UsageError(f"unknown PSF kind {kind!r}; choose one of {', '.join(PSF_PROFILES)}")
    n = 2 * PSF_HALF_SIZE_PIX + 1
    s = PSF_SUPERSAMPLE
    c = (n * s - 1) // 2  # the centre sub-pixel (n * s is odd)
    sub = np.arange(c + 1) / s * PIXEL_SCALE_ARCSEC  # sub-pixel centres from the centre outwards, arcsec
    quadrant = PSF_PROFILES[kind](sub[:, None] ** 2 + sub[None, :] ** 2, fwhm_arcsec, beta)
    half = np.concatenate([quadrant[:0:-1], quadrant])  # the profile is even in x and in y: evaluated on one
    prof = np.concatenate([half[:, :0:-1], half], axis=1)  # quadrant, 4x fewer powers, the same numbers
    k = prof.reshape(n, s, n, s).sum(axis=(1, 3))
    k /= k.sum()
    k.setflags(write=False)
    return k


def shift_kernels(kernels: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """(B, K, K) kernels moved by (dy, dx) pixels (Fourier shift: sub-pixel, flux kept). Convolving a scene
    with them moves all of it off the pixel grid by that much."""
    if dy == 0 and dx == 0:
        return kernels
    k = kernels.shape[-1]
    fy, fx = np.fft.fftfreq(k)[:, None], np.fft.fftfreq(k)[None, :]
    phase = np.exp(-2j * np.pi * (fy * dy + fx * dx))
    return np.fft.ifft2(np.fft.fft2(kernels, axes=(-2, -1)) * phase, axes=(-2, -1)).real


def _moffat(r2: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (1.0 + r2 / alpha ** 2) ** (-beta)


def _gaussian(r2: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    sigma = fwhm / 2.3548200450309493
    return np.exp(-0.5 * r2 / sigma ** 2)


PSF_PROFILES = {"moffat": _moffat, "gaussian": _gaussian}  # registry: PSF kind -> radial profile
