"""Out-of-fold scores of a standardised logistic regression: the one probe behind the shortcut checks of
`dhs audit` (image statistics, host probe) and the baselines of `dhs evaluate`. Plain scikit-learn.

The fits are small (a few to ~20 features); the BLAS / OpenMP pools are held to one thread while fitting:
on the 2-core dev box two threads spun 3-10x the CPU (and as much wall time) for identical numbers
(a 400-row probe 0.41 s -> 0.04 s, 100,000 rows 1.7 s -> 1.0 s, 2026-12-01, load ~3.5).
"""

from __future__ import annotations

import numpy as np


def cv_decision_function(x: np.ndarray, y: np.ndarray, *, folds: int, seed: int, max_iter: int,
                         impute: bool = False) -> np.ndarray:
    """Decision function of each row from the model fitted on the other folds (stratified, shuffled with
    `seed`): scaler (after median imputation of NaN when `impute`) + logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    steps = ([SimpleImputer(strategy="median")] if impute else []) + [StandardScaler(),
                                                                      LogisticRegression(max_iter=max_iter)]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        return cross_val_predict(make_pipeline(*steps), x, y, cv=cv, method="decision_function")
