"""The trained run (section 6 of `dhs review --run RUN`): learning curves, train/val gap, best val AUROC,
TPR at FPR 1e-3, and two shortcut probes of RUN/best.pt on val stamps of DATA.

Reads what `dhs train` wrote (metrics.jsonl, run.json, best.pt). A run whose every validation has an
undefined AUROC (a one-class val split: the users' smoke test, "AUROC nan") is blocking: its best
checkpoint was chosen on nothing. Probes: the AUROC with the central 4 px replaced by sky noise (a big
drop: the score leans on the lens core, not the arcs) and a cross-validated logistic regression on image
statistics (flux and colour in apertures) next to the CNN on the same stamps (close: a shortcut).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from darkhaloscope.errors import UsageError
from darkhaloscope.common.ranking import auroc
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.common.jsonio import read_jsonl
from darkhaloscope.common.report import Section, fmt_rate

CORE_RADIUS_PIX = 4.0  # masked core radius (1.05"), as in `dhs evaluate`'s core-masked probe
MAX_CORE_DROP = 0.1  # AUROC drop above this when the core is masked -> warning


def read_run(run: Path) -> tuple[list[dict], dict]:
    """(metrics rows, run.json) of a `dhs train` run folder; UsageError when it is not one."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"--run {run}: no metrics.jsonl; give the folder `dhs train --out RUN` wrote")
    rows = read_jsonl(path)  # a line cut by a kill: the rows before it stand
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    return rows, info


def curves_figure(rows: list[dict], path: Path) -> Path:
    """Train/val loss and val AUROC per validation (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(step, [r.get("train_loss") for r in rows], "o-", label="train loss")
    a.plot(step, [np.nan if r.get("val_loss") is None else r["val_loss"] for r in rows], "s-", label="val loss")
    a.axhline(np.log(2), color="grey", lw=0.8, ls=":", label="ln 2")
    a.set_xlabel("optimizer step")
    a.set_ylabel("BCE (nats)")
    a.legend()
    b.plot(step, [np.nan if r.get("val_auroc") is None else r["val_auroc"] for r in rows], "o-", color="C2")
    b.set_xlabel("optimizer step")
    b.set_ylabel("val AUROC")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def shortcut_probes(best: Path, data: str, split: str, rows: int, device, s3=None, seed: int = 0) -> dict:
    """Core-masked AUROC and the image-statistics baseline of the best checkpoint on `rows` stamps of `split`."""
    import torch

    from darkhaloscope.evaluate.baselines import logistic_baseline
    from darkhaloscope.score.imagestats import image_statistics
    from darkhaloscope.evaluate.probes import mask_core
    from darkhaloscope.score.infer import infer
    from darkhaloscope.train.data import iter_batches as batches
    from darkhaloscope.runtime.loading import load_for_inference

    model, pre, _ = load_for_inference(best, device, s3)
    parts = list(batches(data, split, 256, s3=s3, shuffle=False, max_rows=rows))
    images = torch.cat([b["image"] for b in parts]).float().numpy()
    labels = torch.cat([b["label"] for b in parts]).numpy().astype(np.int8)
    logits = infer(model, pre, images, device)
    masked = infer(model, pre, mask_core(images, CORE_RADIUS_PIX, np.random.default_rng(seed)), device)
    stats = image_statistics(images)
    base = logistic_baseline("image statistics", np.stack(list(stats.values()), 1), labels, logits, list(stats),
                             seed=seed)
    return {"n": len(labels), "auroc": auroc(labels, logits), "auroc_core_masked": auroc(labels, masked),
            "baseline": base}


def _controls(counts: dict | None) -> int | None:
    return None if not counts else int(counts.get("0", 0))


def run_title(run: str | Path) -> str:
    """The run section's title: the folder named as a folder (a run folder called `run` read "Trained run run")."""
    return f"The trained run in folder {run}"


