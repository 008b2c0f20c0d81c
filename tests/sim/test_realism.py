"""Real-sky realism of `dhs simulate`: source counts, theta_E, clumpy sources, photon noise, host colours,
anisotropic correlated noise matched to the real DR10 cutouts, and real hosts' own PSF size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kstest

from darkhaloscope.sim.build import SimContext, make_plan
from darkhaloscope.sim.hosts import draw_counts_mag, render_synthetic_host
from darkhaloscope.sim.inject import Knot, LensParams, SourceParams, render_clumpy_source
from darkhaloscope.sim.observing import correlated_noise, noise_lag1, photon_noise, sky_pixel_nmgy
from darkhaloscope.sim.params import grid_points, parse_theta_e_dist
from darkhaloscope.sim.render import render_row
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, pixel_radius



def test_source_magnitudes_follow_the_galaxy_number_counts():
    cfg = SimConfig()
    lo, hi, a = *cfg.src_mag_r, cfg.src_count_slope
    rng = np.random.default_rng(0)
    draws = np.array([draw_counts_mag(rng, lo, hi, a) for _ in range(4000)])

    def cdf(m):  # N(<m) for dN/dm ~ 10^(a m) on [lo, hi], integrated by hand
        return (10 ** (a * np.asarray(m)) - 10 ** (a * lo)) / (10 ** (a * hi) - 10 ** (a * lo))

    assert kstest(draws, cdf).pvalue > 0.01
    assert kstest(draws, lambda m: (np.asarray(m) - lo) / (hi - lo)).pvalue < 1e-6  # not uniform


def test_theta_e_draws_follow_the_truncated_lognormal_of_lens_samples():
    cfg = SimConfig()
    sampler, _ = parse_theta_e_dist(cfg.theta_e_dist, cfg.theta_e_arcsec)
    rng = np.random.default_rng(1)
    draws = np.array([sampler(rng) for _ in range(4000)])
    lo, hi = cfg.theta_e_arcsec
    phi = lambda x: 0.5 * (1 + math.erf((math.log(x) - math.log(1.5)) / (0.3 * math.sqrt(2))))  # noqa: E731
    cdf = np.vectorize(lambda x: (phi(min(max(x, lo), hi)) - phi(lo)) / (phi(hi) - phi(lo)))
    assert kstest(draws, cdf).pvalue > 0.01
    assert draws.min() >= 0.6 and draws.max() <= 3.0
    assert 0.8 < np.mean((draws >= 1.0) & (draws <= 2.5)) < 0.95  # most at 1-2.5", tails to 0.6 and 3"


@pytest.mark.parametrize("text", ["lognormal:5:0.3", "lognormal:1.5:0", "gamma:1:2", "lognormal:x:1"])
def test_impossible_theta_e_distribution_is_refused(text):
    from darkhaloscope.errors import UsageError

    with pytest.raises(UsageError, match="theta_e_dist"):
        parse_theta_e_dist(text, (0.6, 3.0))


def test_knot_images_carry_the_sis_magnification():
    """A knot alone at beta = 0.45" behind an SIS of theta_E 1.5": two images, mu = 2 theta_E / beta."""
    lens = LensParams(1.5, 1.0, 0.0, 0.0, 0.0)
    sersic = SourceParams(0.45, 0.0, 0.04, 1.0, 0.0, 0.0)
    body, knots = render_clumpy_source(lens, [(sersic, 0.7)], (Knot(0.45, 0.0, 0.03, 0.3),), ss=12)
    assert knots.sum() / 0.3 == pytest.approx(2 * 1.5 / 0.45, rel=0.03)
    assert body.sum() / 0.7 == pytest.approx(2 * 1.5 / 0.45, rel=0.03)


def test_photon_noise_variance_is_sky_variance_times_object_over_sky_photons():
    sigma = [0.0018, 0.0030, 0.0080]
    f = np.array([sky_pixel_nmgy(b) for b in "grz"]) * 4.0  # object 4x the sky on each pixel
    light = np.broadcast_to(f[:, None, None], (3, 200, 200)).copy()
    n = photon_noise(np.random.default_rng(0), light, ("g", "r", "z"), sigma, (0.0, 0.0))
    np.testing.assert_allclose(n.std(axis=(1, 2)), 2.0 * np.array(sigma), rtol=0.03)
    assert not photon_noise(np.random.default_rng(0), np.zeros((3, 8, 8)), ("g", "r", "z"), sigma, 0.2).any()


def test_simulated_noise_correlation_matches_the_real_cutouts_measured_the_same_way(dr10_dir):
    cfg = SimConfig()
    sim = correlated_noise(np.random.default_rng(2), [1.0], (1, 256, 256), cfg.noise_corr_lag1)[0]
    sx, sy = noise_lag1(sim)
    assert sx == pytest.approx(0.19, abs=0.03) and sy == pytest.approx(0.27, abs=0.03)
    real = np.array([noise_lag1(np.load(f)["cutout"][:, :, 1]) for f in sorted(dr10_dir.glob("*.npz"))])
    rx, ry = np.median(real, axis=0)
    assert abs(sx - rx) < 0.04 and abs(sy - ry) < 0.04 and ry > rx  # anisotropic, like the real coadds


def test_synthetic_hosts_have_lrg_colours_and_bluer_outskirts():
    cfg = SimConfig(neighbours_mean=0, stars_mean=0)
    r_arcsec = pixel_radius() * PIXEL_SCALE_ARCSEC
    for s in range(5):
        model, hp = render_synthetic_host(np.random.default_rng(s), cfg)
        inner, outer = r_arcsec < 1.0, (r_arcsec > 2.0) & (r_arcsec < 4.0)
        rz = -2.5 * math.log10(model[1].sum() / model[2].sum())
        assert 0.9 <= rz <= 1.5
        gr_in = -2.5 * math.log10(model[0][inner].sum() / model[1][inner].sum())
        gr_out = -2.5 * math.log10(model[0][outer].sum() / model[1][outer].sum())
        assert gr_out < gr_in - 0.01  # colour gradient: redder core


def test_real_hosts_use_their_own_psf_size_from_metadata(tmp_path):
    from darkhaloscope.sim.hosts import load_real_hosts

    hosts = tmp_path / "hosts"
    hosts.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        np.savez(hosts / f"h{k}.npz", cutout=rng.normal(0, 0.003, (64, 64, 3)).astype(np.float32),
                 meta_psfsize_g=1.62, meta_psfsize_r=1.46, meta_psfsize_z=1.34)
    cfg = SimConfig(hosts=str(hosts), splits="train=1")
    real = load_real_hosts(str(hosts))
    ctx = SimContext(cfg, 1, make_plan(6, 1, cfg, real), real, grid_points({}), None)
    for i in range(6):
        c = render_row(ctx, i).columns
        assert (c["psf_fwhm_used_g"], c["psf_fwhm_used_r"], c["psf_fwhm_used_z"]) == (1.62, 1.46, 1.34)


def test_shifted_psf_kernels_move_their_centroid_and_keep_their_flux():
    from darkhaloscope.sim.observing import psf_kernel, shift_kernels

    k = np.stack([psf_kernel(1.3), psf_kernel(1.5, kind="gaussian")])
    y, x = np.indices(k.shape[1:]) - k.shape[-1] // 2
    moved = shift_kernels(k, 0.3, -0.45)
    for a, b in zip(k, moved):
        assert b.sum() == pytest.approx(a.sum(), abs=1e-9)
        assert ((b * y).sum() - (a * y).sum(), (b * x).sum() - (a * x).sum()) == pytest.approx((0.3, -0.45), abs=0.01)
    assert shift_kernels(k, 0.0, 0.0) is k


def test_synthetic_scenes_sit_off_the_centre_pixel_as_recorded():
    """Each synthetic row records its offset (uniform within +-centre_offset_px per axis; its own random stream,
    so the rest of the row is drawn as without it); the host light's centroid follows it; 0 turns it off."""
    from darkhaloscope.sim.build import SimContext, make_plan
    from darkhaloscope.sim.params import grid_points, parse_snr_dist
    from darkhaloscope.sim.render import render_row

    def rows(offset):
        cfg = SimConfig(host_mag_r=(17.0, 17.5), neighbours_mean=0.0, stars_mean=0.0, centre_offset_px=offset,
                        confusers=0.0)
        ctx = SimContext(cfg, 5, make_plan(40, 5, cfg), None, grid_points({}), parse_snr_dist(cfg.arc_snr_dist))
        return [render_row(ctx, i) for i in range(40)]

    shifted, centred = rows(0.5), rows(0.0)
    off = np.array([[r.columns["centre_offset_y_px"], r.columns["centre_offset_x_px"]] for r in shifted])
    assert np.abs(off).max() <= 0.5 and off.std() > 0.2
    assert all(r.columns["centre_offset_x_px"] == 0 == r.columns["centre_offset_y_px"] for r in centred)
    y, x = np.indices((9, 9)) - 4
    measured, recorded = [], []
    for a, b in zip(shifted, centred):
        if a.columns["is_control"]:  # the host alone: how far its light centroid (central 9x9 px) moved
            core, ref = a.image[1, 28:37, 28:37], b.image[1, 28:37, 28:37]
            measured.append([(core * y).sum() / core.sum() - (ref * y).sum() / ref.sum(),
                             (core * x).sum() / core.sum() - (ref * x).sum() / ref.sum()])
            recorded.append([a.columns["centre_offset_y_px"], a.columns["centre_offset_x_px"]])
    measured, recorded = np.array(measured), np.array(recorded)
    for axis in (0, 1):  # a 9x9 window centroid of a Sersic host underestimates the shift, but follows it
        assert np.corrcoef(measured[:, axis], recorded[:, axis])[0, 1] > 0.9
        assert (np.sign(measured[:, axis]) == np.sign(recorded[:, axis]))[np.abs(recorded[:, axis]) > 0.1].all()
