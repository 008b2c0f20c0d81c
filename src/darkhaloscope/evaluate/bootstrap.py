"""Bootstrap confidence intervals of ranking metrics, fast enough for 10 million scores on 2 cores.

Method (stratified bootstrap on tie groups): the sorted scores are grouped by distinct value
(`metrics.tie_groups`); when there are more than `max_bins` groups, neighbouring groups are merged into
`max_bins` bins of equal row count. Each replicate redraws the per-bin counts of each class from a
multinomial (n_pos and n_neg fixed) and recomputes the metric vectorised over replicates, so a replicate
costs O(max_bins), not O(N).

Precision: with <= max_bins distinct scores the bootstrap is exact. Otherwise pairs inside one bin count
as ties, which moves AUROC by at most sum_b p_b q_b / 2 (p_b, q_b: class fractions in bin b; about
0.5/max_bins for well-mixed bins) and TPR at FPR by at most one bin; the replicates are shifted by
(exact metric - binned metric) so the interval is centred on the exact value. Coverage is checked by
simulation in tests/evaluate/test_eval_bootstrap.py. Exercise: `dhs evaluate SCORES --out DIR`.

`paired_recall_difference`: recall of two models on the same real lenses at noise-matched thresholds, the
difference with a paired bootstrap over lenses and control stamps (benchmarks/bench_confusers.py, issue #24).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from darkhaloscope.common import ranking as M
from darkhaloscope.common.ranking import TieGroups


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    level: float  # e.g. 0.95
    n_boot: int  # replicates drawn
    n_bins: int  # bins the replicates were drawn on (== distinct scores when exact)
    reason: str = ""  # why undefined

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.low is None:
            return f"undefined ({self.reason})"
        return f"[{self.low:.4g}, {self.high:.4g}]"


def merge_bins(g: TieGroups, max_bins: int = 10_000) -> TieGroups:
    """Merge neighbouring tie groups into at most `max_bins` bins of about equal row count.

    A bin's threshold is its lowest score, so "score >= threshold" keeps whole bins.
    """
    if len(g) <= max_bins:
        return g
    size = g.pos + g.neg
    before = np.concatenate([[0.0], np.cumsum(size)[:-1]])
    bin_id = np.floor(before * max_bins / size.sum()).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], bin_id[1:] != bin_id[:-1]]))
    ends = np.append(starts[1:], len(g)) - 1
    return TieGroups(g.thresholds[ends], np.add.reduceat(g.pos, starts), np.add.reduceat(g.neg, starts))


# ---- metrics vectorised over replicates: pos, neg are (R, B) count matrices ------------------------------
def _cum(pos: np.ndarray, neg: np.ndarray):
    z = np.zeros((pos.shape[0], 1))
    return np.concatenate([z, np.cumsum(pos, 1)], 1), np.concatenate([z, np.cumsum(neg, 1)], 1)


def _auroc_mat(pos, neg, **_):
    tp, fp = _cum(pos, neg)
    area = np.sum(np.diff(fp, axis=1) * (tp[:, 1:] + tp[:, :-1]), axis=1) / 2
    return area / (tp[:, -1] * fp[:, -1])


def _ap_mat(pos, neg, **_):
    tp, fp = _cum(pos, neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp[:, 1:] + fp[:, 1:] > 0, tp[:, 1:] / (tp[:, 1:] + fp[:, 1:]), 0.0)
    return np.sum(np.diff(tp, axis=1) * prec, axis=1) / tp[:, -1]


def _tpr_at_fpr_mat(pos, neg, fpr=1e-3, **_):
    tp, fp = _cum(pos, neg)
    allowed = M.allowed_false_positives(fpr, fp[:, -1:])
    ok = fp <= allowed  # prefix of True per row (fp non-decreasing)
    k = ok.sum(axis=1) - 1
    return tp[np.arange(len(tp)), k] / tp[:, -1]


# name -> (vectorised replicate function, exact point function)
BOOTSTRAP_METRICS: dict[str, tuple[Callable, Callable]] = {
    "auroc": (_auroc_mat, lambda g, **kw: M.auroc(g)),
    "average_precision": (_ap_mat, lambda g, **kw: M.average_precision(g)),
    "tpr_at_fpr": (_tpr_at_fpr_mat, lambda g, fpr=1e-3, **kw: M.tpr_at_fpr(g, None, fpr)),
}


def bootstrap_many(labels, scores=None, requests: dict[str, tuple[str, dict]] | None = None, *, n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0, max_bins: int = 10_000, chunk: int = 100) -> dict[str, Interval]:
    """Intervals of several metrics from the SAME replicates (one set of multinomial draws for all):
    `requests` = {key: (metric name, kwargs)}, e.g. {"auroc": ("auroc", {}), "tpr@1e-3": ("tpr_at_fpr", {"fpr": 1e-3})}.
    Accepts (labels, scores) or TieGroups."""
    requests = requests or {"auroc": ("auroc", {})}
    for metric, _ in requests.values():
        if metric not in BOOTSTRAP_METRICS:
            raise ValueError(f"unknown bootstrap metric {metric!r}; choose from {', '.join(BOOTSTRAP_METRICS)}")
    g = labels if isinstance(labels, TieGroups) and scores is None else M.tie_groups(labels, scores)
    out: dict[str, Interval] = {}
    live: dict[str, tuple] = {}
    b = merge_bins(g, max_bins)
    for key, (metric, kw) in requests.items():
        mat_fn, point_fn = BOOTSTRAP_METRICS[metric]
        exact = point_fn(g, **kw)
        if not exact.defined:
            out[key] = Interval(None, None, level, 0, 0, exact.reason)
        else:  # shift: binned metric -> exact metric (see the module docstring)
            live[key] = (mat_fn, kw, exact.value - float(mat_fn(b.pos[None], b.neg[None], **kw)[0]), [])
    if live:
        rng = np.random.default_rng(seed)
        p_pos, p_neg = b.pos / b.pos.sum(), b.neg / b.neg.sum()
        for start in range(0, n_boot, chunk):
            r = min(chunk, n_boot - start)
            pos = rng.multinomial(g.n_pos, p_pos, size=r).astype(np.float64)
            neg = rng.multinomial(g.n_neg, p_neg, size=r).astype(np.float64)
            for mat_fn, kw, _, reps in live.values():
                reps.append(mat_fn(pos, neg, **kw))
        alpha = (1 - level) / 2
        for key, (_, _, shift, reps) in live.items():
            lo, hi = np.quantile(np.concatenate(reps) + shift, [alpha, 1 - alpha])
            out[key] = Interval(float(np.clip(lo, 0, 1)), float(np.clip(hi, 0, 1)), level, n_boot, len(b))
    return {k: out[k] for k in requests}


def bootstrap_ci(labels, scores=None, metric: str = "auroc", *, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, max_bins: int = 10_000, chunk: int = 100, **kwargs) -> Interval:
    """Percentile interval of one `metric` ('auroc', 'average_precision', 'tpr_at_fpr' with fpr=) by the
    stratified bootstrap described in the module docstring. Accepts (labels, scores) or TieGroups."""
    return bootstrap_many(labels, scores, {metric: (metric, kwargs)}, n_boot=n_boot, level=level, seed=seed,
                          max_bins=max_bins, chunk=chunk)[metric]


def _thresholds(controls: np.ndarray, draws: np.ndarray, fpr: float) -> np.ndarray:
    """(R, K) threshold of each replicate and bin: controls (K, n) values, draws (R, n) resampled control
    indices; the rule of `ranking.control_threshold` (the (j+1)-th highest, j = the false positives allowed)."""
    n = controls.shape[1]
    j = min(M.allowed_false_positives(fpr, n), n - 1)
    out = np.empty((len(draws), len(controls)))
    for k, values in enumerate(controls):
        out[:, k] = -np.partition(-values[draws], j, axis=1)[:, j]
    return out


def paired_recall_difference(lens_a, lens_b, bins, controls_a, controls_b, fpr: float, *, n_boot: int = 2000,
                             level: float = 0.95, seed: int = 0, chunk: int = 200) -> dict:
    """Recall of model B minus model A on the same lenses, each lens found when its value is above the
    threshold at `fpr` set on the controls of its bin (noise-matched operating points, `noisematch`), with a
    paired percentile bootstrap: each replicate redraws the lenses and the control stamps with replacement, ONE
    draw shared by both models (and by every bin: the bins hold the same control stamps re-noised), and
    recomputes both models' thresholds and recalls. What the two models share cancels, so the interval is
    that of the difference, not of two recalls apart.

    lens_a, lens_b: (N,) values; bins: (N,) bin of each lens (-1: noise not measured, never found, still
    counted in N as in the report's recall); controls_a, controls_b: (K, n) values of the same n control
    stamps per bin. Returns difference (point, on the sample), ci95 (low, high at `level`), found_a, found_b,
    n, n_boot, seed."""
    la, lb = np.asarray(lens_a, np.float64), np.asarray(lens_b, np.float64)
    bins = np.asarray(bins, np.int64)
    ca, cb = np.atleast_2d(np.asarray(controls_a, np.float64)), np.atleast_2d(np.asarray(controls_b, np.float64))
    if not (la.shape == lb.shape == bins.shape) or ca.shape != cb.shape or bins.max(initial=-1) >= len(ca):
        raise ValueError(f"paired_recall_difference: lenses {la.shape}/{lb.shape}, bins {bins.shape} (max "
                         f"{bins.max(initial=-1)}), controls {ca.shape}/{cb.shape} do not pair up")
    n, n_ctrl = len(la), ca.shape[1]
    measured = bins >= 0
    safe_bin = np.where(measured, bins, 0)

    def recalls(lens_idx: np.ndarray, ctrl_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(lens_idx))[:, None]
        out = []
        for values, controls in ((la, ca), (lb, cb)):
            thr = _thresholds(controls, ctrl_idx, fpr)[rows, safe_bin[lens_idx]]
            out.append(((values[lens_idx] > thr) & measured[lens_idx]).mean(axis=1))
        return out[0], out[1]

    point_a, point_b = recalls(np.arange(n)[None], np.arange(n_ctrl)[None])
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, chunk):
        r = min(chunk, n_boot - start)
        a, b = recalls(rng.integers(0, n, (r, n)), rng.integers(0, n_ctrl, (r, n_ctrl)))
        diffs.append(b - a)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.concatenate(diffs), [alpha, 1 - alpha])
    return {"difference": float(point_b[0] - point_a[0]), "ci95": (float(lo), float(hi)), "level": level,
            "found_a": int(round(point_a[0] * n)), "found_b": int(round(point_b[0] * n)), "n": n,
            "n_boot": n_boot, "seed": seed}
