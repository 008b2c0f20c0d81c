"""Batched median/MAD against hand-computed values and np.median; float16 conversion figures by hand."""

import numpy as np
import pytest

from darkhaloscope.errors import DataError
from darkhaloscope.stamps.float16 import FLOAT16_MAX, RangeReport, to_float16
from darkhaloscope.stamps.robust import (MAD_TO_SIGMA, NORM_EPS_NMGY, median_lastaxis, median_mad,
                                         normalize_median_mad, normalize_median_mad_one)


def test_median_and_mad_by_hand():
    x = np.zeros((1, 2, 2, 3), np.float32)
    x[0, 0] = [[1, 2, 3], [4, 100, 6]]  # sorted 1 2 3 4 6 100 -> median 3.5; |x-3.5| 0.5 0.5 1.5 2.5 2.5 96.5 -> MAD 2
    x[0, 1] = [[5, 5, 5], [5, 5, 5]]  # constant band: MAD 0
    med, mad = median_mad(x)
    assert med.tolist() == [[3.5, 5.0]] and mad.tolist() == [[2.0, 0.0]]
    y = normalize_median_mad(x)
    assert y[0, 0, 0, 0] == pytest.approx((1 - 3.5) / (MAD_TO_SIGMA * 2 + NORM_EPS_NMGY))
    assert not y[0, 1].any()  # constant band -> zeros, no division by zero


@pytest.mark.parametrize("n", [4096, 4095, 1, 2])
def test_median_equals_numpy(n):
    x = np.random.default_rng(n).normal(size=(7, n)).astype(np.float32)
    assert np.array_equal(median_lastaxis(x), np.median(x, axis=1).astype(np.float32))


def test_batched_normalisation_equals_the_per_stamp_loop():
    x = np.random.default_rng(3).normal(0.01, 0.003, size=(37, 3, 64, 64)).astype(np.float32)
    fast = normalize_median_mad(x, chunk_stamps=8)
    slow = np.stack([normalize_median_mad_one(s) for s in x])
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)


def test_float16_figures_by_hand():
    x = np.zeros((1, 3, 1, 4), np.float32)
    x[0, 0, 0] = [1e-9, 1e-6, 0.001, 1.0]  # underflow (-> 0), subnormal, normal, normal
    x[0, 1, 0] = [0.0, -2e-8, 0.5, 3.0]  # zero (not counted), underflow, exact, exact
    rep = RangeReport()
    f16 = to_float16(x, rep)
    assert f16.dtype == np.float16 and f16[0, 0, 0, 0] == 0 and f16[0, 1, 0, 2] == 0.5
    g, r = rep.bands["g"], rep.bands["r"]
    assert (g.pixels, g.subnormal, g.underflow, g.clipped) == (4, 2, 1, 0)
    assert (r.subnormal, r.underflow) == (1, 1)
    assert g.max_rel_err <= 2.0 ** -11  # round-to-nearest, 11 significant bits
    # largest error: 0.001 -> float16 0.0010004 (the subnormal 1e-6 is off by < 3e-8)
    assert g.max_abs_err_nmgy == pytest.approx(abs(np.float32(np.float16(0.001)) - np.float32(0.001)))
    assert rep.to_dict()["bands"]["g"]["underflow_frac"] == 0.25


def test_float16_overflow_is_refused_or_clipped():
    x = np.zeros((2, 3, 2, 2), np.float32)
    x[1, 2, 1, 1] = 1.5e5  # 150000 nmgy in one z pixel: not nanomaggies
    with pytest.raises(DataError, match=r"f\.parquet row 9 band z value 1\.5e\+05 nmgy: exceeds the float16"):
        to_float16(x, RangeReport(), where=lambda i: f"f.parquet row {8 + i}")
    rep = RangeReport()
    f16 = to_float16(x, rep, clip=True, where=lambda i: f"f.parquet row {8 + i}")
    assert f16[1, 2, 1, 1] == FLOAT16_MAX and rep.clipped == 1 and rep.bands["z"].clipped == 1
    assert rep.first_clipped.startswith("f.parquet row 9 band z")
