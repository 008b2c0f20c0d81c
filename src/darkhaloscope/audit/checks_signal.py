"""Audit checks 5-7: label leakage in metadata, the pixel shortcut probe, paired controls.
Exercised by `dhs audit DATA`.

- leakage: each metadata column alone against the label (AUROC on its non-null rows, shown as
  max(AUROC, 1-AUROC)) and its null fraction per class, on the cheap pass's metadata sample. Declared
  injection metadata that separate the classes are expected (info, never a model input); any other
  column that does is a warning, observing conditions included (controls and injections observed
  differently); columns filled for one class only (a real tier's Tractor columns, which its lenses lack)
  are one warning together.
- shortcut: AUROC of crude image statistics alone, and of a cross-validated logistic regression on all of
  them, on the decoded sample. High values: a network can separate the classes without seeing arcs.
- paired: with `ctrl_stamp_npz`, injection - control must vanish far from the arc and carry positive flux.
- paired_hosts: with `ctrl_stamp_npz`, the same image statistics, g band included, of the plain controls
  against the injections' own hosts (their controls): both should be one host population (AUROC ~0.5).
  Controls drawn from other hosts (e.g. redder in g-r) are a shortcut the pixel probe cannot see, since it
  leaves g out to avoid measuring the arc; here there is no arc, so g is fair.
"""

from __future__ import annotations

import numpy as np

from darkhaloscope.audit.registry import AuditContext, first_examples, register_check
from darkhaloscope.common.report import Finding
from darkhaloscope.audit.stats import auroc, column_leakage, feature_names, probe_auroc, separation, shortcut_verdict
from darkhaloscope.audit.pixels import HOST_PROBE_BANDS
from darkhaloscope.stamps.schema import CTRL_STAMP_COLUMN, OBSERVING_COLUMNS, is_forbidden_input

OBSERVING_PREFIXES: tuple[str, ...] = ("psf", "depth", "galdepth", "nobs", "ebv", "seeing", "sky")


def _describe(col: str, r: dict) -> str:
    auc = "n/a" if not np.isfinite(r["separation"]) else f"{r['separation']:.2f}"
    return f"{col} (AUROC {auc}, null {r['null_frac_injections']:.0%} inj / {r['null_frac_controls']:.0%} ctrl)"


def _one_class_only(r: dict) -> bool:
    """Null in every row of one class and filled in some rows of the other."""
    a, b = r["null_frac_injections"], r["null_frac_controls"]
    return bool(np.isfinite(a) and np.isfinite(b) and max(a, b) >= 1.0 and min(a, b) < 1.0)


@register_check("leakage", pixels=False)
def check_leakage(ctx: AuditContext) -> list[Finding]:
    cfg = ctx.config
    sample = ctx.scan.leak_sample()
    if not sample:
        return [Finding("leakage", "info", "no metadata columns to check", {})]
    y = sample.pop("__label__")
    if min((y == 0).sum(), (y == 1).sum()) == 0:
        return [Finding("leakage", "info", "leakage not measurable: the metadata sample holds one class", {})]
    results = {c: column_leakage(v, y) for c, v in sample.items()}
    leaking = {c: r for c, r in results.items()
               if r["separation"] >= cfg.leak_auroc or r["null_frac_diff"] >= cfg.leak_null_frac_diff}
    expected = [c for c in leaking if is_forbidden_input(c)]
    one_class = [c for c in leaking if c not in expected and _one_class_only(leaking[c])]
    out = []
    if expected:
        out.append(Finding("leakage", "info", f"{len(expected)} declared injection metadata column(s) separate the "
                           f"classes, as expected; never model inputs: {first_examples(expected, 8)}",
                           {"columns": {c: leaking[c] for c in expected}}))
    if one_class:  # one finding, not one per column: e.g. a real tier's Tractor columns, which its lenses lack
        has = {c: "controls" if leaking[c]["null_frac_injections"] >= 1.0 else "injections (lenses)" for c in one_class}
        kinds = sorted(set(has.values()))
        out.append(Finding("leakage", "warning", f"{len(one_class)} column(s) are filled for one class only ("
                           + "; ".join(f"only {k}: {first_examples([c for c in one_class if has[c] == k], 8)}"
                                       for k in kinds)
                           + "): their presence alone gives the label, so they must never be model inputs "
                           "(meta_columns); in a `dhs cutouts` tier this is by construction (negatives carry their "
                           "Tractor row, lenses their catalog's grade), elsewhere check how the tier was made",
                           {"columns": {c: {**leaking[c], "filled_for": has[c]} for c in one_class}}))
    for c, r in leaking.items():
        if c in expected or c in one_class:
            continue
        observing = c in OBSERVING_COLUMNS or c.lower().startswith(OBSERVING_PREFIXES)
        why = ("controls and injections were observed differently; a network can learn the difference: draw "
               "both from the same hosts / observing conditions" if observing else
               "an undeclared column separates the classes: it must never be a model input (meta_columns); "
               "check how it was made (a column that describes the injection belongs in "
               "schema.INJECTION_METADATA_COLUMNS)")
        out.append(Finding("leakage", "warning", f"{_describe(c, r)} separates the classes; {why}",
                           {"column": c, **r, "observing": observing}))
    out.append(Finding("leakage", "info", f"{len(results)} metadata column(s) checked on {len(y)} row(s); "
                       f"{len(leaking)} separate the classes (AUROC >= {cfg.leak_auroc:g} or null fraction differs "
                       f"by >= {cfg.leak_null_frac_diff:g})", {"columns": results, "rows": int(len(y))}))
    return out


