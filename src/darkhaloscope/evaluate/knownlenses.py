"""Real-lens recall in the evaluation report: `dhs evaluate SCORES --known-lenses KNOWN`.

KNOWN is a scores file of real lenses (from `dhs score`), or data to score with `--checkpoint` (a tier from
`dhs cutouts`, a folder of npz/FITS cutouts such as ../shared/data/dr10_cutouts). Its rows with label 1, or
with no label, are real lenses: never controls. For each FPR of `known_lens_fprs` (1e-2, 1e-3), the threshold
is set on the controls of SCORES (the evaluated split, normally test: the first control score the threshold
passes is the k-th highest, k = floor(FPR x controls), the rule of every operating point); the section gives the recall of the real lenses there
(all and per grade: the `grade` column, which a scored cutout folder takes from each npz's `meta_tier`;
with Wilson 95% intervals), a headline line, and a gallery of the real lenses sorted by
score. When the evaluated controls include look-alikes (`confuser_kind`), the recall is also given at the
thresholds set on the PLAIN controls alone (the rule of the confuser section, so both sections of the
report speak of one threshold): metrics key `recall_vs_plain`, and each lens's `fpr_to_find_plain`.
Metrics land in metrics.json under `known_lenses`. KNOWN may also be a `dhs grade export` table: its
candidates graded A or B are the real lenses (per grade: the consensus letter), with the scores recorded when
they were scored for grading; to score them with another model, export them with `--lenses-folder DIR` and
pass that folder with `--checkpoint`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from darkhaloscope.common import ranking as M
from darkhaloscope.errors import MissingInputError, UsageError
from darkhaloscope.evaluate import plots
from darkhaloscope.evaluate.confusers import plain_controls
from darkhaloscope.score.scoresfile import read_provenance
from darkhaloscope.score.sources import GRADE_COLUMN, merged_duplicates
from darkhaloscope.stamps.schema import GRADED_GRADE_COLUMN, GRADED_LENS_GRADES, GRADED_METADATA_KEY
from darkhaloscope.common.report import Code


def is_scores_file(path: str) -> bool:
    p = Path(path)
    if not (p.is_file() and p.suffix == ".parquet"):
        return False
    try:
        return "score" in pq.read_schema(p).names
    except OSError:
        return False


def thresholds_on_controls(control_values: np.ndarray, fprs) -> dict[float, tuple[float, float]]:
    """{fpr: (threshold, achieved fpr)}: a value counts as 'lens' when > threshold; achieved FPR <= fpr
    (`common.ranking.control_threshold`, the allowed-false-positive rule of every operating point)."""
    return {f: M.control_threshold(control_values, f) for f in fprs}


def check_known_lenses(known: str, checkpoint: str | None) -> bool:
    """Refuse a KNOWN that cannot be used, before any work: missing, or data without --checkpoint to
    score it. True when KNOWN is already a scores file."""
    if is_scores_file(known):
        return True
    if not Path(known).exists() and "://" not in known:
        raise MissingInputError(f"--known-lenses {known}: no such file or folder")
    if not checkpoint:
        raise UsageError(f"--known-lenses {known} is data, not a scores file: pass --checkpoint to score it, or "
                         "score it first with `dhs score`")
    return False


MAX_LISTED = 10  # real lenses whose FPR-to-find the headline lists one by one


def fpr_to_find(lens_values: np.ndarray, control_values: np.ndarray) -> np.ndarray:
    """Per lens, the FPR of the threshold that just finds it: the share of controls scoring >= its value."""
    c = np.sort(np.asarray(control_values, dtype=np.float64))
    above = len(c) - np.searchsorted(c, np.asarray(lens_values, dtype=np.float64), side="left")
    return above / max(len(c), 1)


def _plain_and_look_alikes(scores, values: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(values of the controls without a look-alike, values of those with one) when the controls hold both;
    (None, None) otherwise (no confuser_kind, none set, or every control carries one)."""
    if scores.confuser_kind is None:
        return None, None
    plain = plain_controls(scores.labels, scores.confuser_kind)
    look = (scores.labels == 0) & ~plain
    return (values[plain], values[look]) if plain.any() and look.any() else (None, None)


def _lens_ids(t) -> list[str]:
    """Each row's id as the report shows it: its row_id (every `dhs score` file has one), a graded export's
    candidate_id, else its file."""
    col = next(c for c in ("row_id", "candidate_id", "source_file") if c in t.column_names)
    return [str(v) for v in t[col].to_pylist()]


def _known_scores(known: str, checkpoint: str | None, out_dir: Path, s3, log) -> Path:
    if check_known_lenses(known, checkpoint):
        return Path(known)
    from darkhaloscope.config import load_config
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data

    path = out_dir / "known_lenses_scores.parquet"
    score_data(checkpoint, known, path, load_config(ScoreConfig), s3=s3, progress=False)
    log(f"scored the known lenses in {known} -> {path}")
    return path


