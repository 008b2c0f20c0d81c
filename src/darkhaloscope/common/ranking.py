"""Ranking metrics of a lens finder, exact with tied scores: what `dhs evaluate` and training validation report.

Plain numpy, no torch. Every metric is computed from `TieGroups`: the distinct scores in descending order
with the number of positives (label 1, lens / injection) and negatives (label 0, control) at each score.
An operating point is "score >= threshold" for a distinct score, so tied scores enter or leave together:
a tie between a lens and a control is never split in the lens's favour (the bug that once read TPR at
FPR 1e-4 as 0%). `roc_points`, `auroc` and `average_precision` agree with scikit-learn's `roc_curve`
(drop_intermediate=False), `roc_auc_score` and `average_precision_score`.

Results that can be undefined are `Metric`s: `value` is None and `reason` says why (one class only, too
few negatives to resolve an FPR); never a bare nan. Exercise: `dhs evaluate SCORES --out DIR`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from darkhaloscope.errors import DataError


@dataclass(frozen=True)
class Metric:
    """One number with its provenance. `value` None means undefined, and `reason` says why."""

    value: float | None
    reason: str = ""  # why undefined, or a caveat (e.g. "based on 3 false positives")
    n_pos: int = 0  # positives (lenses / injections) it was computed on
    n_neg: int = 0  # negatives (controls)
    resolvable: bool = True  # False: too few negatives/positives to resolve the requested rate
    count: int | None = None  # the integer behind a rate (true positives for TPR, false positives for FPR)
    threshold: float | None = None  # the score threshold of the operating point, when there is one

    @property
    def defined(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        if self.value is None:
            return f"undefined ({self.reason})"
        return f"{self.value:.4g}" + (f" ({self.reason})" if self.reason else "")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TieGroups:
    """Distinct scores (descending) with the count of positives and negatives at each (float64 counts)."""

    thresholds: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @property
    def n_pos(self) -> int:
        return int(round(self.pos.sum()))

    @property
    def n_neg(self) -> int:
        return int(round(self.neg.sum()))

    def __len__(self) -> int:
        return len(self.thresholds)

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) at each operating point, starting with (0, 0) at threshold +inf (computed once)."""
        return self._cumulative

    @cached_property
    def _cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        tp = np.concatenate([[0.0], np.cumsum(self.pos)])
        fp = np.concatenate([[0.0], np.cumsum(self.neg)])
        return tp, fp


def check_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (0/1) and scores (finite) of equal length; return (int8 labels, float64 scores)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise DataError(f"labels {y.shape} and scores {s.shape} must be 1-D arrays of the same length")
    bad = ~np.isfinite(s)
    if bad.any():
        raise DataError(f"score at row {int(np.flatnonzero(bad)[0])} is {s[bad][0]} ({int(bad.sum())} non-finite "
                        "score(s) in all); re-score, or drop the rows whose stamps failed to decode")
    if y.dtype.kind not in "biu":
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise DataError(f"label at row {int(np.flatnonzero(np.isnan(y))[0])} is missing; "
                            "drop unlabelled rows before computing metrics")
        y = y.astype(np.int64)
    wrong = (y != 0) & (y != 1)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise DataError(f"label at row {i} is {y[i]}; labels must be 1 (lens/injection) or 0 (control)")
    return y.astype(np.int8, copy=False), s


def tie_groups(labels, scores) -> TieGroups:
    """Sort once (O(N log N)) and count positives/negatives per distinct score, descending."""
    y, s = check_inputs(labels, scores)
    if len(s) == 0:
        return TieGroups(np.empty(0), np.empty(0), np.empty(0))
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    pos = np.add.reduceat(y.astype(np.float64), starts)
    size = np.diff(np.append(starts, len(s))).astype(np.float64)
    return TieGroups(s[starts], pos, size - pos)


def _groups(labels, scores) -> TieGroups:
    return labels if isinstance(labels, TieGroups) and scores is None else tie_groups(labels, scores)


def one_class_reason(n_pos: int, n_neg: int) -> str:
    """Why a ranking metric is undefined for these counts ('' when both classes are present)."""
    if n_pos and n_neg:
        return ""
    if not n_pos and not n_neg:
        return "no labelled rows"
    missing = "lenses/injections (label 1)" if not n_pos else "controls (label 0)"
    return f"only one class: 0 {missing} among {n_pos + n_neg} rows"