@register_check("shortcut")
def check_shortcut(ctx: AuditContext) -> list[Finding]:
    cfg, px = ctx.config, ctx.pixels
    if px is None or not px.features:
        return []
    x, y = np.concatenate(px.features), np.concatenate(px.labels)
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    if min(n0, n1) < cfg.probe_min_per_class:
        return [Finding("shortcut", "info", f"shortcut probe skipped: {n1} injection(s) and {n0} control(s) decoded "
                        f"(< {cfg.probe_min_per_class} of a class)", {"controls": n0, "injections": n1})]
    names = feature_names(cfg.probe_bands)
    single = {n: separation(auroc(y, x[:, i])) for i, n in enumerate(names)}
    combo = probe_auroc(x, y, seed=cfg.seed)
    ranked = sorted(single.items(), key=lambda kv: -kv[1])
    details = {"feature_auroc": single, "probe_auroc": combo, "rows": int(len(y))}
    text = ", ".join(f"{n} {a:.2f}" for n, a in ranked[:4])
    fired = [(n, a) for n, a in ranked if a >= cfg.shortcut_auroc_warn]
    out = []
    if fired:
        out.append(Finding("shortcut", "warning", f"shortcut: image statistics alone separate the classes: "
                           f"{', '.join(f'{n} AUROC {a:.2f}' for n, a in fired[:4])} (>= {cfg.shortcut_auroc_warn:g}, "
                           f"{len(y)} stamps); a network can learn this instead of arcs: match host brightness and "
                           "background of controls and injections", details))
    verdict, why = shortcut_verdict(combo, cfg.shortcut_combo_auroc_warn)
    details["verdict"] = "shortcut" if out or verdict == "shortcut" else verdict
    if verdict == "shortcut":
        out.append(Finding("shortcut", "warning", f"shortcut: a 5-fold logistic regression on {len(names)} image "
                           f"statistics: {why}", details))
    if not out:
        out.append(Finding("shortcut", "info", f"no shortcut: a 5-fold logistic regression on {len(names)} image "
                           f"statistics: {why}; strongest single statistics {text} ({len(y)} stamps)", details))
    return out


@register_check("paired")
def check_paired(ctx: AuditContext) -> list[Finding]:
    px, cfg = ctx.pixels, ctx.config
    if px is None or CTRL_STAMP_COLUMN not in ctx.tier.columns:
        return []
    p = px.paired
    out = []
    problems = {k: n for k, n in px.problems.items() if k.startswith("ctrl_")}
    for k, n in problems.items():
        out.append(Finding("paired", "error", f"{n} {CTRL_STAMP_COLUMN} stamp(s) fail: {px.examples[k][0]}; "
                           "re-write the paired controls", {"kind": k, "rows": n}))
    if p["violations"]:
        parts = {"far_nonzero": f"differ far from the arc (r >= {cfg.paired_far_radius_pix:g} px, median > "
                                f"{cfg.paired_far_tol_sigma:g} sigma)",
                 "negative": f"go below -{cfg.paired_neg_tol_sigma:g} sigma", "flux_not_positive": "add no flux",
                 "flux_mismatch": f"disagree with arc_flux_r_nmgy by more than {cfg.paired_flux_ratio_tol:g}x"}
        what = ", ".join(f"{int(p[k])} {v}" for k, v in parts.items() if p[k])
        out.append(Finding("paired", "error", f"{int(p['violations'])} of {int(p['checked'])} injection(s) disagree "
                           f"with their control: {what}; first: {px.paired_examples[0]}; the control must be the "
                           "same host cutout without the arc (check the injection step, its units and its seed)",
                           {**p, "examples": px.paired_examples}))
    elif p["checked"]:
        out.append(Finding("paired", "info", f"{int(p['checked'])} injection/control pair(s) agree: injection - control"
                           f" vanishes far from the arc (worst median {p['max_far_median_sigma']:.2g} sigma at r >= "
                           f"{cfg.paired_far_radius_pix:g} px), is never negative, and carries the arc's flux", dict(p)))
    return out


@register_check("paired_hosts")
def check_paired_hosts(ctx: AuditContext) -> list[Finding]:
    px, cfg = ctx.pixels, ctx.config
    if px is None or CTRL_STAMP_COLUMN not in ctx.tier.columns or not px.host_features:
        return []
    x, y = np.concatenate(px.host_features), np.concatenate(px.host_labels)
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    if min(n0, n1) < cfg.probe_min_per_class:
        return [Finding("paired_hosts", "info", f"paired-host probe skipped: {n1} injection host(s) and {n0} plain "
                        f"control(s) decoded (< {cfg.probe_min_per_class} of a class)", {"controls": n0, "hosts": n1})]
    names = feature_names(HOST_PROBE_BANDS)
    single = {n: separation(auroc(y, x[:, i])) for i, n in enumerate(names)}
    combo = probe_auroc(x, y, seed=cfg.seed)
    ranked = sorted(single.items(), key=lambda kv: -kv[1])
    details = {"feature_auroc": single, "probe_auroc": combo, "controls": n0, "hosts": n1}
    text = ", ".join(f"{n} {a:.2f}" for n, a in ranked[:3])
    if max(combo, ranked[0][1]) >= cfg.host_probe_auroc:
        return [Finding("paired_hosts", "error", f"the controls' hosts differ from the injections' own hosts: image "
                        f"statistics with g separate them at AUROC {combo:.2f} (5-fold logistic; strongest {text}; "
                        f"{n0} plain controls vs {n1} paired hosts, >= {cfg.host_probe_auroc:g}); a network can "
                        "tell the classes apart by the host alone: draw controls and injections from the same "
                        "host population (same colour and magnitude cuts)", details)]
    return [Finding("paired_hosts", "info", f"controls and the injections' own hosts are one population: probe "
                    f"AUROC {combo:.2f} with g (strongest {text}; {n0} plain controls vs {n1} paired hosts)", details)]
