"""Physics of `dhs simulate` against values computed by hand from the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkhaloscope.sim.build import SimContext, make_plan
from darkhaloscope.sim.inject import LensParams, SourceParams, render_lensed_source, render_sersic
from darkhaloscope.sim.observing import (BAND_MODELS, PSF_PROFILES, depth_from_sigma, mag_to_nmgy, nmgy_to_mag,
                                         pixel_sigma_nmgy, psf_kernel)
from darkhaloscope.sim.params import grid_points
from darkhaloscope.sim.render import render_row
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC


def test_magnitudes_to_nanomaggies():
    np.testing.assert_allclose(mag_to_nmgy([22.5, 20.0, 25.0, 17.5]), [1.0, 10.0, 0.1, 100.0])
    np.testing.assert_allclose(nmgy_to_mag([1.0, 10.0, 0.1]), [22.5, 20.0, 25.0])
    assert nmgy_to_mag(0.0) == np.inf


def _radius_grid():
    idx = (np.arange(64) - 32) * PIXEL_SCALE_ARCSEC
    return np.hypot(idx[None, :], idx[:, None])


def test_sis_with_source_on_axis_gives_a_ring_at_theta_e():
    theta_e = 1.5
    img = render_lensed_source(LensParams(theta_e, 1.0, 0.0, 0.0, 0.0), SourceParams(0, 0, 0.04, 1.0, 0, 0), ss=8)
    r = _radius_grid()
    mean_r = float((img * r).sum() / img.sum())
    assert mean_r == pytest.approx(theta_e, abs=0.03)
    assert abs(r.ravel()[img.argmax()] - theta_e) <= PIXEL_SCALE_ARCSEC / 2 * math.sqrt(2)
    # a ring, not an arc: equal flux in the four quadrants (mirror images about the centre pixel)
    q = [img[:32, :32].sum(), img[:32, 33:].sum(), img[33:, :32].sum(), img[33:, 33:].sum()]
    assert max(q) / min(q) == pytest.approx(1.0, abs=1e-6)
    assert min(q) > 0.2 * img.sum()


@pytest.mark.parametrize("beta, expected", [(0.45, 2 * 1.5 / 0.45),  # two images: mu = 2 theta_E / beta
                                            (3.0, 1.5)])  # one image at beta + theta_E: 1 / (1 - theta_E / 4.5)
def test_lensed_flux_over_unlensed_flux_is_the_sis_magnification(beta, expected):
    img = render_lensed_source(LensParams(1.5, 1.0, 0.0, 0.0, 0.0), SourceParams(beta, 0, 0.04, 1.0, 0, 0),
                               ss=12, flux_nmgy=2.0)
    assert img.sum() / 2.0 == pytest.approx(expected, rel=0.02)


def test_reported_magnification_is_lensed_over_unlensed_flux_of_the_injected_arc(tmp_path):
    cfg = SimConfig(supersample=4, pair=True, photon_noise=False)  # (arc_snr is that of the noiseless arc)
    ctx = SimContext(cfg, 11, make_plan(12, 11, cfg), None, grid_points({}), None)
    done = 0
    for i in np.flatnonzero(ctx.plan.is_control == 0)[:3]:
        res = render_row(ctx, int(i))
        c = res.columns
        arc = res.image.astype(np.float64) - res.ctrl_image
        # PSF-convolved arc flux in the stamp = magnification x unlensed flux (PSF conserves flux)
        assert arc[1].sum() == pytest.approx(c["magnification"] * float(mag_to_nmgy(c["src_mag_r"])), rel=0.03)
        assert c["arc_flux_r_nmgy"] == pytest.approx(c["magnification"] * float(mag_to_nmgy(c["src_mag_r"])))
        # arc flux per band follows the requested colours
        assert arc[0].sum() / arc[1].sum() == pytest.approx(10 ** (-0.4 * (c["src_mag_g"] - c["src_mag_r"])),
                                                            rel=0.03)
        assert arc[2].sum() / arc[1].sum() == pytest.approx(10 ** (-0.4 * (c["src_mag_z"] - c["src_mag_r"])),
                                                            rel=0.03)
        # arc_snr = peak injected r pixel / per-pixel sigma of the recorded conditions
        sigma_r = pixel_sigma_nmgy("r", c["psfdepth_r"], c["psf_fwhm_used_r"])
        assert c["arc_snr"] == pytest.approx(arc[1].max() / sigma_r, rel=1e-3)
        assert c["src_dmag"] == pytest.approx(c["src_mag_r"] - c["host_mag_r"])
        done += 1
    assert done == 3


@pytest.mark.parametrize("kind", sorted(PSF_PROFILES))
def test_psf_is_normalised_and_has_the_requested_fwhm(kind):
    k = psf_kernel(1.2, 3.5, kind)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert k.shape == (63, 63) and np.unravel_index(k.argmax(), k.shape) == (31, 31)
    half = 0.6  # arcsec: the profile at FWHM/2 is half the peak
    assert PSF_PROFILES[kind](np.array(half ** 2), 1.2, 3.5) / PSF_PROFILES[kind](np.array(0.0), 1.2, 3.5) == \
        pytest.approx(0.5)


@pytest.mark.parametrize("kind", sorted(PSF_PROFILES))
def test_psf_kernel_is_the_profile_integrated_over_each_pixel(kind):
    """The kernel evaluates its profile on one quadrant of sub-pixels and mirrors it: the same numbers as the
    whole grid of 5 x 5 sub-pixels per pixel, summed per pixel and normalised."""
    from darkhaloscope.sim.observing import PIXEL_SCALE_ARCSEC, PSF_SUPERSAMPLE

    n, s = 63, PSF_SUPERSAMPLE
    sub = (np.arange(n * s) - (n * s - 1) / 2.0) / s * PIXEL_SCALE_ARCSEC
    whole = PSF_PROFILES[kind](sub[:, None] ** 2 + sub[None, :] ** 2, 1.37, 2.75).reshape(n, s, n, s).sum(axis=(1, 3))
    assert np.array_equal(psf_kernel.__wrapped__(1.37, 2.75, kind), whole / whole.sum())


def test_a_bright_star_has_no_kernel_edge_in_the_stamp():
    """A 17.5 mag star (the brightest the hosts draw) near the corner of a stamp, through a wide r PSF: its wings
    fall smoothly, with no step where the kernel ends (a 12-px kernel left a
    square 4-7 sky sigma bright around such stars)."""
    from scipy.signal import fftconvolve

    from darkhaloscope.sim.inject import add_point_source
    from darkhaloscope.sim.observing import PSF_HALF_SIZE_PIX, mag_to_nmgy

    star = np.zeros((64, 64))
    add_point_source(star, float(mag_to_nmgy(17.5)), -7.0, -7.0)  # 26.7 px left of and below the centre
    img = fftconvolve(star, psf_kernel(2.0, 3.25, "moffat"), mode="same")
    sigma_r = BAND_MODELS["r"].pixel_sigma_nmgy
    h = PSF_HALF_SIZE_PIX
    # the star sits on pixel (5, 5): the kernel ends h px out; the drop past it is < 0.1 sky sigma
    assert img.min() > -1e-12 and img[5 + h, 5] - img[5 + h + 1, 5] < 0.1 * sigma_r
    assert img[5 + h - 1, 5] - img[5 + h, 5] > 0  # still falling smoothly there
    assert img[36, 5] > 0 and img[5, 36] > 0  # its wings reach 31 px


def test_noise_calibrated_to_measured_dr10_sigma():
    for b, m in BAND_MODELS.items():
        assert pixel_sigma_nmgy(b, m.psfdepth_mag, m.psf_fwhm_arcsec) == pytest.approx(m.pixel_sigma_nmgy)
        # one magnitude deeper -> 10^(-0.4) times the noise
        assert pixel_sigma_nmgy(b, m.psfdepth_mag + 1, m.psf_fwhm_arcsec) == \
            pytest.approx(m.pixel_sigma_nmgy * 10 ** -0.4)
        assert depth_from_sigma(b, m.pixel_sigma_nmgy, m.psf_fwhm_arcsec) == pytest.approx(m.psfdepth_mag)


def test_sersic_total_flux_is_the_requested_flux():
    img = render_sersic(3.0, 0.5, 1.0, 0.1, 0.0)  # compact: all light inside the stamp
    assert img.sum() == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize("rho", [0.0, 0.35])
def test_sky_noise_has_the_requested_sigma_and_pixel_correlation(rho):
    from darkhaloscope.sim.observing import correlated_noise

    n = correlated_noise(np.random.default_rng(0), [0.0018, 0.0030, 0.0080], (3, 256, 256), rho)
    np.testing.assert_allclose(n.std(axis=(1, 2)), [0.0018, 0.0030, 0.0080], rtol=0.02)
    a = n / n.std(axis=(1, 2), keepdims=True)
    assert (a[:, :, :-1] * a[:, :, 1:]).mean() == pytest.approx(rho, abs=0.02)  # horizontal neighbours
    assert (a[:, :-1] * a[:, 1:]).mean() == pytest.approx(rho, abs=0.02)  # vertical neighbours
    assert (a[:, :-1, :-1] * a[:, 1:, 1:]).mean() == pytest.approx(rho ** 2, abs=0.02)  # separable kernel