def run_section(run: Path, data: str, val_split: str, rcfg: ReviewConfig, device, out_dir: Path, s3=None) -> Section:
    sec = Section("run", run_title(run))
    t0 = time.perf_counter()
    rows, info = read_run(run)
    counts = info.get("class_counts", {}).get(val_split)
    aurocs = [r.get("val_auroc") for r in rows]
    if not rows or all(a is None for a in aurocs):
        sec.add("val AUROC defined", "error", f"none of the {len(rows)} validation(s) has a defined val AUROC"
                + (f" (val split: {counts.get('1', 0)} injections, {counts.get('0', 0)} controls)" if counts else "")
                + ": the best checkpoint was chosen on nothing and its falling loss means nothing; retrain on a tier "
                "with both classes in val", f"dhs audit {data} --markdown audit.md")
        _curve_table(sec, rows, _controls(counts))
        sec.seconds = time.perf_counter() - t0
        return sec
    best = max((r for r in rows if r.get("val_auroc") is not None), key=lambda r: r["val_auroc"])
    sec.data.update(best=best, validations=len(rows))
    ok = best["val_auroc"] >= rcfg.target_auroc
    sec.add("best val AUROC", "pass" if ok else "warning", f"{best['val_auroc']:.4f} at epoch {best['epoch']} (step "
            f"{best['step']}, {best.get('val_n')} val stamps; target >= {rcfg.target_auroc})",
            None if ok else f"dhs evaluate SCORES --out report --checkpoint {run}/best.pt")
    tpr = best.get("val_tpr_at_fpr_1e-3")
    sec.add("TPR at FPR 1e-3", "info", f"{tpr:.4f} on val" if tpr is not None else "undefined on val: fewer than "
            "1,000 controls cannot resolve FPR 1e-3 (score a larger test split with dhs score, then dhs evaluate)")
    gap = (best.get("val_loss") or 0.0) - (best.get("train_loss") or 0.0)
    sec.add("train/val gap", "pass" if gap <= rcfg.max_train_val_gap else "warning",
            f"val loss - train loss = {gap:+.4f} nats at the best epoch (bound {rcfg.max_train_val_gap}); "
            f"first/last train loss {rows[0]['train_loss']:.4f} / {rows[-1]['train_loss']:.4f}",
            None if gap <= rcfg.max_train_val_gap else f"dhs train --data {data} --out RUN2 --weight_decay=0.05")
    best_pt = run / "best.pt"
    if best_pt.is_file():
        p = shortcut_probes(best_pt, data, val_split, rcfg.probe_rows, device, s3)
        sec.data["probes"] = {"n": p["n"], "auroc": p["auroc"].value, "auroc_core_masked": p["auroc_core_masked"].value,
                                 "baseline": p["baseline"] if isinstance(p["baseline"], str) else p["baseline"].to_dict()}
        full, masked = p["auroc"], p["auroc_core_masked"]
        if full.defined and masked.defined:
            drop = full.value - masked.value
            sec.add("core-masked probe", "pass" if drop <= MAX_CORE_DROP else "warning",
                    f"AUROC {full.value:.4f} -> {masked.value:.4f} with r < {CORE_RADIUS_PIX:g} px replaced by sky noise "
                    f"({p['n']} val stamps; drop bound {MAX_CORE_DROP})", None if drop <= MAX_CORE_DROP else
                    f"dhs evaluate SCORES --out report --checkpoint {best_pt}")
        b = p["baseline"]
        if isinstance(b, str):
            sec.add("image-statistics baseline", "info", f"not fitted: {b}")
        else:
            sec.add("image-statistics baseline", "warning" if b.close_to_cnn else "pass",
                    f"logistic regression on {len(b.features)} image statistics: AUROC {b.auroc.value:.4f} vs the CNN's "
                    f"{b.cnn_auroc.value:.4f} on the same {b.n_rows} stamps" + (
                        ": the CNN may not need the arcs (shortcut?)" if b.close_to_cnn else ""),
                    f"dhs audit {data} --full --markdown audit.md" if b.close_to_cnn else None)
    else:
        sec.add("shortcut probes", "info", f"not run: {best_pt} does not exist")
    fig = curves_figure(rows, out_dir / "review_figures" / "learning_curves.png")
    _curve_table(sec, rows, _controls(counts))
    sec.figure(fig, "Learning curves")
    sec.seconds = time.perf_counter() - t0
    return sec


def _curve_table(sec: Section, rows: list[dict], n_controls: int | None) -> None:
    """Per-validation figures; epochs count from 0, as in metrics.csv and the training log."""
    def f(v, why="undefined"):
        return why if v is None else fmt_rate(v)

    def loss(v):  # nats, 4 decimals
        return "undefined" if v is None else f"{v:.4f}"
    nr = "not resolvable"
    sec.table(["epoch", "step", "train loss", "val loss", "val AUROC", "val TPR@FPR1e-2", "val TPR@FPR1e-3"],
              [[r.get("epoch"), r.get("step"), loss(r.get("train_loss")), loss(r.get("val_loss")), f(r.get("val_auroc")),
                f(r.get("val_tpr_at_fpr_1e-2"), nr), f(r.get("val_tpr_at_fpr_1e-3"), nr)] for r in rows])
    missing = [k for k in ("1e-2", "1e-3") if any(r.get(f"val_tpr_at_fpr_{k}") is None for r in rows)
               and any(r.get("val_auroc") is not None for r in rows)]
    if missing:
        have = f"this val split has {n_controls:,}" if n_controls is not None else "see the run's class counts"
        sec.text("Epochs count from 0, as in metrics.csv and the training log. " + "; ".join(
            f"TPR at FPR {k} needs at least {round(1 / float(k)):,} val controls to allow one false positive"
            for k in missing) + f" ({have}): shown as not resolvable, not zero. Score a larger split with "
            "dhs score and read TPR at FPR 1e-3 from dhs evaluate.")
    else:
        sec.text("Epochs count from 0, as in metrics.csv and the training log.")
