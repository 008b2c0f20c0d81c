"""Validation metrics of the training loop: loss, AUROC, AP, TPR at FPR 1e-2 and 1e-3.

The ranking metrics come from `darkhaloscope.common.ranking` (exact with tied scores); this module only
adds the BCE loss, the temperature fitted on the validation logits with the ECE before / after it
(`common.calibration`), and flattens the results into one row of metrics.csv. A metric that is undefined
(one class, or too few controls to resolve FPR 1e-3) is None here and an empty cell in the CSV.
Exercised by `dhs train` (one row per validation).
"""

from __future__ import annotations

import numpy as np

from darkhaloscope.common.calibration import bce_with_logits, calibration_summary
from darkhaloscope.common.ranking import auroc, average_precision, tie_groups, tpr_at_fpr

FPR_TARGETS = {"val_tpr_at_fpr_1e-2": 1e-2, "val_tpr_at_fpr_1e-3": 1e-3}  # column -> false-positive rate


def val_metrics(labels: np.ndarray, logits: np.ndarray, weights: np.ndarray | None = None
                ) -> dict[str, float | int | None]:
    """{'val_loss', 'val_auroc', 'val_ap', 'val_tpr_at_fpr_1e-2', 'val_tpr_at_fpr_1e-3', 'val_n', 'temperature',
    'val_ece', 'val_ece_calibrated'}: the temperature is fitted on these logits (common.calibration).
    `weights` (per row, e.g. `confuser_weight` for look-alike negatives): val_loss is the weighted mean
    sum(w l) / sum(w), as the training loss, so the two compare like with like; the other metrics ignore them."""
    labels = np.asarray(labels).astype(np.int8)
    logits = np.asarray(logits, dtype=np.float64)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    g = tie_groups(labels, logits)
    out: dict[str, float | int | None] = {
        "val_loss": float(np.sum(w * bce_with_logits(labels, logits)) / np.sum(w)) if len(labels) else None,
        "val_auroc": auroc(g).value,
        "val_ap": average_precision(g).value,
    }
    for col, rate in FPR_TARGETS.items():
        out[col] = tpr_at_fpr(g, fpr=rate).value
    out["val_n"] = int(len(labels))
    c = calibration_summary(logits, labels) if len(labels) else {}
    out.update(temperature=c.get("temperature"), val_ece=c.get("ece_raw"), val_ece_calibrated=c.get("ece_calibrated"))
    return out
