"""The scores file contract: what `dhs score` writes and `dhs evaluate` reads (one row per stamp).

Columns: `score` (probability of "lens", float: sigmoid of the logit), `score_calibrated` (sigmoid(logit / T)
with the temperature T fitted on the validation split by `dhs train`; absent when the checkpoint has none),
`logit` (float), `logit_calibrated` (logit / T), for a committee `logit_m0`, `logit_m1`, ... and
`logit_spread` (score.committee), `label` (int8, 1 lens/injection,
0 control, null when unknown), `row_id` ("relpath:row" or the tier's stamp_id), `region_split`, then
every metadata column of the tier (ids, injection metadata, observing conditions) and `img_*` image
statistics computed while scoring (used by the image-statistics baseline). The parquet key-value
metadata `darkhaloscope.scores` holds the data URI, checkpoint and command that made it.

Exercise: `dhs evaluate scores.parquet --out DIR`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.stamps.schema import (CONFUSER_COLUMN, CONFUSER_VARIANT_COLUMN, ID_COLUMNS, LABEL_COLUMN,
                                         SPLIT_COLUMN, is_forbidden_input)

SCORE_COLUMN = "score"  # probability in [0, 1]: sigmoid(logit)
CALIBRATED_COLUMN = "score_calibrated"  # sigmoid(logit / T), T fitted on val by `dhs train` (when the checkpoint has it)
CALIBRATED_LOGIT_COLUMN = "logit_calibrated"  # logit / T
MEMBER_PREFIX = "logit_m"  # committee scores: logit_m0, logit_m1, ... one per member (score.committee)
SPREAD_COLUMN = "logit_spread"  # committee scores: standard deviation of the member logits
LOGIT_COLUMN = "logit"
ROW_ID_COLUMN = "row_id"
IMAGE_STAT_PREFIX = "img_"  # image statistics written by `dhs score`
METADATA_KEY = b"darkhaloscope.scores"
REQUIRED = (SCORE_COLUMN, LABEL_COLUMN)
SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN = "source_file", "source_row"  # where `dhs score` read the stamp
NOT_METADATA = {SCORE_COLUMN, CALIBRATED_COLUMN, LOGIT_COLUMN, CALIBRATED_LOGIT_COLUMN, SPREAD_COLUMN, LABEL_COLUMN, ROW_ID_COLUMN, SPLIT_COLUMN, SOURCE_FILE_COLUMN,
                SOURCE_ROW_COLUMN, "is_control", "cutout_ok", "_file", "_row"}


@dataclass
class Scores:
    """Labelled rows of a scores file, as numpy arrays."""

    path: str
    labels: np.ndarray  # (N,) int8
    scores: np.ndarray  # (N,) float64 probabilities
    logits: np.ndarray | None
    row_ids: pa.ChunkedArray | None  # (N,) strings, kept in arrow (10M python strings would cost seconds)
    columns: dict[str, np.ndarray]  # numeric metadata and img_* columns (float64, nan where null)
    split_note: str  # which rows were kept, for the report
    info: dict = field(default_factory=dict)  # provenance from the file's key-value metadata
    n_unlabelled: int = 0
    n_unscored: int = 0  # rows whose stamp failed to decode when scoring (null score), left out
    source_file: pa.ChunkedArray | None = None  # (N,) file of each stamp inside the scored data
    source_row: pa.ChunkedArray | None = None  # (N,) int64: row inside that file
    splits: tuple[str, ...] = ()  # region_split values of the kept rows (empty: no split column)
    score_column: str = SCORE_COLUMN  # the probability in `scores` (score or score_calibrated): what thresholds use
    raw_scores: np.ndarray | None = None  # sigmoid(logit) when `scores` holds the calibrated probability
    raw_logits: np.ndarray | None = None  # the model's logit when `logits` holds logit / T
    confuser_kind: np.ndarray | None = None  # (N,) object: the control's simulated look-alike kind, None: none
    confuser_variant: np.ndarray | None = None  # (N,) object: which variant of that kind (None: none / not recorded)
    members: dict[str, np.ndarray] = field(default_factory=dict)  # committee: {logit_m<i>: member logits}

    def model_logits(self) -> np.ndarray | None:
        """The logits the model outputs (before any temperature), to compare with a re-scoring."""
        return self.raw_logits if self.raw_logits is not None else self.logits

    @property
    def score_label(self) -> str:
        """How reports name the thresholded probability."""
        if self.score_column == CALIBRATED_COLUMN:
            t = (self.info.get("calibration") or {}).get("temperature")
            return f"calibrated score ({CALIBRATED_COLUMN} = sigmoid(logit / T){f', T = {t:.3g}' if t else ''})"
        return f"raw score ({SCORE_COLUMN} = sigmoid(logit), not calibrated)"

    def __len__(self) -> int:
        return len(self.scores)

    def row_id(self, i: int) -> str:
        return self.row_ids[int(i)].as_py() if self.row_ids is not None else f"row {int(i)}"

    def locate(self, idx: np.ndarray) -> tuple[list[str], list[int]]:
        """(source_file, source_row) lists of rows `idx`, to fetch their stamps."""
        take = pa.array(np.asarray(idx, np.int64))
        return self.source_file.take(take).to_pylist(), self.source_row.take(take).to_pylist()

    def metadata_columns(self) -> list[str]:
        return [c for c in self.columns if not c.startswith(IMAGE_STAT_PREFIX)]

    def allowed_metadata(self) -> list[str]:
        """Numeric metadata that may legitimately be a model input (not injection-describing, not ids)."""
        return [c for c in self.metadata_columns() if not is_forbidden_input(c) and c not in ID_COLUMNS]

    def image_stats(self) -> list[str]:
        return [c for c in self.columns if c.startswith(IMAGE_STAT_PREFIX)]


def is_member_column(name: str) -> bool:
    index = name[len(MEMBER_PREFIX):]
    return name.startswith(MEMBER_PREFIX) and index.isascii() and index.isdigit()  # 'logit_m³' is not one


def read_provenance(schema: pa.Schema, where: str | Path = "the scores file") -> dict:
    """What `dhs score` recorded in a scores file's schema metadata (checkpoint, `data` scored, ...); {} if none."""
    meta = (schema.metadata or {}).get(METADATA_KEY)
    if not meta:
        return {}
    try:
        info = json.loads(meta)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise DataError(f"{where}: its {METADATA_KEY.decode()} metadata is not the JSON object `dhs score` writes; "
                        "re-run `dhs score`")
    return info


