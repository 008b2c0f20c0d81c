"""Real-lens recall, the numbers: `known_lens_metrics` (rendered by evaluate.knownlenses_report).

KNOWN is a scores file of real lenses (from `dhs score`), or data to score with `--checkpoint` (a tier from
`dhs cutouts`, a folder of npz/FITS cutouts such as ../shared/data/ps1_sled_lenses). Its rows with label 1,
or with no label, are real lenses: never controls. Lenses and controls are compared on the model's own
logits (a calibration temperature would rescale one file's values only); thresholds are shown as the
evaluated file's probability (the calibrated score when it has one), as every other section shows them.

- At the evaluated controls: for each FPR of `known_lens_fprs`, the threshold set on the controls of SCORES
  (`common.ranking.control_threshold`: k = floor(FPR x controls) may pass); an FPR the controls cannot
  resolve (controls x FPR < 1) is reported as such, never with a recall. With look-alikes among the
  controls (`confuser_kind`), also at the thresholds set on the plain controls alone (the confuser section's
  rule): `recall_vs_plain`, and each lens's `fpr_to_find_plain` and `look_alikes_to_find`.
- Noise-matched (`evaluate.noisematch`, attached by the report when it has the stamps and the model): at
  thresholds set on the controls brought to each lens's own sky noise.
- Groups: all, per grade (the `grade` column) and per survey (the folder's `meta_survey`) when they differ;
  by host brightness against the controls' 5-95% range when some lens lies outside it (`evaluate.hostrange`:
  a threshold set on controls unlike a lens's host does not say what it seems to).
- Duplicates (files `dhs score` merged for holding the same bytes, cutouts within 1" of an earlier one:
  `score.sources.merged_duplicates`) count once; the section says how many were merged.
KNOWN may also be a `dhs grade export` table: its candidates graded A or B are the real lenses (per grade: the
consensus letter), with the scores recorded when they were scored for grading; to score them with another
model, export them with `--lenses-folder DIR` and pass that folder with `--checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.common import ranking as M
from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.errors import MissingInputError, UsageError
from darkhaloscope.evaluate.confusers import plain_controls
from darkhaloscope.evaluate.hostrange import HOST_STAT, HostRange, host_range
from darkhaloscope.evaluate.noisematch import NoiseMatched, RecallCell, recall_table
from darkhaloscope.evaluate.simdepth import SimAtDepth
from darkhaloscope.score.sources import GRADE_COLUMN, merged_duplicates
from darkhaloscope.stamps.schema import GRADED_GRADE_COLUMN, GRADED_LENS_GRADES, GRADED_METADATA_KEY

MAX_LISTED = 10  # real lenses whose FPR-to-find the headline lists one by one


def is_scores_file(path: str) -> bool:
    p = Path(path)
    if not (p.is_file() and p.suffix == ".parquet"):
        return False
    try:
        return "score" in pq.read_schema(p).names
    except (OSError, pa.ArrowException):  # empty or not Parquet: not a scores file (said by the reader of lenses)
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


def lens_ids(t) -> list[str]:
    """Each row's id as the report shows it: its row_id (every `dhs score` file has one), a graded export's
    candidate_id, else its file."""
    col = next(c for c in ("row_id", "candidate_id", "source_file") if c in t.column_names)
    return [str(v) for v in t[col].to_pylist()]


def is_graded_export(t) -> bool:
    """A `dhs grade export` table: the graders' A/B are the lenses, whatever the scored label."""
    return GRADED_METADATA_KEY in (t.schema.metadata or {})


def graded_export_data(t) -> str | None:
    """The data a graded export's candidates were scored from (its `data` column)."""
    return next((d for d in t["data"].to_pylist() if d), None) if "data" in t.column_names else None


def to_display(scores):
    """logit -> the probability the rest of the report thresholds (calibrated: sigmoid(logit / T))."""
    t = (scores.info.get("calibration") or {}).get("temperature")
    calibrated = scores.score_column != "score" and t
    return lambda z: float(sigmoid(np.asarray(z, np.float64) / (float(t) if calibrated else 1.0)))


