"""Cheap class counts per split: reads only the label / split / cutout_ok columns, never the stamps.

Used by the training guards (`dhs train` refuses a one-class split) and the audit's balance pass.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from darkhaloscope.errors import DataError, RefusedError
from darkhaloscope.stamps.schema import (CUTOUT_OK_COLUMN, LABEL_COLUMN, LABEL_SOURCE_COLUMN, SPLIT_COLUMN,
                                          STAMP_ID_COLUMN,
                                          label_from_is_control)
from darkhaloscope.stamps.tier import Tier


def class_counts(tier: Tier, *, cutout_ok_only: bool = True) -> dict[str, dict[int, int]]:
    """{split: {0: n_controls, 1: n_injections}} over the whole tier (split None -> 'unsplit')."""
    label_col = LABEL_COLUMN if LABEL_COLUMN in tier.columns else LABEL_SOURCE_COLUMN
    if label_col not in tier.columns:
        raise DataError(f"{tier.uri}: no '{LABEL_SOURCE_COLUMN}' column, so the classes are unknown; "
                        "a Phase 4c tier needs is_control (1 control, 0 injection)")
    cols = [label_col]
    if not tier.split_from_partition and SPLIT_COLUMN in tier.columns:
        cols.append(SPLIT_COLUMN)
    table = tier.read_columns(cols, cutout_ok_only=cutout_ok_only and CUTOUT_OK_COLUMN in tier.columns)
    if label_col == LABEL_COLUMN:
        labels = np.asarray(table[label_col].to_numpy(zero_copy_only=False), dtype=np.int8)
    else:
        try:
            labels = label_from_is_control(table[label_col])
        except (DataError, RefusedError) as e:  # name the file and row inside it
            i = getattr(e, "row", None)
            if i is None:  # the column's type: name the first file
                first = f"{tier.uri.rstrip('/')}/{table['_file'][0]}" if table.num_rows else tier.uri
                raise type(e)(f"{first}: {e}") from None
            raise DataError(f"{tier.uri.rstrip('/')}/{table['_file'][i]} row {table['_row'][i]}: {label_col} is "
                            f"{table[label_col][i].as_py()!r}; it must be 0 (injection) or 1 (control): fix the "
                            "tier or drop the row") from None
    splits = pc.fill_null(table[SPLIT_COLUMN].cast("string"), "unsplit")
    names = pc.unique(splits).to_pylist()
    idx = pc.index_in(splits, value_set=pa.array(names, pa.string())).to_numpy(zero_copy_only=False)
    per = np.bincount(idx.astype(np.int64) * 2 + labels, minlength=2 * len(names))  # vectorised: 10M rows in ~0.1 s
    out: dict[str, dict[int, int]] = defaultdict(lambda: {0: 0, 1: 0})
    for j, s in sorted(enumerate(names), key=lambda t: t[1]):
        out[s] = {0: int(per[2 * j]), 1: int(per[2 * j + 1])}
    for s in tier.splits() if tier.split_from_partition else []:
        out[s]  # splits whose rows were all filtered away still appear, with zero counts
    return dict(out)


def one_class_splits(counts: dict[str, dict[int, int]], splits=None) -> list[str]:
    """Messages for each split (of `splits`, default all) that lacks a class."""
    msgs = []
    for s in (splits or sorted(counts)):
        c = counts.get(s, {0: 0, 1: 0})
        if c[0] == 0 or c[1] == 0:
            msgs.append(f"split '{s}' has {c[1]} injection(s) (is_control=0) and {c[0]} control(s) "
                        f"(is_control=1): {'no rows' if c[0] + c[1] == 0 else 'only one class'}")
    return msgs


def duplicate_ids(tier: Tier, column: str = STAMP_ID_COLUMN, *, examples: int = 4) -> str | None:
    """None when every `column` value is unique (or the tier has no such column), else a message naming
    how many ids repeat and where the first one is (file and row of each copy). Reads that column only."""
    if column not in tier.columns:
        return None
    table = tier.read_columns([column])
    ids = table[column]
    vc = pc.value_counts(ids)
    counts = vc.field("counts").to_numpy(zero_copy_only=False)
    dup = np.flatnonzero(counts > 1)
    if not len(dup):
        return None
    first = vc.field("values")[int(dup[0])]
    rows = np.flatnonzero(np.asarray(pc.fill_null(pc.equal(ids, first), False).to_numpy(zero_copy_only=False), bool))
    where = ", ".join(f"{table['_file'][int(i)]} row {table['_row'][int(i)]}" for i in rows[:examples])
    return (f"{column} {first.as_py()!r} appears {len(rows)} times ({where}); {len(dup)} id(s) repeat in "
            f"{tier.uri}: every row needs its own {column} (de-duplicate the tier)")