def _undefined(g: TieGroups) -> Metric | None:
    reason = one_class_reason(g.n_pos, g.n_neg)
    return Metric(None, reason, g.n_pos, g.n_neg, resolvable=False) if reason else None


@dataclass(frozen=True)
class RocPoints:
    fpr: np.ndarray  # false-positive rate at each operating point, from 0
    tpr: np.ndarray  # true-positive rate (completeness)
    thresholds: np.ndarray  # score threshold (score >= threshold); +inf first
    tp: np.ndarray  # true-positive counts
    fp: np.ndarray  # false-positive counts


def roc_points(labels, scores=None) -> RocPoints:
    """Every ROC operating point (one per distinct score), exact with ties. Accepts TieGroups alone.

    Rates are nan-free only with both classes present; check `auroc(...).defined` first.
    """
    g = _groups(labels, scores)
    tp, fp = g.cumulative()
    with np.errstate(invalid="ignore", divide="ignore"):
        return RocPoints(fp / g.n_neg, tp / g.n_pos, np.concatenate([[np.inf], g.thresholds]), tp, fp)


def auroc(labels, scores=None) -> Metric:
    """Area under the ROC curve (= P(score_lens > score_control) + 0.5 P(tie)), trapezoidal over tie groups."""
    g = _groups(labels, scores)
    if (u := _undefined(g)) is not None:
        return u
    tp, fp = g.cumulative()
    area = float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]))) / 2.0  # exact in float64 below 2**53 pairs
    return Metric(area / (g.n_pos * g.n_neg), "", g.n_pos, g.n_neg)


def average_precision(labels, scores=None) -> Metric:
    """Average precision: sum over operating points of (recall step) x precision (scikit-learn's definition)."""
    g = _groups(labels, scores)
    if (u := _undefined(g)) is not None:
        return u
    tp, fp = g.cumulative()
    precision = tp[1:] / (tp[1:] + fp[1:])
    return Metric(float(np.sum(np.diff(tp) * precision) / g.n_pos), "", g.n_pos, g.n_neg)


def allowed_false_positives(fpr: float, n_neg):
    """The integer number of negatives an operating point at `fpr` may pass: floor(fpr x n_neg), robust to
    float error (0.29 x 100 is 28.999999999999996 in float64, and 29 negatives are allowed). An int for one
    count, a float array of the same shape for an array of counts (the bootstrap's replicates)."""
    allowed = np.floor(fpr * np.asarray(n_neg, dtype=np.float64) * (1 + 1e-12))
    return int(allowed) if allowed.ndim == 0 else allowed


def control_threshold(control_values, fpr: float) -> tuple[float, float]:
    """(threshold, achieved FPR) set on controls alone: a value passes when > threshold, and at most
    `allowed_false_positives(fpr, n)` controls pass (the rule of `tpr_at_fpr`; ties can make it fewer). With
    none allowed the threshold is the highest control (FPR 0)."""
    v = np.sort(np.asarray(control_values, dtype=np.float64))[::-1]
    if not len(v):
        raise DataError("no control scores to set a threshold on")
    thr = float(v[min(allowed_false_positives(fpr, len(v)), len(v) - 1)])
    return thr, float((v > thr).mean())


def tpr_at_fpr(labels, scores=None, fpr: float = 1e-3) -> Metric:
    """Highest TPR among operating points with FPR <= `fpr` (no interpolation between points).

    Not resolvable (value None) when n_neg * fpr < 1: no false positive is allowed at all, so the rate
    cannot be told from FPR 0; the reason then quotes TPR at FPR 0 (TPR0) as a lower bound.
    """
    g = _groups(labels, scores)
    if (u := _undefined(g)) is not None:
        return u
    tp, fp = g.cumulative()
    allowed_fp = allowed_false_positives(fpr, g.n_neg)
    k = int(np.flatnonzero(fp <= allowed_fp)[-1])  # fp is non-decreasing: last admissible point
    thr = float(g.thresholds[k - 1]) if k else float("inf")
    if allowed_fp < 1:
        need = int(np.ceil(1 / fpr))
        return Metric(None, f"not resolvable: {g.n_neg:,} negatives, FPR {fpr:g} needs >= {need:,} "
                      f"(TPR at FPR 0 is {tp[k] / g.n_pos:.4g}, a lower bound)", g.n_pos, g.n_neg,
                      resolvable=False, count=int(tp[k]), threshold=thr)
    note = f"based on {int(allowed_fp)} allowed false positive(s): noisy" if allowed_fp < 10 else ""
    return Metric(float(tp[k] / g.n_pos), note, g.n_pos, g.n_neg, count=int(tp[k]), threshold=thr)