@dataclass
class KnownLensMetrics:
    """Everything the real-lens section states, as numbers (metrics.json `known_lenses` is `as_dict()`)."""

    source: str
    scores_file: str
    value: str  # what lenses and controls are compared on: logit or score
    score_label: str  # the probability thresholds are shown as (the evaluated file's)
    n: int  # real lenses counted (after duplicates are merged)
    n_controls: int
    rows: np.ndarray  # (n,) the lenses' rows in the known scores file
    ids: np.ndarray  # (n,) object
    values: np.ndarray  # (n,) logits (or scores)
    groups: dict[str, np.ndarray]  # group -> (n,) bool
    ops: dict[float, tuple[float, float]]  # fpr -> (threshold, achieved) on the evaluated controls
    resolvable: dict[float, bool]
    recall: dict[str, dict[str, RecallCell]]  # group -> fpr key -> cell
    vs_plain: dict[str, RecallCell] = field(default_factory=dict)
    n_plain: int | None = None
    n_look: int | None = None
    per_lens: list[dict] = field(default_factory=list)  # sorted by fpr_to_find
    merged: int = 0  # duplicates merged (same bytes, or within 1" of an earlier cutout)
    merged_note: str | None = None  # the line saying so
    unscored: int = 0  # lenses without a score (their file did not decode: decode_error in the scores file)
    noise: NoiseMatched | None = None
    noise_recall: dict[str, dict[str, RecallCell]] = field(default_factory=dict)
    noise_note: str | None = None  # why the noise-matched figures are missing, or a caveat
    unmeasured: list[str] = field(default_factory=list)  # lenses whose sky noise could not be measured
    graded_export: bool = False  # KNOWN is a `dhs grade export` (A/B graded candidates, their recorded scores)
    host: HostRange | None = None  # the lenses' host brightness against the controls' (None: not in both files)
    sim_depth: SimAtDepth | None = None  # the evaluated simulated lenses at these lenses' depths (evaluate.simdepth)

    def attach_noise(self, nm: NoiseMatched) -> None:
        """Add the noise-matched figures (`evaluate.noisematch.noise_matched` on these lenses, in order)."""
        self.noise = nm
        hits = {f"{f:g}": nm.found[f] for f in nm.fprs}
        self.noise_recall = recall_table({g: s & nm.measured for g, s in self.groups.items()}, hits,
                                         {f"{f:g}": nm.resolvable[f] for f in nm.fprs})
        self.unmeasured = [str(i) for i in self.ids[~nm.measured]]
        for r, b, sig in zip(self.per_lens_in_order(), nm.bins.bin, nm.bins.ratio):
            r["noise_bin"] = int(b) if b >= 0 else None
            r["noise_ratio_to_controls"] = None if not np.isfinite(sig) else float(sig)
        for f in nm.fprs:
            for r, found in zip(self.per_lens_in_order(), nm.found[f]):
                r.setdefault("found_noise_matched", {})[f"{f:g}"] = bool(found)

    def per_lens_in_order(self) -> list[dict]:
        """per_lens in the lenses' own order (the list itself is sorted by fpr_to_find)."""
        return sorted(self.per_lens, key=lambda r: r["_i"])

    def as_dict(self) -> dict:
        cells = lambda t: {g: {k: c.as_dict() for k, c in row.items()} for g, row in t.items()}  # noqa: E731
        out = {"source": self.source, "scores_file": self.scores_file, "n": self.n, "n_controls": self.n_controls,
               "value": self.value, "recall": cells(self.recall),
               "not_resolvable": [f"{f:g}" for f, ok in self.resolvable.items() if not ok],
               "per_lens": [{k: v for k, v in r.items() if k != "_i"} for r in self.per_lens],
               "duplicates_merged": self.merged, "not_scored": self.unscored}
        if self.vs_plain:
            out |= {"recall_vs_plain": {k: c.as_dict() for k, c in self.vs_plain.items()},
                    "n_plain_controls": self.n_plain}
        if self.n_look is not None:
            out["n_look_alike_controls"] = self.n_look
        if self.noise is not None:
            nm = self.noise
            out["noise_matched"] = {
                "recall": cells(self.noise_recall), "n_controls": nm.n_controls, "seed": nm.seed,
                "control_sigma": nm.bins.control_sigma.tolist(), "target_sigma": nm.bins.target.tolist(),
                "achieved_sigma": nm.achieved_sigma.tolist(), "below_controls": [list(map(int, p))
                                                                                 for p in nm.bins.below()],
                "unmeasured": self.unmeasured}
            if self.sim_depth is not None:
                out["noise_matched"]["simulated_at_depth"] = self.sim_depth.as_dict()
        if self.noise_note:
            out["noise_matched_note"] = self.noise_note
        if self.host is not None:
            out["host_brightness"] = self.host.as_dict()
        return out


