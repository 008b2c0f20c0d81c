"""Calibration and realistic prevalence: reliability diagram data, ECE, Brier score, and what the measured
TPR/FPR mean when only ~1e-4 of galaxies are lenses (precision, expected false positives per million).

Plain numpy. Exercise: `dhs evaluate SCORES --out DIR` (section "Calibration" of the report).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from darkhaloscope.common.calibration import ece_of_bins, reliability_bins
from darkhaloscope.common.ranking import (Metric, check_inputs, false_positives_per_million,
                                            precision_at_prevalence, wilson_interval)


@dataclass(frozen=True)
class Reliability:
    edges: np.ndarray  # (B+1,) probability bin edges
    count: np.ndarray  # (B,) rows per bin
    mean_score: np.ndarray  # (B,) mean predicted probability (nan for empty bins)
    frac_pos: np.ndarray  # (B,) observed fraction of lenses (nan for empty bins)
    lo: np.ndarray  # (B,) Wilson 95% interval of frac_pos
    hi: np.ndarray
    ece: float  # expected calibration error: sum_b n_b/N |frac_pos_b - mean_score_b|
    brier: float  # mean (score - label)^2


def reliability(labels, probs, n_bins: int = 15) -> Reliability:
    """Equal-width probability bins; ECE weighted by bin population; Brier score."""
    y, p = check_inputs(labels, probs)
    edges, count, sum_p, sum_y = reliability_bins(y, p, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score, frac = sum_p / count, sum_y / count
    lo, hi = wilson_interval(sum_y, count)
    brier = float(np.mean((p - y) ** 2)) if len(p) else float("nan")
    return Reliability(edges, count, mean_score, frac, lo, hi, ece_of_bins(count, sum_p, sum_y), brier)


@dataclass(frozen=True)
class PrevalenceRow:
    prevalence: float  # fraction of galaxies that are lenses
    tpr: float | None
    fpr: float | None
    precision: float | None  # purity of the candidate list
    fp_per_million: float | None  # expected false positives per 1e6 galaxies searched
    lenses_per_million: float | None  # expected true positives per 1e6 galaxies
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def prevalence_table(tpr: Metric | float | None, fpr: Metric | float | None, n_neg: int,
                     prevalences=(1e-2, 1e-3, 1e-4)) -> list[PrevalenceRow]:
    """What the measured operating point means at realistic prevalences.

    When no false positive was seen the FPR is only bounded: the row uses the one-sided 95% upper bound
    3/n_neg ("rule of three") and says so.
    """
    t = tpr.value if isinstance(tpr, Metric) else tpr
    f = fpr.value if isinstance(fpr, Metric) else fpr
    rows = []
    for pi in prevalences:
        if t is None or f is None:
            rows.append(PrevalenceRow(pi, t, f, None, None, None, "undefined: needs both classes"))
            continue
        note, f_used = "", f
        if f == 0:
            f_used = 3.0 / n_neg if n_neg else None
            note = f"no false positive among {n_neg:,} controls: FPR <= {f_used:.2g} (95% upper bound) used"
        if f_used is None:
            rows.append(PrevalenceRow(pi, t, f, None, None, None, "no controls"))
            continue
        rows.append(PrevalenceRow(pi, t, f, precision_at_prevalence(t, f_used, pi),
                                  false_positives_per_million(f_used, pi), t * pi * 1e6, note))
    return rows
