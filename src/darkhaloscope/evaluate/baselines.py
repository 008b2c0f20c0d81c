"""Shortcut baselines: if a logistic regression on simple image statistics (central/total flux, colours)
or on the allowed metadata (observing conditions) ranks nearly as well as the CNN, the CNN may not be
looking at arcs. `score.imagestats.image_statistics` is computed by `dhs score` for every stamp (the `img_*` columns), so
the baselines run from the scores file alone, with cross-validated predictions (no train/test leak).

Exercise: `dhs evaluate SCORES --out DIR` (the report's first lines say when a baseline is close).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkhaloscope.common.ranking import Metric, auroc

CLOSE_AUROC_FRACTION = 0.9  # warn when (baseline AUROC - 0.5) >= this x (CNN AUROC - 0.5)


@dataclass(frozen=True)
class BaselineResult:
    name: str  # "image statistics" / "allowed metadata"
    features: list[str]
    auroc: Metric  # cross-validated AUROC of the logistic regression
    cnn_auroc: Metric  # the CNN's AUROC on the same rows
    n_rows: int

    @property
    def close_to_cnn(self) -> bool:
        if not (self.auroc.defined and self.cnn_auroc.defined):
            return False
        gain = self.cnn_auroc.value - 0.5
        return gain <= 0 or (self.auroc.value - 0.5) >= CLOSE_AUROC_FRACTION * gain

    def to_dict(self) -> dict:
        return {"name": self.name, "features": self.features, "auroc": self.auroc.to_dict(),
                "cnn_auroc": self.cnn_auroc.to_dict(), "n_rows": self.n_rows, "close_to_cnn": self.close_to_cnn}


def logistic_baseline(name: str, X: np.ndarray, labels: np.ndarray, cnn_scores: np.ndarray, features: list[str],
                      *, max_rows: int = 100_000, folds: int = 5, seed: int = 0) -> BaselineResult | str:
    """Cross-validated logistic regression (median-imputed, standardised) on a random subsample of at most
    `max_rows` rows. Returns a one-line reason instead when it cannot be fitted."""
    from darkhaloscope.common.logistic import cv_decision_function

    if not features:
        return f"{name}: no usable columns"
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))[:max_rows] if len(labels) > max_rows else np.arange(len(labels))
    X, y, s = X[idx], labels[idx], cnn_scores[idx]
    usable = np.isfinite(X).any(axis=0) & (np.nanstd(np.where(np.isfinite(X), X, np.nan), axis=0) > 0)
    if not usable.any():
        return f"{name}: every column is constant or empty"
    X = np.where(np.isfinite(X), X, np.nan)[:, usable]
    features = [f for f, u in zip(features, usable) if u]
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    if n_min < 2:
        return f"{name}: needs both classes (have {int((y == 1).sum())} lenses, {int((y == 0).sum())} controls)"
    pred = cv_decision_function(X, y, folds=min(folds, n_min), seed=seed, max_iter=500, impute=True)
    return BaselineResult(name, features, auroc(y, pred), auroc(y, s), len(y))


def run_baselines(scores) -> tuple[list[BaselineResult], list[str]]:
    """Both baselines from a `scoresfile.Scores`; returns (results, reasons a baseline was skipped)."""
    results, skipped = [], []
    for name, cols in (("image statistics", scores.image_stats()), ("allowed metadata", scores.allowed_metadata())):
        if not cols:
            skipped.append(f"{name}: no {'img_* columns (re-score with `dhs score`)' if name[0] == 'i' else 'allowed metadata columns'} in the scores file")
            continue
        X = np.stack([scores.columns[c] for c in cols], axis=1)
        r = logistic_baseline(name, X, scores.labels, scores.scores, cols)
        (skipped if isinstance(r, str) else results).append(r)
    return results, skipped