def open_scores_file(path: Path) -> pq.ParquetFile:
    """A scores file opened for reading; one error line when it is absent, a folder or not parquet."""
    if path.is_dir():
        raise UsageError(f"{path}: a folder, not a scores file; name the .parquet file `dhs score --out` wrote")
    if not path.is_file():
        raise MissingInputError(f"{path}: scores file not found; make one with `dhs score --checkpoint CKPT --data DATA "
                                f"--out {path.name}`")
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]}); re-run `dhs score`") from None


def read_scores_table(path: Path) -> tuple[pa.Table, dict]:
    """The whole scores file at `path` and its provenance; one error line when it is absent or not parquet."""
    pf = open_scores_file(path)
    try:
        table = pf.read()
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]}); re-run `dhs score`") from None
    return table, read_provenance(pf.schema_arrow, path)


def read_scores(path: str | Path, split: str = "auto", score: str = "auto") -> Scores:
    """Read a scores parquet file; keep rows of `split` ('auto': test when present, else all; 'all').
    `score`: the probability to threshold: raw (`score`), calibrated (`score_calibrated`, with
    `logit_calibrated` to rank on) or auto (calibrated when the file has it)."""
    path = Path(path)
    table, info = read_scores_table(path)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(table.column_names[:12])}); "
                        "a scores file needs `score` (probability) and `label` (1 lens, 0 control): write it with "
                        "`dhs score`")
    table, note, kept = select_split(table, split, path)
    labelled = pc.is_valid(table[LABEL_COLUMN])
    n_unlabelled = table.num_rows - pc.sum(labelled.cast(pa.int64())).as_py() if table.num_rows else 0
    if n_unlabelled:
        table = table.filter(labelled)
        note += f"; {n_unlabelled:,} unlabelled row(s) left out"
    if table.num_rows == 0:
        raise DataError(f"{path}: no labelled rows ({n_unlabelled:,} unlabelled): `dhs evaluate` needs labels "
                        "(1 lens, 0 control); score a labelled tier, or keep these scores for candidate ranking")
    scored = pc.is_valid(table[SCORE_COLUMN])
    n_unscored = table.num_rows - pc.sum(scored.cast(pa.int64())).as_py() if table.num_rows else 0
    if n_unscored:
        table = table.filter(scored)
        note += f"; {n_unscored:,} row(s) whose stamp failed to decode when scoring left out"
    has_cal = CALIBRATED_COLUMN in table.column_names
    if score == "calibrated" and not has_cal:
        raise DataError(f"{path}: no `{CALIBRATED_COLUMN}` column (the checkpoint holds no temperature: it was "
                        "trained by an older `dhs train`); evaluate with --score=raw or re-train")
    score_column = CALIBRATED_COLUMN if has_cal and score != "raw" else SCORE_COLUMN
    scores = _float(table, score_column)
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: row {i} has {score_column} {scores[i]} ({int(bad.sum())} bad in all); it must be a "
                        "probability in [0, 1]: re-score, or drop rows whose stamps failed to decode")
    labels = table[LABEL_COLUMN].to_numpy(zero_copy_only=False).astype(np.int64)
    wrong = (labels != 0) & (labels != 1)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise DataError(f"{path}: row {i} has label {labels[i]}; labels must be 1 (lens) or 0 (control)")
    logit_column = CALIBRATED_LOGIT_COLUMN if score_column == CALIBRATED_COLUMN else LOGIT_COLUMN
    logits = _float(table, logit_column) if logit_column in table.column_names else None
    raw = _float(table, SCORE_COLUMN) if score_column == CALIBRATED_COLUMN else None
    raw_logits = (_float(table, LOGIT_COLUMN) if score_column == CALIBRATED_COLUMN and LOGIT_COLUMN in table.column_names
                  else None)
    row_ids = table[ROW_ID_COLUMN] if ROW_ID_COLUMN in table.column_names else None
    cols, members = {}, {}
    for name in table.column_names:
        t = table.schema.field(name).type
        if is_member_column(name):
            members[name] = _float(table, name)
            continue
        if name in NOT_METADATA or not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            continue
        cols[name] = _float(table, name)
    src = {c: table[c] for c in (SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN) if c in table.column_names}
    kinds, variants = (np.asarray(table[c].cast(pa.string()).to_pylist(), dtype=object) if c in table.column_names
                       else None for c in (CONFUSER_COLUMN, CONFUSER_VARIANT_COLUMN))
    return Scores(str(path), labels.astype(np.int8), scores, logits, row_ids, cols, note, info, int(n_unlabelled),
                  int(n_unscored), src.get(SOURCE_FILE_COLUMN), src.get(SOURCE_ROW_COLUMN), kept, score_column, raw,
                  raw_logits, kinds, variants,
                  dict(sorted(members.items(), key=lambda kv: int(kv[0][len(MEMBER_PREFIX):]))))


