"""The cheap pass of `dhs audit`: one walk over the tier's small columns, never its stamps.

For every row group of every file it works out (class, split, cutout_ok) counts from the parquet
statistics in the footer when they settle them (a row group whose is_control min == max is one class:
nothing is read), and otherwise reads only the label / split / cutout_ok columns. In the same walk it
reads the host id columns (split integrity) and, for a seeded sample of files, the metadata columns
(leakage). The row groups of a file that need reading are read in one call (per 64k rows): per-call
overhead, not bytes, dominates small columns. Files are read in parallel threads; memory holds one
such chunk of small columns per thread plus 24 bytes per host id and the capped leakage sample.
Exercised by `dhs audit DATA` and `dhs bench audit`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from darkhaloscope.errors import DataError
from darkhaloscope.stamps.schema import (CTRL_STAMP_COLUMN, CUTOUT_OK_COLUMN, HOST_ID_COLUMNS, LABEL_COLUMN,
                                          LABEL_SOURCE_COLUMN, PACKED_STAMP_COLUMN, SPLIT_COLUMN, STAMP_COLUMN,
                                          STAMP_ID_COLUMN,
                                          label_from_is_control)
from darkhaloscope.stamps.tier import Tier, TierFile

UNSPLIT = "unsplit"  # split name of rows whose split is unknown (no partition, no column)
READ_CHUNK_ROWS = 65_536  # row groups are read together up to this many rows (one call: far less overhead)
NOT_METADATA = {STAMP_COLUMN, CTRL_STAMP_COLUMN, PACKED_STAMP_COLUMN, LABEL_SOURCE_COLUMN, LABEL_COLUMN,
                SPLIT_COLUMN}


@dataclass
class FileScan:
    """What the cheap pass learnt about one file."""

    relpath: str
    num_rows: int
    types: dict[str, pa.DataType]  # column -> arrow type, from the footer
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> [controls, injections], usable rows
    rows: dict[str, int] = field(default_factory=dict)  # split -> all rows
    usable: dict[str, int] = field(default_factory=dict)  # split -> rows with cutout_ok=1
    rg_from_stats: int = 0  # row groups whose counts came from footer statistics alone
    rg_read: int = 0  # row groups whose small columns were read
    error: str | None = None  # why (part of) the file could not be read
    label_error: str | None = None  # invalid label values (null, not 0/1): the rows after it are not counted
    hosts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # host column -> [(int64 id hashes, split names, row index in file)] per row group
    leak: list[dict[str, np.ndarray]] = field(default_factory=list)  # sampled row groups: column -> float64
    # (NaN = null; non-numeric columns hold 0.0 / NaN, i.e. only their null pattern); '__label__' -> 0/1


@dataclass
class TierScan:
    files: list[FileScan]
    label_column: str | None  # 'is_control' (npz tiers) or 'label' (packed tiers); None when absent
    leak_columns: list[str]  # metadata columns sampled for leakage

    def counts(self) -> dict[str, list[int]]:
        return _sum_dicts([f.counts for f in self.files], lambda: [0, 0])

    def rows(self) -> dict[str, int]:
        return _sum_dicts([f.rows for f in self.files], int)

    def usable(self) -> dict[str, int]:
        return _sum_dicts([f.usable for f in self.files], int)

    def leak_sample(self) -> dict[str, np.ndarray]:
        parts = [p for f in self.files for p in f.leak]
        if not parts:
            return {}
        return {c: np.concatenate([p.get(c, np.full(len(p["__label__"]), np.nan)) for p in parts])
                for c in self.leak_columns + ["__label__"]}


def _sum_dicts(dicts, zero):
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            cur = out.setdefault(k, zero())
            if isinstance(cur, list):
                for i, x in enumerate(v):
                    cur[i] += x
            else:
                out[k] = cur + v
    return dict(sorted(out.items()))


def is_metadata_type(t: pa.DataType) -> bool:
    """Small scalar columns worth a leakage check (numbers, booleans, strings); never binary or nested."""
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
            or pa.types.is_timestamp(t) or pa.types.is_date(t))


def _const_stat(md_rg, idx: int | None):
    """The single value of a column in a row group if its statistics prove it (no nulls, min == max)."""
    if idx is None:
        return None
    st = md_rg.column(idx).statistics
    if st is None or not st.has_min_max or st.null_count is None or st.null_count:
        return None
    return st.min if st.min == st.max else None


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.where(np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), bool), np.nan, 0.0)


def _host_hash(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 hashes, non-null mask) of a host id column; integers are their own hash."""
    valid = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), bool)
    if pa.types.is_integer(col.type):
        return np.asarray(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), np.int64), valid
    vals = pc.cast(col, pa.string()).to_pylist()
    return np.fromiter((hash(v) for v in vals), np.int64, count=len(vals)), valid


