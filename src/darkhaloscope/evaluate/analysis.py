"""Everything `dhs evaluate` computes from a scores file: headline metrics with bootstrap intervals, rates at
fixed FPR/TPR, TPR0/TPR10, threshold table, confusion matrix, calibration, realistic prevalence, selection
function, stratified FPR and the shortcut baselines; figures are written as it goes.

Ranking uses the logit when the file has one (float32 probabilities saturate at 1.0 and would create
ties that the logits do not have); thresholds are reported as probabilities.
Exercise: `dhs evaluate SCORES --out DIR`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.evaluate import calibration, plots, selection
from darkhaloscope.common import ranking as M
from darkhaloscope.evaluate.baselines import run_baselines
from darkhaloscope.evaluate.bootstrap import bootstrap_many
from darkhaloscope.evaluate.committee_report import committee_section
from darkhaloscope.evaluate.config import EvaluateConfig
from darkhaloscope.audit.stats import shortcut_verdict
from darkhaloscope.evaluate.confusers import confuser_section
from darkhaloscope.evaluate.report import Evaluation
from darkhaloscope.common.report import Bullets, fmt_num, fmt_rate
from darkhaloscope.score.scoresfile import Scores


@dataclass
class Ranked:
    """The values metrics are ranked on, with conversions between probabilities and those values."""

    values: np.ndarray
    by_logit: bool
    groups: M.TieGroups = field(repr=False)

    def from_prob(self, p: float) -> float:
        if not self.by_logit:
            return p
        with np.errstate(divide="ignore"):
            return float(np.log(p) - np.log1p(-p))

    def to_prob(self, v: float) -> float:
        return float(sigmoid(v)) if self.by_logit else v


def rank_values(s: Scores) -> Ranked:
    use_logit = s.logits is not None and bool(np.isfinite(s.logits).all())
    v = s.logits if use_logit else s.scores
    return Ranked(v, use_logit, M.tie_groups(s.labels, v))


def _fmt(x, digits: int = 4) -> str:
    return fmt_num(x, digits)


def _tpr_n(name: str, m: M.Metric) -> str:
    if not m.defined:
        return f"{name} undefined ({m.reason})"
    return f"{name} = {fmt_rate(m.value)} ({fmt_num(m.count)} true positive(s))"


def ranking_section(s: Scores, r: Ranked, cfg: EvaluateConfig, fig_dir: Path, ev: Evaluation) -> float:
    """Headline metrics, ROC, PR; returns the operating threshold (in ranked units)."""
    g = r.groups
    auc, ap = M.auroc(g), M.average_precision(g)
    requests = {"auroc": ("auroc", {}), "ap": ("average_precision", {}),
                **{f"tpr@{f:g}": ("tpr_at_fpr", {"fpr": f}) for f in cfg.fpr_targets}}
    cis = bootstrap_many(g, None, requests, n_boot=cfg.n_boot, seed=cfg.seed, max_bins=cfg.bootstrap_bins)
    auc_ci, ap_ci = cis["auroc"], cis["ap"]
    ev.metrics.update(n_rows=len(s), n_pos=g.n_pos, n_neg=g.n_neg, rows=s.split_note, ranked_by="logit" if r.by_logit else "score",
                      auroc={**auc.to_dict(), "ci95": auc_ci.to_dict()},
                      average_precision={**ap.to_dict(), "ci95": ap_ci.to_dict()})
    tpr_rows, marks, tpr_json = [], {}, {}
    for f in cfg.fpr_targets:
        m = M.tpr_at_fpr(g, fpr=f)
        ci = cis[f"tpr@{f:g}"] if m.defined else None
        tpr_json[f"{f:g}"] = {**m.to_dict(), "ci95": ci.to_dict() if ci else None}
        marks[f] = m.value
        value = _fmt(m.value) if m.defined else "not resolvable"
        tpr_rows.append([f"{f:g}", value, str(ci) if ci else "", fmt_num(g.n_neg), fmt_num(m.count, none="-"),
                         m.reason])
        if not m.resolvable and g.n_pos and g.n_neg:
            ev.warnings.append(f"TPR at FPR {f:g} is not resolvable: only {g.n_neg:,} controls (needs >= {int(np.ceil(1 / f)):,})")
    ev.metrics["tpr_at_fpr"] = tpr_json
    fpr_rows, fpr_json = [], {}
    for t in cfg.tpr_targets:
        m = M.fpr_at_tpr(g, tpr=t)
        fpr_json[f"{t:g}"] = m.to_dict()
        fpr_rows.append([f"{t:g}", _fmt(m.value), fmt_num(m.count, none="-"), m.reason])
    ev.metrics["fpr_at_tpr"] = fpr_json
    t0, t10 = M.tpr0(g), M.tpr10(g)
    ev.metrics.update(tpr0=t0.to_dict(), tpr10=t10.to_dict())
    if not auc.defined:
        ev.warnings.insert(0, f"AUROC and TPR are undefined: {auc.reason}")
    if "train" in s.splits:
        ev.warnings.append("these rows include the training split: the numbers are optimistic (use --split=test)")
    if auc.defined:
        ev.headline.append(f"AUROC {auc} 95% CI {auc_ci}; average precision {ap} {ap_ci}; "
                           f"TPR0 {t0}; TPR10 {t10} ({s.split_note})")
    else:
        ev.headline.append(f"AUROC undefined ({auc.reason}): so are average precision, TPR0 and TPR10 "
                           f"({s.split_note})")
    sec = ev.add_section("ranking", "Ranking metrics")
    sec.table(["FPR", "TPR", "95% CI", "negatives", "true positives", "note"], tpr_rows)
    sec.table(["TPR", "FPR", "false positives", "note"], fpr_rows)
    sec.text(f"{_tpr_n('TPR0 (lenses above every control)', t0)}; {_tpr_n('TPR10 (fewer than 10 false positives)', t10)} "
             f"(Metcalf et al. 2019 definitions). Intervals: stratified bootstrap, {cfg.n_boot} replicates on "
             f"<= {cfg.bootstrap_bins:,} score bins.")
    if auc.defined:
        pts = M.roc_points(g)
        sec.figure(plots.roc(pts.fpr, pts.tpr, marks, f"AUROC {auc.value:.4f}", fig_dir / "roc.png"), "ROC")
        prec = pts.tp[1:] / (pts.tp[1:] + pts.fp[1:])
        sec.figure(plots.pr(pts.tpr[1:], prec, g.n_pos / (g.n_pos + g.n_neg), f"AP {ap.value:.4f}", fig_dir / "pr.png"),
                   "Precision-recall")
    return operating_point(g, r, cfg, ev)


def operating_point(g: M.TieGroups, r: Ranked, cfg: EvaluateConfig, ev: Evaluation) -> float:
    """The threshold (ranked units) the report's headline uses: the highest-TPR point with FPR <= threshold_fpr
    on the controls (default 1e-3); where the controls are too few to resolve it, the point above every
    control (FPR 0); p >= `threshold` only when threshold_fpr is null or no control-based point exists."""
    if cfg.threshold_fpr is not None:
        m = M.tpr_at_fpr(g, fpr=cfg.threshold_fpr)
        if m.threshold is not None and np.isfinite(m.threshold):
            rule = f"FPR <= {cfg.threshold_fpr:g} on the {g.n_neg:,} controls"
            if not m.resolvable:  # too few controls: the strictest point they can tell
                rule = (f"the point above every control: FPR {cfg.threshold_fpr:g} is not resolvable with "
                        f"{g.n_neg:,} controls")
            ev.metrics["operating_point"] = {"rule": rule, "threshold_fpr": cfg.threshold_fpr}
            return m.threshold
        ev.warnings.append(f"threshold_fpr {cfg.threshold_fpr:g}: {m.reason or 'no lens scores above every control'}; "
                           f"using score >= {cfg.threshold:g} instead")
    ev.metrics["operating_point"] = {"rule": f"score >= {cfg.threshold:g}", "threshold_fpr": None}
    return r.from_prob(cfg.threshold)


PROB_THRESHOLDS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]  # the fixed-probability table


def threshold_section(s: Scores, r: Ranked, thr: float, cfg: EvaluateConfig, fig_dir: Path, ev: Evaluation) -> None:
    g = r.groups
    table = M.threshold_table(g, [r.from_prob(p) for p in PROB_THRESHOLDS])
    rows = [[f"{p:g}", _fmt(t["precision"]), _fmt(t["recall"]), _fmt(t["f1"]), _fmt(t["fpr"]), fmt_num(t["tp"]),
             fmt_num(t["fp"])] for p, t in zip(PROB_THRESHOLDS, table)]
    op = M.threshold_table(g, [thr])[0]
    thr_p = r.to_prob(thr)
    rule = ev.metrics["operating_point"]["rule"]
    col = s.score_column
    ev.metrics["threshold"] = {"score": thr_p, "score_column": col, **op}
    ev.metrics["operating_point"].update(score=thr_p, score_column=col, **op)
    sec = ev.add_section("threshold", "Operating point, confusion matrix, score distributions")
    sec.text(f"Thresholds are on the {s.score_label}.")
    sec.text(f"Operating point ({rule}): {col} >= {_fmt(thr_p)}: precision {_fmt(op['precision'])}, recall "
             f"{_fmt(op['recall'])}, F1 {_fmt(op['f1'])}, FPR {_fmt(op['fpr'])}.")
    sec.table(["", "scored lens", "scored non-lens"],
              [["lens / injection", fmt_num(op["tp"]), fmt_num(op["fn"])], ["control", fmt_num(op["fp"]), fmt_num(op["tn"])]])
    sec.text("Fixed probability thresholds, for comparison (p >= 0.5 is the network's default decision, not a "
             "survey operating point):")
    sec.table([f"{col} >=", "precision", "recall", "F1", "FPR", "TP", "FP"], rows)
    sec.text("Precision here is at this set's lens fraction; see Calibration for realistic prevalence.")
    sec.figure(plots.score_histograms(s.scores, s.labels, thr_p, fig_dir / "score_histograms.png", s.logits),
               "Scores by class")


def calibration_section(s: Scores, r: Ranked, thr: float, cfg: EvaluateConfig, fig_dir: Path, ev: Evaluation) -> None:
    g = r.groups
    rel = calibration.reliability(s.labels, s.scores, cfg.reliability_bins)
    op = ev.metrics["threshold"]
    rule = ev.metrics["operating_point"]["rule"]
    prev = calibration.prevalence_table(op["recall"], op["fpr"], g.n_neg, cfg.prevalences)
    ev.metrics["calibration"] = {"score_column": s.score_column, "ece": rel.ece, "brier": rel.brier,
                                 "bins": cfg.reliability_bins}
    raw_note = ""
    if s.raw_scores is not None:
        raw = calibration.reliability(s.labels, s.raw_scores, cfg.reliability_bins)
        ev.metrics["calibration"].update(ece_raw=raw.ece, brier_raw=raw.brier,
                                         temperature=(s.info.get("calibration") or {}).get("temperature"))
        raw_note = f" The raw score (sigmoid(logit)) has ECE {raw.ece:.4g}, Brier {raw.brier:.4g}."
    ev.metrics["prevalence"] = [p.to_dict() for p in prev]
    rows = [[f"{p.prevalence:g}", _fmt(p.tpr), _fmt(p.fpr), _fmt(p.precision, 3), fmt_num(p.fp_per_million),
             fmt_num(p.lenses_per_million), p.note] for p in prev]
    sec = ev.add_section("calibration", "Calibration and realistic prevalence")
    sec.text(f"Of the {s.score_label}: ECE {_fmt(rel.ece)} ({cfg.reliability_bins} equal-width bins), Brier score "
             f"{_fmt(rel.brier)}.{raw_note} Probabilities are calibrated (at best) for this set's lens fraction, "
             "not the sky's.")
    sec.text(f"At the operating point ({rule}, {s.score_column} >= {_fmt(op['score'])}), searching a population "
             "where a fraction 'prevalence' are lenses:")
    sec.table(["prevalence", "TPR", "FPR", "precision", "false positives per 1e6 galaxies",
               "lenses found per 1e6 galaxies", "note"], rows)
    pt = next((p for p in prev if p.prevalence == min(cfg.prevalences)), None)
    if pt and pt.precision is not None:
        ev.headline.append(f"At the operating point ({rule}, {s.score_column} >= {_fmt(op['score'], 3)}) and "
                           f"prevalence {pt.prevalence:g}: precision {_fmt(pt.precision, 3)}, "
                           f"{'at most ' if pt.fpr == 0 else ''}{fmt_num(pt.fp_per_million)} false positives "
                           f"per million galaxies{f' ({pt.note})' if pt.fpr == 0 else ''}")
    sec.figure(plots.reliability(rel, fig_dir / "reliability.png"), "Reliability diagram")


def selection_section(s: Scores, r: Ranked, thr: float, cfg: EvaluateConfig, fig_dir: Path, ev: Evaluation) -> None:
    hit = r.values >= thr
    thr_p = r.to_prob(thr)
    rule = ev.metrics["operating_point"]["rule"]
    at = f"{s.score_column} >= {_fmt(thr_p, 3)} ({rule})"
    curves = selection.completeness_curves(s.columns, s.labels, hit, cfg.selection_bins)
    cmap = selection.completeness_map(s.columns, s.labels, hit, cfg.map_bins)
    ev.metrics["selection_function"] = {c.variable: c.rows() for c in curves}
    sec = ev.add_section("selection", "Selection function")
    pos = s.labels == 1
    found = int(hit[pos].sum())
    sec.text(f"Detected means {at}, the report's operating point: {found:,} of {int(pos.sum()):,} injections "
             f"(completeness {_fmt(found / max(int(pos.sum()), 1), 3)}). Recall at looser thresholds is in the "
             "ranking and threshold tables above.")
    if curves:
        sec.figure(plots.binned_rates(curves, thr_p, "completeness", "Selection function", fig_dir / "selection.png"),
                   f"Completeness versus injection and observing properties, detected: {at}")
        for c in curves:
            sec.table(["bin", "injections", "detected", "completeness", "95% CI"],
                      [[x["bin"], fmt_num(x["n"]), fmt_num(x["k"]), _fmt(x["rate"], 3), f"[{x['lo']:.3f}, {x['hi']:.3f}]"]
                       for x in c.rows()], caption=c.label)
    else:
        sec.text("No injection metadata columns (theta_e_arcsec, arc_snr, ...) in the scores file: "
                 "selection function not computed.")
    if cmap is not None:
        sec.figure(plots.completeness_map(
            cmap, (selection.SELECTION_VARIABLES[cmap.x], selection.SELECTION_VARIABLES[cmap.y]), thr_p,
            fig_dir / "completeness_map.png"), "Completeness map")
    stratified_fpr_section(s, r, thr, cfg, fig_dir, ev, sec)


def stratified_fpr_section(s: Scores, r: Ranked, thr: float, cfg: EvaluateConfig, fig_dir: Path, ev: Evaluation,
                           sec) -> None:
    """FPR of controls per host / observing bin, at the operating point when controls pass it, else at the
    loosest FPR target (a point with no false positive has an FPR of 0 in every bin: nothing to show)."""
    neg = s.labels == 0
    where = f"the operating point ({ev.metrics['operating_point']['rule']})"
    if neg.any() and not (r.values[neg] >= thr).any():
        loose = M.tpr_at_fpr(r.groups, fpr=max(cfg.fpr_targets)) if cfg.fpr_targets else None
        if loose is None or loose.threshold is None or not np.isfinite(loose.threshold) or not loose.resolvable:
            sec.text(f"Stratified FPR: no control scores at or above {where}, so its false-positive rate is 0 in "
                     f"every host / observing bin; too few controls ({int(neg.sum()):,}) for a looser point.")
            ev.metrics["stratified_fpr"] = {}
            return
        thr, where = loose.threshold, f"the threshold passing {max(cfg.fpr_targets):g} of the controls"
        sec.text(f"Stratified FPR: no control scores at or above the operating point, so it is shown at {where} "
                 f"({s.score_column} >= {_fmt(r.to_prob(thr), 3)}).")
    strat = selection.stratified_fpr(s.columns, list(s.allowed_metadata()), s.labels, r.values >= thr)
    flat = [c for c in strat if not np.nansum(c.k)]
    strat = [c for c in strat if np.nansum(c.k)]
    ev.metrics["stratified_fpr"] = {c.variable: c.rows() for c in strat}
    ev.metrics["stratified_fpr_at"] = {"where": where, "score": r.to_prob(thr)}
    if strat:
        sec.figure(plots.binned_rates(strat, r.to_prob(thr), "false-positive rate", "Stratified FPR",
                                      fig_dir / "stratified_fpr.png"),
                   f"False-positive rate of controls versus host / observing properties, at {where}")
        worst = max(strat, key=lambda c: np.nanmax(c.rate) - np.nanmin(c.rate))
        lo, hi = float(np.nanmin(worst.rate)), float(np.nanmax(worst.rate))
        if hi > lo:
            sec.text(f"Stratified FPR: largest spread versus {worst.label}: from {_fmt(lo, 3)} to {_fmt(hi, 3)} "
                     "across bins.")
    if flat:
        sec.text(f"No false positive in any bin of {', '.join(c.label for c in flat)}.")


def baseline_section(s: Scores, cfg: EvaluateConfig, ev: Evaluation) -> None:
    if not cfg.baselines:
        return
    results, skipped = run_baselines(s) if len(s) else ([], ["no rows"])
    ev.metrics["baselines"] = [b.to_dict() for b in results]
    rows = [[b.name, str(b.auroc), str(b.cnn_auroc), fmt_num(b.n_rows), "YES" if b.close_to_cnn else "no",
             ", ".join(b.features)] for b in results]
    sec = ev.add_section("baselines", "Shortcut baselines")
    notes = []
    for b in results:
        if b.name.startswith("image"):
            verdict, why = shortcut_verdict(b.auroc.value, cnn_auroc=b.cnn_auroc.value, cnn_close=b.close_to_cnn)
            ev.metrics.setdefault("shortcut", {"verdict": verdict, "reason": why})
            if verdict == "shortcut":
                ev.warnings.insert(0, f"SHORTCUT: {why}")
            else:
                notes.append(f"Shortcut verdict: {verdict}: {why}")
        elif b.close_to_cnn:
            ev.warnings.insert(0, f"LEAK? a logistic regression on {b.name} reaches AUROC {b.auroc.value:.4f} vs the "
                                  f"CNN's {b.cnn_auroc.value:.4f}: the CNN adds little beyond these metadata: they, "
                                  "not the pixels, may carry the label")
    sec.text("Cross-validated (5-fold) logistic regression; 'close' means it recovers >= 90% of the CNN's "
             "AUROC gain over 0.5.")
    sec.table(["baseline", "AUROC", "CNN AUROC (same rows)", "rows", "close?", "features"], rows)
    for n in notes:
        sec.text(n)
    _control_brightness(s, ev, sec)
    if skipped:
        sec.blocks.append(Bullets([f"skipped: {x}" for x in skipped]))


BRIGHT_CENTRE_RHO = 0.3  # Spearman of the controls' scores vs their central r flux from which the report warns


def _control_brightness(s: Scores, ev: Evaluation, sec) -> None:
    """How the controls' scores follow their central brightness (the users' central-brightness shortcut): a
    model whose false positives favour bright centres makes real lenses on bright hosts look better than they
    are (measured on the PS1 lenses: docs/real-lenses.md, "Hosts the controls do not cover")."""
    from darkhaloscope.evaluate.hostrange import HOST_STAT, spearman

    if HOST_STAT not in s.columns:
        return
    ctrl = s.labels == 0
    rho = spearman(s.scores[ctrl], s.columns[HOST_STAT][ctrl])
    if rho is None:
        return
    ev.metrics["control_score_vs_central_flux"] = {"spearman": rho, "statistic": HOST_STAT, "n": int(ctrl.sum())}
    sec.text(f"On the {int(ctrl.sum()):,} controls, the score against their central r flux ({HOST_STAT}, r < 4 px): "
             f"Spearman {rho:+.2f} (warned from +{BRIGHT_CENTRE_RHO}).")
    if rho >= BRIGHT_CENTRE_RHO:
        ev.warnings.append(f"BRIGHT CENTRES: on the controls the score rises with the central r flux (Spearman "
                           f"{rho:+.2f}): false positives favour bright hosts, and real lenses on bright hosts look "
                           "better than they are; compare them with controls of their hosts' brightness (the "
                           "real-lens section's host rows) and check the tier with `dhs audit` (host probe)")


SECTIONS = (threshold_section, calibration_section, selection_section, confuser_section, committee_section)


def analyse(s: Scores, cfg: EvaluateConfig, fig_dir: Path, log=None) -> tuple[Evaluation, Ranked, float]:
    """Run every score-file analysis; returns the evaluation, the ranking and the threshold (ranked units).
    `log(message)` is called after each stage with its duration (progress for 10M-row files)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    ev = Evaluation(metrics={"scores_file": s.path, "source": s.info})
    clock = [time.perf_counter()]

    def done(stage: str) -> None:
        if log is not None:
            now = time.perf_counter()
            log(f"{stage}: {now - clock[0]:.1f} s")
            clock[0] = now
    r = rank_values(s)
    thr = ranking_section(s, r, cfg, fig_dir, ev)
    done(f"ranking metrics + {cfg.n_boot} bootstrap replicates on {len(s):,} scores")
    for section in SECTIONS:
        section(s, r, thr, cfg, fig_dir, ev)
        done(section.__name__.replace("_section", ""))
    baseline_section(s, cfg, ev)
    done("baselines")
    return ev, r, thr