def _float(table: pa.Table, name: str) -> np.ndarray:
    col = table[name]
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def select_split(table: pa.Table, split: str, path: Path) -> tuple[pa.Table, str, tuple[str, ...]]:
    """The rows of `split` ('auto': test when the file has one, else all; 'all'), a note saying which rows of
    how many, and the splits kept. `dhs evaluate` and `dhs candidates` choose by this one rule."""
    if SPLIT_COLUMN not in table.column_names:
        if split not in ("auto", "all"):
            raise UsageError(f"{path}: no `{SPLIT_COLUMN}` column, cannot select split {split!r}; use --split=all")
        return table, f"all {table.num_rows:,} rows (no split column)", ()
    present = sorted(x for x in pc.unique(table[SPLIT_COLUMN]).to_pylist() if x is not None)
    if split == "auto":
        split = "test" if "test" in present else "all"
    if split == "all":
        return table, f"all {table.num_rows:,} rows (splits: {', '.join(present)})", tuple(present)
    if split not in present:
        raise UsageError(f"{path}: no rows with {SPLIT_COLUMN}={split!r}; valid splits: "
                         f"{', '.join(present + ['all', 'auto'])}; pick one with --split=NAME (e.g. --split={present[0] if present else 'all'})")
    kept = table.filter(pc.equal(table[SPLIT_COLUMN], split))
    return (kept, f"{kept.num_rows:,} rows of split '{split}' (of {table.num_rows:,}; splits: {', '.join(present)})",
            (split,))