def known_lens_section(known: str, scores, cfg, ev, fig_dir: Path, *, checkpoint: str | None, out_dir: Path,
                       s3=None, log=print) -> None:
    """Add the real-lens section, headline line and metrics (see the module docstring)."""
    path = _known_scores(known, checkpoint, out_dir, s3, log)
    t = pq.read_table(path)
    schema = pq.read_schema(path)
    info = read_provenance(schema)
    names = t.column_names
    score = np.asarray(t["score"].to_numpy(zero_copy_only=False), float)
    label = t["label"].to_pylist() if "label" in names else [None] * t.num_rows
    lens = np.asarray([lab != 0 for lab in label]) & np.isfinite(score)
    graded_export = GRADED_METADATA_KEY in (schema.metadata or {})
    if graded_export:  # a `dhs grade export`: the graders' A/B are the lenses, whatever the scored label
        lens = np.asarray([g in GRADED_LENS_GRADES for g in t[GRADED_GRADE_COLUMN].to_pylist()]) & np.isfinite(score)
        info = {"data": next((d for d in t["data"].to_pylist() if d), None)}
    repeat, n_merged, merged = merged_duplicates(t, info)  # one lens saved under several names counts once
    lens &= ~repeat
    # the model's own logits on both sides (a calibration temperature would rescale one file's values only)
    model_logits = scores.model_logits()
    use_logit = "logit" in names and model_logits is not None
    value = np.asarray(t["logit"].to_numpy(zero_copy_only=False), float) if use_logit else score
    raw_scores = scores.raw_scores if scores.raw_scores is not None else scores.scores
    ctrl = (model_logits if use_logit else raw_scores)[scores.labels == 0]
    plain, look = _plain_and_look_alikes(scores, model_logits if use_logit else raw_scores)
    title = "Real lenses"
    if not lens.any() or len(ctrl) == 0:
        why = "no real lens with a score" if not lens.any() else "no controls in the evaluated scores"
        ev.add_section("known_lenses", title).text(f"Not measured: {why} ({known}).")
        ev.metrics["known_lenses"] = {"source": known, "n": int(lens.sum()), "note": why}
        return
    grade = np.asarray([str(g) if g not in (None, "") else "ungraded"
                        for g in (t[GRADE_COLUMN].to_pylist() if GRADE_COLUMN in names else [None] * t.num_rows)],
                       dtype=object)
    ops = thresholds_on_controls(ctrl, cfg.known_lens_fprs)
    graded = sorted(set(grade[lens]))
    groups = {"all": lens} | ({} if graded == ["ungraded"] else  # no grades at all: no per-grade rows
                              {(f"grade {g}" if g != "ungraded" else g): lens & (grade == g) for g in graded})
    rows, recall = [], defaultdict(dict)
    for gname, sel in groups.items():
        n = int(sel.sum())
        cells = [gname, n]
        for f, (thr, achieved) in ops.items():
            k = int((value[sel] > thr).sum())
            lo, hi = M.wilson_interval(np.array([k]), np.array([n]))
            recall[gname][f"{f:g}"] = {"recall": k / n, "found": k, "n": n, "ci95": [float(lo[0]), float(hi[0])],
                                       "threshold": thr, "achieved_fpr": achieved}
            cells.append(f"{k}/{n} = {k / n:.0%} [{lo[0]:.0%}, {hi[0]:.0%}]")
        rows.append(cells)
    what = "logit" if use_logit else "score"
    fpr_text = ", ".join(f"{f:g} ({what} > {thr:.3g}, achieved {a:.2g})" for f, (thr, a) in ops.items())
    sec = ev.add_section("known_lenses", title)
    lines: list[str] = [merged] if merged else []
    sec.text(f"{int(lens.sum())} real lens(es) from ", Code(Path(known).name), " (positives, never controls), scored "
             f"by the same model. Thresholds set on the {len(ctrl)} evaluated controls at FPR {fpr_text}.")
    if graded_export:
        lines.append("These are the candidates people graded A or B (a dhs grade export), with the scores recorded "
                     "when they were scored for grading: compare them only with scores of that checkpoint (to score "
                     "them with another, export them with --lenses-folder and pass the folder with --checkpoint).")
    unresolved = [f"{f:g}" for f in ops if len(ctrl) * f < 1]
    if unresolved:
        lines.append(f"Only {len(ctrl)} controls: FPR {', '.join(unresolved)} not resolved (the threshold is the "
                     f"highest control score; FPR f needs >= 1/f controls); evaluate more controls.")
    vs_plain = {}
    if plain is not None:  # the confuser section's thresholds: on the plain controls alone
        n = int(lens.sum())
        cells = [f"all, thresholds on the {len(plain)} plain controls (no look-alike)", n]
        for f, (thr, achieved) in thresholds_on_controls(plain, cfg.known_lens_fprs).items():
            k = int((value[lens] > thr).sum())
            lo, hi = M.wilson_interval(np.array([k]), np.array([n]))
            vs_plain[f"{f:g}"] = {"recall": k / n, "found": k, "n": n, "ci95": [float(lo[0]), float(hi[0])],
                                  "threshold": thr, "achieved_fpr": achieved}
            cells.append(f"{k}/{n} = {k / n:.0%} [{lo[0]:.0%}, {hi[0]:.0%}]")
        rows.append(cells)
        lines.append(f"{len(ctrl) - len(plain)} of the {len(ctrl)} controls carry a look-alike (confuser_kind): the last "
                     "row sets the thresholds on the plain controls alone, as the confuser section does.")
    for line in lines:
        sec.text(line)
    sec.table(["lenses", "N"] + [f"recall at FPR {f:g}" for f in ops], rows)
    all_rec = recall["all"]
    per_lens = fpr_to_find(value[lens], ctrl)
    ids = _lens_ids(t)
    none = [None] * int(lens.sum())
    per_lens_plain = fpr_to_find(value[lens], plain) if plain is not None else none
    per_lens_look = fpr_to_find(value[lens], look) if look is not None else none
    each = sorted(({"id": i, "grade": g, what: float(v), "fpr_to_find": f,
                    **({} if fp is None else {"fpr_to_find_plain": float(fp)}),
                    **({} if fl is None else {"look_alikes_to_find": float(fl)})} for i, g, v, f, fp, fl in
                   zip(np.asarray(ids, dtype=object)[lens], grade[lens], value[lens], per_lens, per_lens_plain,
                       per_lens_look)),
                  key=lambda r: r["fpr_to_find"])
    shown = ", ".join(f"{r['fpr_to_find']:.2g}" for r in each[:MAX_LISTED])
    shown += f" (+{len(each) - MAX_LISTED} more)" if len(each) > MAX_LISTED else ""
    sec.text(f"The FPR at which each real lens would be found (the share of the {len(ctrl)} controls scoring at least "
             f"as high), lowest first: {shown}.")
    if look is not None:  # what comes with each real lens found: the look-alikes scoring at least as high
        firsts = sorted(r["look_alikes_to_find"] for r in each)[:MAX_LISTED]
        sec.text(f"Look-alikes that come with them: to find k of the {len(each)} real lenses, the share of the "
                 f"{len(look)} look-alike controls scoring at least as high as the k-th best, k = 1, 2, ...: "
                 + ", ".join(f"{x:.2g}" for x in firsts) + ".")
    plain_text = ("; at the plain-control thresholds: " + ", ".join(
        f"{v['found']}/{v['n']} at FPR {f}" for f, v in vs_plain.items())) if vs_plain else ""
    ev.headline.append("Real lenses: " + ", ".join(f"recall {v['found']}/{v['n']} ({v['recall']:.0%}) at FPR {f}"
                                                  for f, v in all_rec.items()) + f" ({Path(known).name}){plain_text}; "
                       f"FPR to find each: {shown}")
    ev.metrics["known_lenses"] = {"source": known, "scores_file": str(path), "n": int(lens.sum()),
                                  "n_controls": int(len(ctrl)), "value": what, "recall": dict(recall),
                                  "per_lens": each, "duplicates_merged": n_merged,
                                  **({"recall_vs_plain": vs_plain, "n_plain_controls": len(plain)} if vs_plain else {}),
                                  **({"n_look_alike_controls": len(look)} if look is not None else {})}
    notes: list[str] = []
    for caption, fig in _gallery(t, info, known, lens, score, grade, cfg, fig_dir, notes):
        sec.figure(fig, caption)
    for line in notes:
        sec.text(line)


def _gallery(t, info: dict, known, lens, score, grade, cfg, fig_dir: Path, lines: list[str]):
    """The real lenses, highest score first (needs the scored stamps: the data recorded in the scores file)."""
    from darkhaloscope.score.sources import open_source

    data = info.get("data")
    if not data or "source_file" not in t.column_names:
        lines.append("Gallery not made: the scores file records no data to read the stamps from.")
        return []
    if "://" not in data and not Path(data).exists():
        lines.append(f"Gallery not made: the scored data {data} is not here.")
        return []
    idx = np.flatnonzero(lens)
    idx = idx[np.argsort(-score[idx], kind="stable")][: cfg.known_lens_gallery]
    files, rows = t["source_file"].to_pylist(), t["source_row"].to_pylist()
    images = open_source(data).fetch([files[i] for i in idx], [int(rows[i]) for i in idx])
    ids = _lens_ids(t)
    captions = [f"p={score[i]:.3g} {grade[i]}\n{str(ids[i])[-28:]}" for i in idx]  # gallery: verbatim, no mathtext
    return [("real lenses, highest score first", plots.gallery(images, captions, "Real lenses by score",
                                                               fig_dir / "known_lenses.png"))]
