"""The report section of `dhs evaluate --before-mining SCORES`: FPR of the held-out negatives of the model
hard-negative mining started from, and of the one trained with the mined negatives (`dhs mine`, `dhs train --mined`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.common import ranking as M
from darkhaloscope.common.report import Code


def before_after_section(before_path: str, scores, cfg, ev) -> None:
    """FPR of the held-out negatives of SCORES (after) and BEFORE (the model mining started from), same split."""
    from darkhaloscope.score.scoresfile import read_scores

    before = read_scores(before_path, cfg.split, cfg.score)
    rows, metrics = [], {}
    for name, s in (("before", before), ("after", scores)):
        r = {"negatives": int((s.labels == 0).sum()),
             f"fpr_at_score_{cfg.threshold:g}": float(((s.scores >= cfg.threshold) & (s.labels == 0)).sum()
                                                      / max(1, (s.labels == 0).sum()))}
        for tpr in cfg.tpr_targets:
            r[f"fpr_at_tpr_{tpr:g}"] = M.fpr_at_tpr(s.labels, s.scores, tpr).value
        metrics[name] = r
        rows.append([name, r["negatives"]] + [_pct(v) for k, v in r.items() if k != "negatives"])
    header = ["model", "held-out negatives", f"FPR at score >= {cfg.threshold:g}"] + \
        [f"FPR at TPR {t:g}" for t in cfg.tpr_targets]
    sec = ev.add_section("mining", "Hard-negative mining: before and after")
    sec.text(f"False-positive rate on the held-out negatives ({scores.split_note}) of the model that mining started "
             "from (", Code(Path(before_path).name), ") and of this one, trained with the mined negatives.")
    sec.table(header, rows)
    ev.metrics["mining"] = metrics | {"before_scores": str(before_path)}
    b, a = metrics["before"][f"fpr_at_score_{cfg.threshold:g}"], metrics["after"][f"fpr_at_score_{cfg.threshold:g}"]
    ev.headline.append(f"Hard-negative mining: FPR at score >= {cfg.threshold:g} {_pct(b)} before, {_pct(a)} after")


def _pct(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3g}"
