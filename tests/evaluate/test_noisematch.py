"""Noise-matched operating points (evaluate.noisematch): sky noise estimate, Wilson cells, re-noising, bins."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.common import ranking as M
from darkhaloscope.evaluate import noisematch as N


def test_sky_sigma_of_white_noise_of_known_sigma():
    rng = np.random.default_rng(0)
    sig = np.array([0.002, 0.003, 0.008])
    img = rng.normal(0, 1, (20, 3, 64, 64)) * sig[None, :, None, None]
    img[:, :, 24:40, 24:40] += 5.0  # a bright lens in the centre does not enter (r < 20 px)
    est = N.sky_sigma(img.astype(np.float32))
    np.testing.assert_allclose(np.median(est, axis=0), sig, rtol=0.03)
    # a flat band and a band of NaN cannot be measured: NaN, said by the caller
    img[0, 1] = 0.0
    img[1, 2] = np.nan
    est = N.sky_sigma(img)
    assert np.isnan(est[0, 1]) and np.isnan(est[1, 2]) and np.isfinite(est[0, 0]) and np.isfinite(est[1, 0])


def test_wilson_cells_by_hand():
    c = N.recall_cell(np.array([True] * 5 + [False] * 5))
    assert (c.found, c.n, c.recall) == (5, 10, 0.5)
    assert c.lo == pytest.approx(0.2366, abs=1e-4) and c.hi == pytest.approx(0.7634, abs=1e-4)  # Wilson 95%
    assert c.text() == "5/10 = 50% [24%, 76%]"
    z = N.recall_cell(np.zeros(6, bool))
    assert z.lo == pytest.approx(0.0, abs=1e-12) and z.hi == pytest.approx(0.3903, abs=1e-4)
    assert N.recall_cell(np.ones(3, bool), resolvable=False).text() == "not resolvable"
    assert N.recall_cell(np.ones(3, bool), resolvable=False).as_dict()["recall"] is None
    t = N.recall_table({"all": np.ones(4, bool), "grade A": np.array([1, 1, 0, 0], bool)},
                       {"0.01": np.array([1, 0, 1, 0], bool)})
    assert t["all"]["0.01"].found == 2 and t["grade A"]["0.01"].text().startswith("1/2 = 50%")


def test_renoise_raises_control_noise_to_the_target_within_a_few_percent():
    rng = np.random.default_rng(1)
    own = np.array([0.0018, 0.0030, 0.0080])
    from darkhaloscope.sim.observing import correlated_noise

    ctrl = np.stack([correlated_noise(rng, own, (3, 64, 64), (0.23, 0.31)) for _ in range(40)]).astype(np.float32)
    target = np.array([0.0070, 0.0100, 0.0060])  # z is below the controls' own noise: left as it is
    measured = N.sky_sigma(ctrl)
    out = N.renoise(ctrl, measured, target, np.random.default_rng(2))
    got = np.median(N.sky_sigma(out), axis=0)
    np.testing.assert_allclose(got[:2], target[:2], rtol=0.04)
    np.testing.assert_allclose(got[2], np.median(measured[:, 2]), rtol=1e-6)  # nothing added below
    np.testing.assert_array_equal(out[:, 2], ctrl[:, 2])
    bins = N.noise_bins(np.array([[0.007, 0.010, 0.006]]), np.median(measured, axis=0), 4)
    assert bins.below() == [(0, 2)]  # said in the report: band z of bin 0 cannot be matched


def test_noise_bins_are_quantiles_and_skip_unmeasurable_lenses():
    ctrl = np.array([1.0, 1.0, 1.0])
    lens = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4], [np.nan, 1, 1], [5, 5, 5]], float)
    b = N.noise_bins(lens, ctrl, 2)
    assert b.bin.tolist() == [0, 0, 0, 1, -1, 1]  # 5 measurable lenses split 3 + 2; the NaN one is out
    np.testing.assert_allclose(b.target, [[2, 2, 2], [4.5, 4.5, 4.5]])
    np.testing.assert_allclose(b.ratio[[0, 3]], [1, 4])


def test_noise_matched_thresholds_on_noisier_controls():
    """A score that grows with the noise: controls brought to a lens's noise set a higher threshold than
    the clean controls, and a lens as noisy as its bin is judged against them (seeded: same result twice)."""
    rng = np.random.default_rng(3)
    ctrl = (rng.normal(0, 1, (200, 3, 64, 64)) * 0.002).astype(np.float32)  # FPR 0.01: 2 controls above

    def score_fn(images):
        return N.sky_sigma(images).mean(axis=1) * 1000 + rng_score.normal(0, 0.01, len(images))

    rng_score = np.random.default_rng(4)
    lens_sigma = np.array([[0.002] * 3, [0.002] * 3, [0.006] * 3, [0.006] * 3])
    lens_values = np.array([2.5, 1.0, 6.5, 5.5])  # above clean controls (~2); the noisy pair straddles ~6
    m = N.noise_matched(lens_values, lens_sigma, ctrl, score_fn, [0.1, 0.01], n_bins=2, seed=7)
    assert m.bins.bin.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(m.achieved_sigma[1], 0.006, rtol=0.04)
    assert m.found[0.01].tolist() == [True, False, True, False] and all(m.resolvable.values())
    assert 6.0 < m.threshold[0.01][2] < 6.4 and 2.0 < m.threshold[0.01][0] < 2.4  # the noisy bin: ~3x
    # each bin's re-noised control values are kept (for paired bootstraps): its thresholds are set on them
    assert [len(v) for v in m.control_values] == [200, 200]
    assert m.threshold[0.01][2] == M.control_threshold(m.control_values[1], 0.01)[0]
    rng_score = np.random.default_rng(4)
    again = N.noise_matched(lens_values, lens_sigma, ctrl, score_fn, [0.1, 0.01], n_bins=2, seed=7)
    np.testing.assert_array_equal(again.threshold[0.01], m.threshold[0.01])
    assert not N.noise_matched(lens_values, lens_sigma, ctrl[:50], score_fn, [0.01], n_bins=2).resolvable[0.01]


def test_fewer_bins_when_few_lenses():
    lens = np.arange(1, 7, dtype=float)[:, None].repeat(3, 1)  # 6 lenses
    assert N.noise_bins(lens, np.ones(3), 4, min_per_bin=20).bin.tolist() == [0] * 6  # one bin, one re-scoring
    assert len(N.noise_bins(np.ones((144, 3)), np.ones(3), 4, min_per_bin=20).target) == 4
    assert len(N.noise_bins(np.ones((50, 3)), np.ones(3), 4, min_per_bin=20).target) == 2