def fpr_at_tpr(labels, scores=None, tpr: float = 0.9) -> Metric:
    """Lowest FPR among operating points with TPR >= `tpr`."""
    g = _groups(labels, scores)
    if (u := _undefined(g)) is not None:
        return u
    tp, fp = g.cumulative()
    need_tp = np.ceil(tpr * g.n_pos * (1 - 1e-12))
    k = int(np.flatnonzero(tp >= need_tp)[0])  # tp is non-decreasing: first admissible point
    thr = float(g.thresholds[k - 1]) if k else float("inf")
    note = "" if fp[k] >= 10 else f"based on {int(fp[k])} false positive(s): noisy"
    return Metric(float(fp[k] / g.n_neg), note, g.n_pos, g.n_neg, count=int(fp[k]), threshold=thr)


def tpr_n(labels, scores=None, n: int = 0) -> Metric:
    """Lens-finding-challenge TPR_n (Metcalf et al. 2019): the highest TPR reached before the n-th false
    positive appears as the threshold is lowered, i.e. with fewer than max(n, 1) false positives.
    TPR0: fraction of lenses scoring strictly above every control; TPR10: with at most 9 false positives.
    """
    g = _groups(labels, scores)
    if (u := _undefined(g)) is not None:
        return u
    tp, fp = g.cumulative()
    allowed_fp = max(n - 1, 0)
    k = int(np.flatnonzero(fp <= allowed_fp)[-1])
    thr = float(g.thresholds[k - 1]) if k else float("inf")
    reason = f"only {g.n_neg} negatives: fewer than {n} false positives are possible" if n > g.n_neg else ""
    return Metric(float(tp[k] / g.n_pos), reason, g.n_pos, g.n_neg, resolvable=not reason,
                  count=int(tp[k]), threshold=thr)


def tpr0(labels, scores=None) -> Metric:
    return tpr_n(labels, scores, 0)


def tpr10(labels, scores=None) -> Metric:
    return tpr_n(labels, scores, 10)


@dataclass(frozen=True)
class Confusion:
    threshold: float  # score >= threshold counts as "lens"
    tp: int
    fp: int
    tn: int
    fn: int

    def rates(self) -> dict[str, float | None]:
        def ratio(a, b):
            return a / b if b else None
        p, r = ratio(self.tp, self.tp + self.fp), ratio(self.tp, self.tp + self.fn)
        f1 = 2 * p * r / (p + r) if p is not None and r is not None and (p + r) > 0 else None
        return {"precision": p, "recall": r, "f1": f1, "fpr": ratio(self.fp, self.fp + self.tn)}


def confusion_at(labels, scores, threshold: float) -> Confusion:
    """Confusion counts of the rule score >= threshold."""
    y, s = check_inputs(labels, scores)
    hit = s >= threshold
    tp = int(np.count_nonzero(hit & (y == 1)))
    fp = int(np.count_nonzero(hit & (y == 0)))
    n_pos = int(np.count_nonzero(y == 1))
    return Confusion(float(threshold), tp, fp, len(y) - n_pos - fp, n_pos - tp)


def threshold_table(g: TieGroups, thresholds) -> list[dict]:
    """Precision, recall, F1 and FPR of score >= t for each t (from tie groups: no re-sort)."""
    tp, fp = g.cumulative()
    rows = []
    for t in thresholds:
        k = int(np.searchsorted(-g.thresholds, -float(t), side="right"))  # groups with score >= t
        c = Confusion(float(t), int(tp[k]), int(fp[k]), g.n_neg - int(fp[k]), g.n_pos - int(tp[k]))
        rows.append({"threshold": float(t), "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn, **c.rates()})
    return rows


def wilson_interval(k, n, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion k/n (vectorised); nan where n == 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def precision_at_prevalence(tpr: float, fpr: float, prevalence: float) -> float | None:
    """Precision of the finder on a population where a fraction `prevalence` are lenses (Bayes)."""
    num = tpr * prevalence
    den = num + fpr * (1 - prevalence)
    return num / den if den > 0 else None


def false_positives_per_million(fpr: float, prevalence: float) -> float:
    """Expected false positives among 1e6 galaxies of which a fraction `prevalence` are lenses."""
    return fpr * (1 - prevalence) * 1e6
