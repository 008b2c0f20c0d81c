"""Metrics against scikit-learn and hand computations: ties, one class, TPR0/TPR10, rates at prevalence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from darkhaloscope.errors import DataError
from darkhaloscope.common import ranking as M


def _brute_tpr_at_fpr(y, s, fpr):
    """Hand definition: max TPR over every threshold t in the scores (and +inf) with FPR(t) <= fpr."""
    neg, pos = np.sort(s[y == 0]), np.sort(s[y == 1])
    t = np.unique(s)
    f = (len(neg) - np.searchsorted(neg, t, side="left")) / len(neg)  # FPR(t) = mean(neg >= t)
    tpr = (len(pos) - np.searchsorted(pos, t, side="left")) / len(pos)
    return max(0.0, tpr[f <= fpr].max(initial=0.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rounding", [None, 1])
def test_agrees_with_sklearn_on_random_scores(seed, rounding):
    rng = np.random.default_rng(seed)
    y = (rng.random(3000) < 0.3).astype(int)
    s = rng.normal(y * 1.2, 1.0)
    if rounding is not None:
        s = np.round(s, rounding)  # heavy ties
    assert abs(M.auroc(y, s).value - roc_auc_score(y, s)) < 1e-9
    assert abs(M.average_precision(y, s).value - average_precision_score(y, s)) < 1e-9
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    pts = M.roc_points(y, s)
    np.testing.assert_allclose(pts.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(pts.tpr, tpr, atol=1e-12)
    np.testing.assert_array_equal(pts.thresholds[1:], thr[1:])
    for target in (0.01, 0.05, 0.2):
        assert abs(M.tpr_at_fpr(y, s, target).value - _brute_tpr_at_fpr(y, s, target)) < 1e-12
        # fpr_at_tpr by hand: min FPR over thresholds with TPR >= target
        u = np.unique(s)[:, None]  # every threshold at once (the same means: 3,000 thresholds x rows in one pass)
        fpr_u, tpr_u = (s[y == 0] >= u).mean(axis=1), (s[y == 1] >= u).mean(axis=1)
        want = fpr_u[tpr_u >= target].min()
        assert abs(M.fpr_at_tpr(y, s, target).value - want) < 1e-12


def test_heavy_ties_at_the_top_are_not_split_in_the_lenses_favour():
    # 62,910 controls; the CNN saturates: 40 lenses and 1 control share the top score 1.0.
    n_neg = 62_910
    y = np.r_[np.ones(40, int), np.zeros(1, int), np.ones(960, int), np.zeros(n_neg - 1, int)]
    s = np.r_[np.ones(41), np.full(960, 0.9), np.linspace(0, 0.8, n_neg - 1)]
    # FPR 1e-4 allows floor(6.291) = 6 false positives: the tie group at 1.0 (1 FP) and the 0.9 group fit.
    r = M.tpr_at_fpr(y, s, 1e-4)
    assert r.resolvable and r.count == 1000 and r.value == 1.0
    assert abs(r.value - _brute_tpr_at_fpr(y, s, 1e-4)) < 1e-12
    # TPR0: the control tied at 1.0 is a false positive at the first operating point -> TPR0 = 0 exactly
    assert M.tpr0(y, s).value == 0.0 and M.tpr0(y, s).count == 0
    # 1 FP among 62,910: FPR at the top point is 1/62,910, not 0 and not 1e-4
    pts = M.roc_points(y, s)
    assert pts.fpr[1] == 1 / n_neg and pts.tp[1] == 40
    assert abs(M.auroc(y, s).value - roc_auc_score(y, s)) < 1e-9


def test_all_scores_tied_give_half():
    y = np.r_[np.ones(5), np.zeros(7)].astype(int)
    s = np.full(12, 0.7)
    assert M.auroc(y, s).value == 0.5
    assert M.tpr_at_fpr(y, s, 0.5).value == 0.0  # the only point past +inf has FPR 1


def test_tpr0_tpr10_hand_example():
    # descending: L L C L L C C C C C C C C C L  (L lens, C control); scores distinct
    pattern = "LLCLLCCCCCCCCCL"
    y = np.array([1 if c == "L" else 0 for c in pattern])
    s = np.arange(len(y))[::-1].astype(float)
    assert M.tpr0(y, s).value == pytest.approx(2 / 5) and M.tpr0(y, s).count == 2
    # fewer than 10 false positives: down to just before the 10th control -> lenses 1-4
    r10 = M.tpr10(y, s)
    assert r10.count == 4 and r10.value == pytest.approx(4 / 5)
    assert M.tpr_n(y, s, 1).value == M.tpr0(y, s).value


def test_tpr_at_fpr_not_resolvable_with_too_few_negatives():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(500), np.zeros(768)].astype(int)
    s = rng.random(len(y)) + y
    r = M.tpr_at_fpr(y, s, 1e-4)
    assert r.value is None and not r.resolvable
    assert "768 negatives" in r.reason and "10,000" in r.reason
    assert "noisy" in M.tpr_at_fpr(y, s, 1e-2).reason  # 7 false positives allowed


@pytest.mark.parametrize("fn", [M.auroc, M.average_precision, M.tpr0,
                                lambda y, s: M.tpr_at_fpr(y, s, 1e-3), lambda y, s: M.fpr_at_tpr(y, s, 0.5)])
def test_one_class_is_undefined_with_reason(fn):
    r = fn(np.ones(96, int), np.linspace(0, 1, 96))
    assert r.value is None and not r.defined
    assert "only one class" in r.reason and "controls" in r.reason
    assert "nan" not in str(r).lower() and str(r).startswith("undefined (")


def test_bad_inputs_are_clear_errors():
    with pytest.raises(DataError, match="row 2"):
        M.auroc([0, 1, 1], [0.1, 0.2, np.nan])
    with pytest.raises(DataError, match="labels must be 1"):
        M.auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="same length"):
        M.auroc([0, 1], [0.1, 0.2, 0.3])


def test_confusion_threshold_table_and_prevalence():
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    c = M.confusion_at(y, s, 0.5)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 2, 1)
    row = M.threshold_table(M.tie_groups(y, s), [0.5])[0]
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)
    assert row["f1"] == pytest.approx(2 / 3) and row["fpr"] == pytest.approx(1 / 3)
    # precision at prevalence 1e-4 with TPR 0.5, FPR 1e-3: 0.5e-4 / (0.5e-4 + 1e-3 * 0.9999)
    assert M.precision_at_prevalence(0.5, 1e-3, 1e-4) == pytest.approx(0.5e-4 / (0.5e-4 + 0.9999e-3), rel=1e-12)
    assert M.false_positives_per_million(1e-3, 1e-4) == pytest.approx(999.9)


def test_wilson_interval_hand_values():
    lo, hi = M.wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    # k=5, n=10: centre 0.5, half-width z*sqrt(0.025+z^2/400)/(1+z^2/10)
    z = 1.959963984540054
    half = z * np.sqrt(0.025 + z * z / 400) / (1 + z * z / 10)
    assert lo[1] == pytest.approx(0.5 - half, abs=1e-12) and hi[1] == pytest.approx(0.5 + half, abs=1e-12)
    assert lo[0] == 0.0 and hi[2] == pytest.approx(1.0, abs=1e-12)
