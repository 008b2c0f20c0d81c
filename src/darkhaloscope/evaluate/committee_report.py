"""The "Committee against its members" section of `dhs evaluate`, for scores files written by a committee
(`dhs score --checkpoint A --checkpoint B ...`: columns logit_m0, logit_m1, ...).

    dhs evaluate committee_scores.parquet --out REPORT      # section + metrics.json "committee"

For each member and the committee: AUROC, average precision, TPR at FPR 1e-2. Then the question a
committee has to answer: at the recall the best member (highest AUROC) reaches at its own operating point
(its probability >= `threshold`, calibrated with its own temperature when the report thresholds
calibrated scores), is the committee's false-positive rate lower? Both FPRs, and their difference, get
95% intervals from a paired bootstrap (rows resampled within each class, the same rows for both; the
recall is held fixed). Above 100,000 rows the bootstrap uses at most 100 replicates (each re-sorts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.common import ranking as M
from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.evaluate.report import Evaluation
from darkhaloscope.score.scoresfile import CALIBRATED_COLUMN, Scores

BIG_ROWS = 100_000  # above this, at most BIG_BOOT bootstrap replicates
BIG_BOOT = 100


def _fpr_at(labels: np.ndarray, values: np.ndarray, recall: float) -> float | None:
    return M.fpr_at_tpr(labels, values, tpr=recall).value


def paired_bootstrap(labels: np.ndarray, a: np.ndarray, b: np.ndarray, recall: float, n_boot: int,
                     seed: int) -> dict[str, tuple[float, float]]:
    """95% intervals of FPR(a), FPR(b) and FPR(a) - FPR(b) at a fixed recall, resampling rows within each
    class (the same rows for a and b)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    fa, fb = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        fa[i] = _fpr_at(labels[idx], a[idx], recall)
        fb[i] = _fpr_at(labels[idx], b[idx], recall)
    q = lambda v: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))  # noqa: E731
    return {"a": q(fa), "b": q(fb), "diff": q(fa - fb)}


def _temperatures(s: Scores) -> list[float | None]:
    members = ((s.info.get("committee") or {}).get("members")) or []
    temps = [m.get("temperature") for m in members]
    return temps if len(temps) == len(s.members) else [None] * len(s.members)


def _names(s: Scores) -> list[str]:
    members = ((s.info.get("committee") or {}).get("members")) or []
    if len(members) != len(s.members):
        return list(s.members)
    return [f"{col} (seed {m.get('seed')}, {Path(str(m.get('checkpoint'))).parent.name}/"
            f"{Path(str(m.get('checkpoint'))).name})" for col, m in zip(s.members, members)]


def committee_section(s: Scores, r, thr: float, cfg, fig_dir: Path, ev: Evaluation) -> None:
    """Adds the section and metrics["committee"] when the scores file holds member logits; else nothing."""
    if len(s.members) < 2 or s.labels.min() == s.labels.max():
        return
    y = s.labels
    cols = list(s.members)
    temps = _temperatures(s)
    calibrated = s.score_column == CALIBRATED_COLUMN and all(t is not None for t in temps)
    stats = {}
    for col, values in [*s.members.items(), ("committee", r.values)]:
        stats[col] = {"auroc": M.auroc(y, values).value, "ap": M.average_precision(y, values).value,
                      "tpr_at_fpr_1e-2": M.tpr_at_fpr(y, values, fpr=1e-2).value}
    best = max(cols, key=lambda c: stats[c]["auroc"] or -1)
    t_best = temps[cols.index(best)] if calibrated else 1.0
    prob = sigmoid(s.members[best] / t_best)
    recall = float(np.mean(prob[y == 1] >= cfg.threshold))
    n_boot = cfg.n_boot if len(y) <= BIG_ROWS else min(cfg.n_boot, BIG_BOOT)
    out = {"members": cols, "best_member": best, "recall": recall, "threshold": cfg.threshold,
           "threshold_on": "calibrated" if calibrated else "raw", "n_boot": n_boot, "stats": stats}
    sec = ev.add_section("committee", "Committee against its members")
    sec.table(["", "AUROC", "average precision", "TPR at FPR 1e-2"],
              [[name, _f(stats[c]["auroc"]), _f(stats[c]["ap"]), _f(stats[c]["tpr_at_fpr_1e-2"])]
               for name, c in zip([*_names(s), "committee"], [*cols, "committee"])])
    if recall == 0:
        sec.text(f"The best member ({best}) finds no lens at probability >= {cfg.threshold:g}: no recall to "
                 "compare the committee at.")
    else:
        f_c, f_b = _fpr_at(y, r.values, recall), _fpr_at(y, s.members[best], recall)
        ci = paired_bootstrap(y, r.values, s.members[best], recall, n_boot, cfg.seed)
        out.update(fpr_committee=f_c, fpr_best_member=f_b, fpr_difference=f_c - f_b, ci95_committee=ci["a"],
                   ci95_best_member=ci["b"], ci95_difference=ci["diff"], lower=f_c < f_b)
        verdict = "lower" if f_c < f_b else ("equal" if f_c == f_b else "higher")
        sec.text(f"At the recall of the best member ({best}: {recall:.4g} at its {out['threshold_on']} probability "
                 f">= {cfg.threshold:g}), the committee's FPR is {f_c:.4g} [{ci['a'][0]:.4g}, {ci['a'][1]:.4g}] "
                 f"against {f_b:.4g} [{ci['b'][0]:.4g}, {ci['b'][1]:.4g}]: {verdict}; difference {f_c - f_b:+.4g}, "
                 f"95% CI [{ci['diff'][0]:+.4g}, {ci['diff'][1]:+.4g}] (paired stratified bootstrap, {n_boot} "
                 "replicates, recall held fixed).")
        ev.headline.append(f"Committee of {len(cols)}: FPR {f_c:.3g} vs best member {f_b:.3g} at recall "
                           f"{recall:.3g} ({verdict}; difference 95% CI [{ci['diff'][0]:+.3g}, {ci['diff'][1]:+.3g}])")
    combine = (s.info.get("committee") or {}).get("combine", "logit")
    sec.text(f"Committee = mean member {combine}{' (each divided by its temperature)' if calibrated else ''}; "
             "logit_spread in the scores file is the members' disagreement per stamp.")
    ev.metrics["committee"] = out


def _f(v) -> str:
    return "undefined" if v is None else f"{v:.4g}"
