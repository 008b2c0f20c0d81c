"""Bootstrap intervals: coverage of a known AUROC by simulation, binning keeps the interval centred."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from darkhaloscope.common import ranking as M
from darkhaloscope.evaluate.bootstrap import bootstrap_ci, merge_bins, paired_recall_difference


def test_bootstrap_covers_the_known_auroc():
    # lenses ~ N(1, 1), controls ~ N(0, 1): true AUROC = Phi(1 / sqrt(2))
    true = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(0)
    hits, n_sim = 0, 150
    for i in range(n_sim):
        y = np.r_[np.ones(150, int), np.zeros(150, int)]
        s = rng.normal(y.astype(float), 1.0)
        ci = bootstrap_ci(y, s, "auroc", n_boot=300, seed=i)
        hits += ci.low <= true <= ci.high
    assert 0.88 <= hits / n_sim <= 0.995, hits / n_sim


@pytest.mark.slow
def test_binned_bootstrap_is_centred_and_close_to_exact():
    rng = np.random.default_rng(1)
    y = (rng.random(60_000) < 0.5).astype(int)
    s = rng.normal(y * 0.8, 1.0)
    exact = bootstrap_ci(y, s, "auroc", n_boot=300, max_bins=100_000, seed=3)  # exact: 60k distinct
    binned = bootstrap_ci(y, s, "auroc", n_boot=300, max_bins=500, seed=3)
    assert binned.n_bins <= 500 and exact.n_bins == 60_000
    point = M.auroc(y, s).value
    assert binned.low < point < binned.high
    assert abs(binned.low - exact.low) < 2e-3 and abs(binned.high - exact.high) < 2e-3


def test_merge_bins_keeps_counts_and_order():
    rng = np.random.default_rng(2)
    y = (rng.random(5000) < 0.4).astype(int)
    g = M.tie_groups(y, rng.random(5000))
    b = merge_bins(g, 37)
    assert len(b) <= 37 and b.n_pos == g.n_pos and b.n_neg == g.n_neg
    assert np.all(np.diff(b.thresholds) < 0)


def test_tpr_at_fpr_and_ap_intervals_contain_point_and_one_class_is_undefined():
    rng = np.random.default_rng(4)
    y = (rng.random(20_000) < 0.5).astype(int)
    s = rng.normal(y * 2.0, 1.0)
    for metric, kw, point in (("tpr_at_fpr", {"fpr": 1e-2}, M.tpr_at_fpr(y, s, 1e-2).value),
                              ("average_precision", {}, M.average_precision(y, s).value)):
        ci = bootstrap_ci(y, s, metric, n_boot=200, **kw)
        assert ci.low <= point <= ci.high and ci.high - ci.low < 0.1
    ci = bootstrap_ci(np.zeros(10, int), np.arange(10.0), "auroc")
    assert ci.low is None and "only one class" in ci.reason


def _paired_case(seed=0, n=144, n_ctrl=900, k=4):
    rng = np.random.default_rng(seed)
    bins = np.repeat(np.arange(k), n // k)
    bins[:3] = -1  # noise not measured: never found, still counted
    controls = rng.normal(0, 1, (k, n_ctrl)) + np.arange(k)[:, None] * 0.3  # noisier bins score higher
    lens = rng.normal(1.5, 1.2, n)
    return lens, bins, controls


def test_paired_recall_difference_point_is_the_noise_matched_rule():
    lens, bins, controls = _paired_case()
    better = lens + np.where(np.arange(len(lens)) % 2 == 0, 3.0, 0.0)  # half the lenses lifted far above
    d = paired_recall_difference(lens, better, bins, controls, controls, 0.01, n_boot=400, seed=1)
    thr = np.array([M.control_threshold(c, 0.01)[0] for c in controls])
    found = lambda v: int(((bins >= 0) & (v > thr[np.maximum(bins, 0)])).sum())  # noqa: E731
    assert (d["found_a"], d["found_b"], d["n"]) == (found(lens), found(better), 144)
    assert d["difference"] == pytest.approx((found(better) - found(lens)) / 144)
    assert 0 < d["ci95"][0] <= d["difference"] <= d["ci95"][1]  # a large gain: the interval excludes 0
    same = paired_recall_difference(lens, lens, bins, controls, controls, 0.01, n_boot=200)
    assert same["difference"] == 0 and same["ci95"] == (0.0, 0.0)  # paired: identical models never differ


def test_paired_recall_difference_covers_zero_for_exchangeable_models_and_checks_shapes():
    lens, bins, controls = _paired_case(seed=2)
    rng = np.random.default_rng(3)
    jitter = lambda v: v + rng.normal(0, 0.3, v.shape)  # noqa: E731  two models that differ by noise only
    d = paired_recall_difference(jitter(lens), jitter(lens), bins, jitter(controls), jitter(controls), 0.01,
                                 n_boot=400)
    assert d["ci95"][0] < 0 < d["ci95"][1] or d["difference"] == 0
    with pytest.raises(ValueError, match="do not pair up"):
        paired_recall_difference(lens, lens[:-1], bins, controls, controls, 0.01)
