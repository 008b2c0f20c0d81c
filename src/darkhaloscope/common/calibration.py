"""Temperature scaling (Guo et al. 2017) and the expected calibration error, shared by train and evaluate.

    t = fit_temperature(val_logits, val_labels)         # one scalar T > 0
    p = calibrated_probability(logits, t)               # sigmoid(logit / T): same ranking, honest probabilities
    ece(labels, probs, n_bins=15)

`dhs train` fits T on the validation split at every validation and stores it in the checkpoint
(`calibration`); `dhs score` writes `score_calibrated = sigmoid(logit / T)` beside the raw `score`;
`dhs evaluate` reports the ECE of both. Dividing the logits by one positive number keeps every ranking
metric (AUROC, TPR at FPR) unchanged; only what a probability means changes.
T is the minimiser of the mean binary cross-entropy of logit / T on the validation split, searched on
log T in [log 0.02, log 50] (scipy's bounded Brent method: deterministic, no learning rate).
"""

from __future__ import annotations

import numpy as np

T_BOUNDS = (0.02, 50.0)  # search range of the temperature


def bce_with_logits(labels, logits) -> np.ndarray:
    """Per-stamp binary cross-entropy (nats), numerically stable: max(z,0) - z y + log(1 + exp(-|z|))."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def sigmoid(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def calibrated_probability(logits, temperature: float) -> np.ndarray:
    return sigmoid(np.asarray(logits, dtype=np.float64) / float(temperature))


def fit_temperature(logits, labels) -> float:
    """T > 0 minimising the mean BCE of logits / T. Needs both classes (else 1.0: nothing to fit)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(z)
    z, y = z[keep], y[keep]
    if len(z) == 0 or y.min() == y.max():
        return 1.0
    res = minimize_scalar(lambda lt: float(bce_with_logits(y, z * np.exp(-lt)).mean()),
                          bounds=(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def reliability_bins(labels, probs, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width probability bins: (edges (B+1,), rows per bin, sum of probabilities, sum of labels)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    return edges, count, np.bincount(idx, weights=p, minlength=n_bins), np.bincount(idx, weights=y, minlength=n_bins)


def ece(labels, probs, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of n_b / N |fraction of lenses - mean probability|."""
    _, count, sum_p, sum_y = reliability_bins(labels, probs, n_bins)
    return ece_of_bins(count, sum_p, sum_y)


def ece_of_bins(count: np.ndarray, sum_p: np.ndarray, sum_y: np.ndarray) -> float:
    """The ECE from `reliability_bins`' sums: sum over bins of |sum of labels - sum of probabilities| / N."""
    n = max(int(count.sum()), 1)
    nz = count > 0
    return float(np.sum(np.abs(sum_y[nz] - sum_p[nz])) / n)


def calibration_summary(logits, labels, n_bins: int = 15) -> dict:
    """{'temperature', 'ece_raw', 'ece_calibrated', 'nll_raw', 'nll_calibrated', 'n'} of one labelled set."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    t = fit_temperature(z, y)
    return {"temperature": t, "ece_raw": ece(y, sigmoid(z), n_bins), "ece_calibrated": ece(y, sigmoid(z / t), n_bins),
            "nll_raw": float(bce_with_logits(y, z).mean()) if len(z) else None,
            "nll_calibrated": float(bce_with_logits(y, z / t).mean()) if len(z) else None, "n": int(len(z))}