def known_lens_metrics(t, scores, cfg, *, source: str, scores_file: str, provenance: dict | None = None,
                       surveys: dict[str, str] | None = None) -> KnownLensMetrics | None:
    """Today's figures of the real lenses in table `t` (a scores file) against the evaluated `scores`; None
    when there is nothing to measure (no lens with a score, or no controls). `provenance`: the scores file's
    (the files `dhs score` merged); `surveys`: {source_file: survey}."""
    names = t.column_names
    score = np.asarray(t["score"].to_numpy(zero_copy_only=False), float)
    label = t["label"].to_pylist() if "label" in names else [None] * t.num_rows
    files = t["source_file"].to_pylist() if "source_file" in names else [None] * t.num_rows
    graded = is_graded_export(t)
    is_lens = ([g in GRADED_LENS_GRADES for g in t[GRADED_GRADE_COLUMN].to_pylist()] if graded
               else [lab != 0 for lab in label])
    repeat, n_merged, merged_note = merged_duplicates(t, provenance or {})  # one lens under several names: once
    lens = np.asarray(is_lens, bool) & np.isfinite(score) & ~repeat
    unscored = int((np.asarray(is_lens, bool) & ~np.isfinite(score) & ~repeat).sum())
    model_logits = scores.model_logits()
    use_logit = "logit" in names and model_logits is not None
    value = np.asarray(t["logit"].to_numpy(zero_copy_only=False), float) if use_logit else score
    raw = scores.raw_scores if scores.raw_scores is not None else scores.scores
    all_values = model_logits if use_logit else raw
    ctrl = all_values[scores.labels == 0]
    if not lens.any() or len(ctrl) == 0:
        return None
    grade_col = t[GRADE_COLUMN].to_pylist() if GRADE_COLUMN in names else [None] * t.num_rows
    grade = np.asarray([str(g) if g not in (None, "") else "ungraded" for g in grade_col], dtype=object)[lens]
    survey = np.asarray([(surveys or {}).get(f) or "unknown survey" for f in files], dtype=object)[lens]
    ids = np.asarray(lens_ids(t), dtype=object)[lens]
    v = value[lens]
    n = len(v)
    groups = {"all": np.ones(n, bool)}
    if sorted(set(grade)) != ["ungraded"]:  # no grades at all: no per-grade rows
        groups |= {(f"grade {g}" if g != "ungraded" else g): grade == g for g in sorted(set(grade))}
    if len(set(survey)) > 1:
        groups |= {str(s): survey == s for s in sorted(set(survey))}
    host = host_range(_column(t, HOST_STAT, lens), scores.columns[HOST_STAT][scores.labels == 0]
                      if HOST_STAT in scores.columns else None, ctrl)
    if host is not None:
        groups |= host.groups()
    ops = thresholds_on_controls(ctrl, cfg.known_lens_fprs)
    resolvable = {f: len(ctrl) * f >= 1 for f in ops}
    key = {f: f"{f:g}" for f in ops}
    recall = recall_table(groups, {key[f]: v > thr for f, (thr, _) in ops.items()},
                          {key[f]: resolvable[f] for f in ops},
                          {key[f]: {"threshold": thr, "achieved_fpr": a} for f, (thr, a) in ops.items()})
    plain, look = _plain_and_look_alikes(scores, all_values)
    vs_plain = {}
    if plain is not None:  # the confuser section's thresholds: on the plain controls alone
        pops = thresholds_on_controls(plain, cfg.known_lens_fprs)
        vs_plain = recall_table({"all": groups["all"]}, {key[f]: v > thr for f, (thr, _) in pops.items()},
                                {key[f]: len(plain) * f >= 1 for f in pops},
                                {key[f]: {"threshold": thr, "achieved_fpr": a} for f, (thr, a) in pops.items()})["all"]
    what = "logit" if use_logit else "score"
    per_lens_plain = fpr_to_find(v, plain) if plain is not None else [None] * n
    per_lens_look = fpr_to_find(v, look) if look is not None else [None] * n
    each = sorted(({"_i": i, "id": ids[i], "grade": grade[i], what: float(v[i]), "fpr_to_find": float(f),
                    **({} if fp is None else {"fpr_to_find_plain": float(fp)}),
                    **({} if fl is None else {"look_alikes_to_find": float(fl)}),
                    **({} if host is None or host.place(i) is None else {"host_vs_controls": host.place(i)})}
                   for i, (f, fp, fl) in enumerate(zip(fpr_to_find(v, ctrl), per_lens_plain, per_lens_look))),
                  key=lambda r: r["fpr_to_find"])
    return KnownLensMetrics(source, scores_file, what, scores.score_label, n, len(ctrl), np.flatnonzero(lens), ids, v, groups, ops,
                            resolvable, recall, vs_plain, None if plain is None else len(plain),
                            None if look is None else len(look), each, n_merged, merged_note, unscored,
                            graded_export=graded, host=host)


def _column(t, name: str, rows: np.ndarray) -> np.ndarray | None:
    """Column `name` of table `t` at boolean `rows` as float64 (nan where null); None when absent."""
    if name not in t.column_names:
        return None
    return np.asarray(t[name].to_numpy(zero_copy_only=False), np.float64)[rows]
