"""Temperature scaling and ECE (common.calibration): known temperatures recovered, hand-computed ECE,
and the same ECE as the evaluate report's reliability diagram."""

import numpy as np
import pytest

from darkhaloscope.evaluate.calibration import reliability
from darkhaloscope.common.calibration import (bce_with_logits, calibrated_probability, calibration_summary, ece,
                                              fit_temperature, sigmoid)


@pytest.mark.parametrize("t_true", [0.5, 1.0, 3.0])
def test_fit_recovers_the_temperature_of_overconfident_logits(t_true):
    rng = np.random.default_rng(0)
    z_true = rng.normal(0, 3, 200_000)  # honest logits
    y = (rng.random(len(z_true)) < sigmoid(z_true)).astype(np.int8)
    z = z_true * t_true  # an over- (t > 1) or under-confident (t < 1) model
    assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.03)


def test_temperature_minimises_nll_and_lowers_ece():
    rng = np.random.default_rng(1)
    z_true = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < sigmoid(z_true)).astype(np.int8)
    z = 4 * z_true
    t = fit_temperature(z, y)
    nll = lambda tt: bce_with_logits(y, z / tt).mean()  # noqa: E731
    assert nll(t) <= min(nll(t * 0.95), nll(t * 1.05))
    c = calibration_summary(z, y)
    assert c["temperature"] == t and c["ece_calibrated"] < c["ece_raw"] / 2 and c["nll_calibrated"] < c["nll_raw"]
    assert np.array_equal(np.argsort(calibrated_probability(z, t)), np.argsort(sigmoid(z)))  # ranking kept


def test_ece_by_hand_and_as_in_the_report():
    # bins of width 0.5: [0.2, 0.4] -> labels [0, 1]: |0.5 - 0.3| = 0.2 on 2 rows; [0.9] -> [1]: |1 - 0.9| = 0.1
    y, p = np.array([0, 1, 1]), np.array([0.2, 0.4, 0.9])
    assert ece(y, p, n_bins=2) == pytest.approx((2 * 0.2 + 1 * 0.1) / 3)
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 2, 1000), rng.random(1000)
    assert ece(y, p, 15) == pytest.approx(reliability(y, p, 15).ece, abs=1e-12)


def test_one_class_or_empty_gives_temperature_one():
    assert fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 1.0
    assert fit_temperature(np.array([]), np.array([])) == 1.0
