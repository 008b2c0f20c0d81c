"""Confusers and recall by source: how often each kind of unlensed look-alike (`confuser_kind`, written by
`dhs simulate --confusers`) passes the operating points that plain controls set, and how recall of the
injections depends on source magnitude and Einstein radius at those points.

- Operating points: for each FPR target (`fpr_targets`), the threshold that passes that fraction of the
  PLAIN controls (controls without a confuser; all controls when the file has no `confuser_kind`), as a
  survey sets its threshold on ordinary galaxies.
- Per kind: its false-positive rate at each point (Wilson 95% interval) and AUROC of lenses vs that kind.
- Recall at each point in fixed bins of `src_mag_r` and `theta_e_arcsec`.
- Gallery (when the stamps are reachable): the highest-scoring confusers.

`confuser_metrics` is a plain function of arrays, shared by the report section and
benchmarks/bench_confusers.py. Exercise: `dhs evaluate SCORES --out DIR` on a tier simulated with confusers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.common import ranking as M
from darkhaloscope.common.report import Bold, Bullets, Code

MAG_EDGES = (20.0, 22.0, 23.0, 24.0, 25.5)  # source r magnitude bins (AB) of the recall table
THETA_E_EDGES = (0.0, 1.0, 1.5, 2.0, 2.5, 6.0)  # Einstein radius bins (arcsec) of the recall table


def operating_points(labels: np.ndarray, values: np.ndarray, plain: np.ndarray, fprs) -> dict[float, dict]:
    """{fpr: {threshold (ranked units, hit = value >= it), n_plain, note}} set on injections + plain controls."""
    keep = (labels == 1) | plain
    out = {}
    for f in fprs:
        m = M.tpr_at_fpr(labels[keep], values[keep], fpr=f)
        out[float(f)] = {"threshold": m.threshold if m.value is not None else None,
                         "resolvable": bool(m.resolvable), "n_plain": int(plain.sum()), "note": m.reason}
    return out


def _rate(hit: np.ndarray) -> dict:
    k, n = int(hit.sum()), int(hit.size)
    lo, hi = M.wilson_interval(np.array([k]), np.array([n]))
    return {"k": k, "n": n, "rate": k / n if n else None, "lo": float(lo[0]), "hi": float(hi[0])}


def _binned_recall(v: np.ndarray, hit: np.ndarray, edges) -> list[dict]:
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = np.isfinite(v) & (v >= a) & (v < b)
        if sel.any():
            rows.append({"bin": f"{a:g}-{b:g}", **_rate(hit[sel])})
    return rows


def plain_controls(labels: np.ndarray, kinds: np.ndarray | None) -> np.ndarray:
    """(N,) bool: controls that carry no look-alike (all controls when there is no confuser_kind column)."""
    has = np.array([k is not None for k in kinds], bool) if kinds is not None else np.zeros(len(labels), bool)
    return (labels == 0) & ~has


def confuser_metrics(labels: np.ndarray, values: np.ndarray, kinds: np.ndarray | None,
                     columns: dict[str, np.ndarray], fprs, variants: np.ndarray | None = None) -> dict:
    """Operating points on plain controls; per-kind (and, given `variants`, per 'kind: variant') FPR and AUROC
    vs lenses; recall by source mag and theta_E."""
    plain = plain_controls(labels, kinds)
    has = (labels == 0) & ~plain
    ops = operating_points(labels, values, plain, fprs)
    lens = labels == 1
    groups = {"plain controls": plain, "all confusers": has}
    for k in sorted({k for k in kinds if k is not None} if kinds is not None else ()):
        groups[str(k)] = (labels == 0) & (kinds == k)
        for v in sorted({v for v in variants[groups[str(k)]] if v is not None} if variants is not None else ()):
            groups[f"{k}: {v}"] = groups[str(k)] & (variants == v)
    out = {"operating_points": {f"{f:g}": op for f, op in ops.items()}, "kinds": {}, "recall": {}}
    for name, sel in groups.items():
        if not sel.any():
            continue
        both = lens | sel
        auc = M.auroc(labels[both], values[both])
        out["kinds"][name] = {"n": int(sel.sum()), "auroc_vs_lenses": auc.value,
                              "fpr": {f"{f:g}": (_rate(values[sel] >= op["threshold"]) if op["threshold"] is not None
                                                 else None) for f, op in ops.items()}}
    for f, op in ops.items():
        if op["threshold"] is None or not lens.any():
            continue
        hit = values[lens] >= op["threshold"]
        out["recall"][f"{f:g}"] = {
            "all": _rate(hit),
            **{col: _binned_recall(columns[col][lens], hit, edges)
               for col, edges in (("src_mag_r", MAG_EDGES), ("theta_e_arcsec", THETA_E_EDGES)) if col in columns}}
    return out


def _fmt_rate(r: dict | None) -> str:
    if r is None:
        return "n/a"
    return f"{r['rate']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] ({r['k']}/{r['n']})"


def _weights_note(info: dict) -> str:
    """'trained with confuser_weight W' ('members trained with ... W1, W2' for a committee), '' when unweighted:
    from the scores file's provenance (`dhs score` records each checkpoint's confuser_weight)."""
    try:
        weights = [float(w) for w in info.get("confuser_weights") or [1.0]]
    except (TypeError, ValueError):
        return ""
    if weights == [1.0]:
        return ""
    who = "members trained" if len(weights) > 1 else "trained"
    return f"{who} with confuser_weight " + ", ".join(f"{w:g}" for w in weights)


def confuser_section(s, r, thr: float, cfg, fig_dir: Path, ev) -> None:
    """Report section (and metrics['confusers']); the headline gains the confuser FPR at the first point."""
    if s.confuser_kind is None and "src_mag_r" not in s.columns and "theta_e_arcsec" not in s.columns:
        return
    m = confuser_metrics(s.labels, r.values, s.confuser_kind, s.columns, cfg.fpr_targets, s.confuser_variant)
    ev.metrics["confusers"] = m
    fkeys = [k for k, op in m["operating_points"].items() if op["threshold"] is not None]
    sec = ev.add_section("confusers", "Confusers and recall by source")
    sec.text("Operating points set on the plain controls (without a confuser) of these rows: "
             + ", ".join(f"FPR {k} -> {s.score_column} >= {r.to_prob(m['operating_points'][k]['threshold']):.4g}"
                         for k in fkeys) + "." if fkeys else "No operating point is resolvable on the plain controls.")
    weighted = _weights_note(s.info)
    if weighted:
        sec.text(Bold(weighted[0].upper() + weighted[1:]), ": look-alike negatives weighed that many times in the "
                 "loss, which lowers the shares below at a cost in recall, of real lenses most (manual: docs/models.md, "
                 "'Look-alikes weigh more').")
    notes = [f"FPR {k}: {op['note']}" for k, op in m["operating_points"].items() if op["note"]]
    if notes:
        sec.blocks.append(Bullets(notes))
    if m["kinds"]:
        rows = [[name if name in ("plain controls", "all confusers") else Code(name), d["n"],
                 "n/a" if d["auroc_vs_lenses"] is None else f"{d['auroc_vs_lenses']:.4f}"]
                + [_fmt_rate(d["fpr"][k]) for k in fkeys] for name, d in m["kinds"].items()]
        sec.text("False-positive rate per ", Code("confuser_kind"), " (and per ", Code("kind: confuser_variant"),
                 " where the rows record one; share above the threshold, Wilson 95% interval) and AUROC of the "
                 "lenses against those controls alone:")
        sec.table(["controls", "rows", "AUROC lenses vs these"] + [f"FPR at plain {k}" for k in fkeys], rows)
        conf = m["kinds"].get("all confusers")
        if conf and fkeys and conf["fpr"][fkeys[0]] is not None:
            ev.headline.append(f"Confusers: {conf['fpr'][fkeys[0]]['rate']:.3g} of {conf['n']} pass the threshold that "
                               f"passes {fkeys[0]} of plain controls; AUROC lenses vs confusers "
                               f"{conf['auroc_vs_lenses']:.4f}"
                               + (f" ({weighted})" if weighted else ""))
    for k in fkeys:
        rec = m["recall"].get(k)
        if not rec:
            continue
        sec.text(Bold(f"Recall at plain-control FPR {k}"), f": {_fmt_rate(rec['all'])}")
        for col, label in (("src_mag_r", "source r mag"), ("theta_e_arcsec", "theta_E [arcsec]")):
            if rec.get(col):
                sec.table([label, "injections", "recall [95% CI]"], [[b["bin"], b["n"], _fmt_rate(b)] for b in rec[col]])


def confuser_gallery(s, values: np.ndarray, n: int, source, fig_dir: Path):
    """(caption, PNG) of the n highest-scoring confuser controls, or None without confusers."""
    from darkhaloscope.evaluate import plots

    if s.confuser_kind is None:
        return None
    idx = np.flatnonzero((s.labels == 0) & np.array([k is not None for k in s.confuser_kind]))
    if not len(idx):
        return None
    idx = idx[np.argsort(-values[idx], kind="stable")[:n]]
    stamps = source.fetch(*s.locate(idx))
    variant = s.confuser_variant if s.confuser_variant is not None else [None] * len(s)
    captions = [f"p={s.scores[i]:.3g} {s.confuser_kind[i]}{f': {variant[i]}' if variant[i] else ''}\n{s.row_id(i)[-28:]}"
                for i in idx]
    name = "highest-scoring confusers"
    return name, plots.gallery(stamps, captions, name.capitalize(), fig_dir / "gallery_confusers.png")