class LabelError(DataError):
    """The label column of a file holds nulls or values other than 0/1."""


class _FileScanner:
    """Scan one file: row groups settled by footer statistics are counted without reading; the others are
    read together, small columns only, in chunks of at most READ_CHUNK_ROWS rows (one call per chunk)."""

    def __init__(self, tier: Tier, label_col: str | None, leak_cols: list[str], leak_p: float, seed: int,
                 host_ids: bool = True):
        self.tier, self.label_col, self.leak_cols, self.leak_p, self.seed = tier, label_col, leak_cols, leak_p, seed
        self.host_ids = host_ids
        # remote (s3://) files: coalesce the small column chunks of a row group into few range requests
        self.pre_buffer = not isinstance(tier.fs, pafs.LocalFileSystem)

    def __call__(self, item: tuple[int, TierFile]) -> FileScan:
        k, f = item
        try:
            pf = pq.ParquetFile(self.tier.fs.open_input_file(f.path), pre_buffer=self.pre_buffer, metadata=f.metadata)
            schema = pf.schema_arrow
        except (OSError, pa.ArrowException) as e:
            return FileScan(f.relpath, f.num_rows, {}, error=f"cannot read parquet ({str(e).splitlines()[0][:150]})")
        fs = FileScan(f.relpath, f.num_rows, {n: schema.field(n).type for n in schema.names})
        idx = {n: i for i, n in enumerate(schema.names)}
        label_col = self.label_col if self.label_col in idx else None  # a file without it: schema error
        # host ids (split integrity) and stamp_id (must be unique), hashed for every row
        hosts = [c for c in HOST_ID_COLUMNS + (STAMP_ID_COLUMN,) if c in idx] if self.host_ids else []
        take_leak = bool(self.leak_cols) and np.random.default_rng([self.seed, k]).random() < self.leak_p
        md = pf.metadata
        to_read: list[tuple[int, int, int]] = []  # (row group, first row, rows)
        start = 0
        for rg in range(md.num_row_groups):
            n = md.row_group(rg).num_rows
            md_rg = md.row_group(rg)
            label = _const_stat(md_rg, idx[label_col]) if label_col else None
            split = f.split or _const_stat(md_rg, idx.get(SPLIT_COLUMN)) or (None if SPLIT_COLUMN in idx else UNSPLIT)
            ok = 1 if CUTOUT_OK_COLUMN not in idx else _const_stat(md_rg, idx[CUTOUT_OK_COLUMN])
            if hosts or take_leak or (label_col and label is None) or split is None or ok is None:
                to_read.append((rg, start, n))
            else:  # settled by the footer alone: nothing read
                lab = None if label_col is None else np.full(n, self._label_value(label), np.int8)
                self._count(fs, np.full(n, split, dtype=object), np.full(n, bool(ok)), lab)
                fs.rg_from_stats += 1
            start += n
        cols = sorted(set(hosts) | ({label_col} if label_col else set())
                      | ({SPLIT_COLUMN} if SPLIT_COLUMN in idx and f.split is None else set())
                      | ({CUTOUT_OK_COLUMN} if CUTOUT_OK_COLUMN in idx else set())
                      | (set(c for c in self.leak_cols if c in idx) if take_leak else set()))
        for chunk in _chunks(to_read, READ_CHUNK_ROWS):
            try:
                self._read_chunk(pf, fs, f, chunk, cols, label_col, hosts, take_leak, idx)
            except (OSError, pa.ArrowException):  # a corrupt chunk: read its row groups one by one
                for one in ([c] for c in chunk):
                    try:
                        self._read_chunk(pf, fs, f, one, cols, label_col, hosts, take_leak, idx)
                    except (OSError, pa.ArrowException) as e:
                        fs.error = fs.error or f"row group {one[0][0]}: {str(e).splitlines()[0][:200]}"
            except LabelError as e:
                fs.label_error = str(e)
                break
        return fs

    def _read_chunk(self, pf, fs: FileScan, f: TierFile, chunk, cols, label_col, hosts, take_leak, idx) -> None:
        table = pf.read_row_groups([c[0] for c in chunk], columns=cols, use_threads=False)
        rows = np.concatenate([np.arange(s0, s0 + n, dtype=np.int64) for _, s0, n in chunk])
        self._read_part(fs, f, table, rows, label_col, hosts, take_leak, idx)
        fs.rg_read += len(chunk)

    def _label_value(self, v) -> int:
        return (1 - int(v)) if self.label_col == LABEL_SOURCE_COLUMN else int(v)

    @staticmethod
    def _count(fs: FileScan, splits: np.ndarray, usable: np.ndarray, labels: np.ndarray | None) -> None:
        names = [splits[0]] if len(splits) and (splits == splits[0]).all() else np.unique(splits)
        for s in names:  # one split per file is the rule (hive partitions): no object sort then
            m = splits == s
            fs.rows[s] = fs.rows.get(s, 0) + int(m.sum())
            fs.usable[s] = fs.usable.get(s, 0) + int((m & usable).sum())
            if labels is not None:
                c = fs.counts.setdefault(s, [0, 0])
                c[0] += int(((labels == 0) & m & usable).sum())
                c[1] += int(((labels == 1) & m & usable).sum())

    def _read_part(self, fs: FileScan, f: TierFile, table: pa.Table, rows: np.ndarray, label_col, hosts,
                   take_leak: bool, idx) -> None:
        n = table.num_rows
        splits = (np.full(n, f.split, dtype=object) if f.split is not None else
                  np.full(n, UNSPLIT, dtype=object) if SPLIT_COLUMN not in idx else
                  np.asarray(pc.fill_null(table[SPLIT_COLUMN].cast(pa.string()), UNSPLIT).to_pylist(), dtype=object))
        usable = (np.ones(n, bool) if CUTOUT_OK_COLUMN not in idx else np.asarray(
            pc.fill_null(pc.equal(table[CUTOUT_OK_COLUMN], 1), False).to_numpy(zero_copy_only=False), bool))
        labels = self._labels(table[label_col], rows) if label_col else None
        self._count(fs, splits, usable, labels)
        for h in hosts:
            hv, valid = _host_hash(table[h])
            fs.hosts.setdefault(h, []).append((hv[valid], splits[valid], rows[valid]))
        if take_leak and labels is not None:
            part = {c: _as_float(table[c]) for c in self.leak_cols if c in idx}
            part["__label__"] = labels.astype(np.float64)
            fs.leak.append(part)

    def _labels(self, col: pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
        if self.label_col == LABEL_COLUMN:
            return np.asarray(pc.fill_null(col, -1).to_numpy(zero_copy_only=False), np.int8)
        try:
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                col = pc.cast(col, pa.int64())  # counted anyway; the schema check refuses the text type
            return label_from_is_control(col)
        except (DataError, pa.ArrowInvalid) as e:
            msg = str(e)
            if " row " in msg:  # name the row inside the file, not inside this read
                head, _, tail = msg.rpartition(" row ")
                num, _, rest = tail.partition(" ")
                msg = f"{head} row {rows[int(num)]} {rest}" if num.isdigit() else msg
            raise LabelError(msg) from None


def _chunks(items: list[tuple[int, int, int]], max_rows: int):
    """Split (row group, start, rows) items into consecutive lists of at most max_rows rows (>= 1 item)."""
    chunk, rows = [], 0
    for it in items:
        if chunk and rows + it[2] > max_rows:
            yield chunk
            chunk, rows = [], 0
        chunk.append(it)
        rows += it[2]
    if chunk:
        yield chunk


def scan_tier(tier: Tier, *, leakage_max_rows: int = 5_000, seed: int = 0, threads: int = 8,
              host_ids: bool = True, progress: Callable[[int], None] | None = None) -> TierScan:
    """Walk every file of `tier` once (small columns only) and return what the cheap checks need."""
    cols = tier.columns
    label_col = LABEL_COLUMN if LABEL_COLUMN in cols else (LABEL_SOURCE_COLUMN if LABEL_SOURCE_COLUMN in cols else None)
    leak_cols = _metadata_columns(tier)
    leak_p = min(1.0, leakage_max_rows / max(1, tier.num_rows))
    scanner = _FileScanner(tier, label_col, leak_cols, leak_p, seed, host_ids)
    out: list[FileScan] = []
    with ThreadPoolExecutor(max(1, min(threads, len(tier.files)))) as ex:
        for fs in ex.map(scanner, enumerate(tier.files)):
            out.append(fs)
            if progress:
                progress(1)
    return TierScan(out, label_col, leak_cols)


def _metadata_columns(tier: Tier) -> list[str]:
    """Scalar columns of the first readable footer, minus stamps / label / split / host ids."""
    for f in tier.files:
        try:
            if f.metadata is not None:
                schema = f.metadata.schema.to_arrow_schema()
            else:
                with tier.fs.open_input_file(f.path) as fh:
                    schema = pq.ParquetFile(fh).schema_arrow
        except (OSError, pa.ArrowException):
            continue
        return [n for n in schema.names if n not in NOT_METADATA and n not in HOST_ID_COLUMNS
                and not n.startswith("_") and is_metadata_type(schema.field(n).type)]
    return []
