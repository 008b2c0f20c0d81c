"""Open a tier (local folder, single parquet file, or s3:// prefix) and read it with bounded memory.

    tier = open_tier("s3://bucket/stamps/train_stamp64/", S3Options.resolve())
    tier.splits()                       # ['test', 'train', 'val']
    for b in tier.iter_batches(["stamp_npz", "is_control"], split="train", cutout_ok_only=True):
        b.table, b.file.relpath, b.row_index   # pyarrow Table + the rows' indices inside their file

Splits come from the hive partition `region_split=<name>/` in the path, or from a `region_split` column.
Only the requested columns are read (parquet is columnar), one row group at a time.
"""

from __future__ import annotations

import os
import posixpath
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from darkhaloscope.errors import DataError, MissingInputError
from darkhaloscope.stamps.fs import S3Options, arrow_filesystem, is_s3, redact, s3_fault
from darkhaloscope.stamps.schema import CUTOUT_OK_COLUMN, PACKED_STAMP_COLUMN, SPLIT_COLUMN


@dataclass
class TierFile:
    """One parquet file of a tier, described from its footer (no data read)."""

    path: str  # path inside the filesystem
    relpath: str  # path relative to the tier root: used in messages and row ids
    split: str | None  # from the hive partition, None when the split is a column
    num_rows: int
    row_group_rows: list[int]  # rows in each row group
    columns: list[str]
    size_bytes: int = 0
    id_prefix: str = ""  # prepended to the row ids read from this file (the copies of a mined tier: `_mined<r>/`)
    # the footer read by open_tier, reused by every later open: one request less per file on s3://
    metadata: pq.FileMetaData | None = field(default=None, repr=False, compare=False)

    @property
    def num_row_groups(self) -> int:
        return len(self.row_group_rows)


@dataclass
class TierBatch:
    """Rows read from one row group (or part of one) of one file, after split / cutout_ok filtering."""

    file: TierFile
    row_group: int
    table: pa.Table
    row_index: np.ndarray  # index of each row inside its file

    def row_ids(self) -> list[str]:
        return [f"{self.file.relpath}:{i}" for i in self.row_index]

    def where(self, i: int) -> str:
        """Human name of row i of this batch, for error messages."""
        return f"{self.file.relpath} row {int(self.row_index[i])}"


@dataclass
class Tier:
    uri: str
    fs: pafs.FileSystem
    root: str
    files: list[TierFile] = field(default_factory=list)
    s3: S3Options | None = field(default=None, repr=False)  # how s3:// was reached (for error messages)

    # ---- description -------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.files:
            seen.update(dict.fromkeys(f.columns))
        return list(seen)

    @property
    def is_packed(self) -> bool:
        return bool(self.files) and all(PACKED_STAMP_COLUMN in f.columns for f in self.files)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    @property
    def split_from_partition(self) -> bool:
        return bool(self.files) and all(f.split is not None for f in self.files)

    def splits(self) -> list[str]:
        """Split names present, from partitions (free) or from the split column (reads one column)."""
        if self.split_from_partition:
            return sorted({f.split for f in self.files})
        if SPLIT_COLUMN not in self.columns:
            return []
        names: set[str] = set()
        for b in self.iter_batches([SPLIT_COLUMN]):
            names.update(x for x in pc.unique(b.table[SPLIT_COLUMN]).to_pylist() if x is not None)
        return sorted(names)

    def files_for(self, split: str | None) -> list[TierFile]:
        """Files that may hold rows of `split` (all files when the split is a column)."""
        if split is None:
            return list(self.files)
        return [f for f in self.files if f.split is None or f.split == split]

    # ---- reading -----------------------------------------------------------------------------
    def open_parquet(self, f: TierFile) -> pq.ParquetFile:
        """Open one file for reading (footer only); `close()` it when done."""
        try:
            # owns (and close() closes) its handle; the cached footer saves a read per open
            return pq.ParquetFile(f.path, filesystem=self.fs, metadata=f.metadata)
        except (OSError, pa.ArrowInvalid) as e:
            _raise_s3_fault(e, self.describe(f), self.s3)
            raise DataError(f"{self.describe(f)}: cannot read parquet ({_short(e)}); the file is truncated "
                            "or corrupt: re-copy or re-write it, or remove it from the tier") from None

    def describe(self, f: TierFile) -> str:
        return f"{self.uri.rstrip('/')}/{f.relpath}" if f.relpath else self.uri

    def read_row_group(self, f: TierFile, row_group: int, columns: Sequence[str], *, split: str | None = None,
                       cutout_ok_only: bool = False, pf: pq.ParquetFile | None = None) -> TierBatch:
        """Read one row group of `f` (only `columns`), filtered by split and cutout_ok."""
        pf = pf or self.open_parquet(f)
        need, filt_split, filt_ok = self._plan_columns(f, columns, split, cutout_ok_only)
        try:
            table = pf.read_row_group(row_group, columns=need)
        except (OSError, pa.ArrowInvalid) as e:
            _raise_s3_fault(e, self.describe(f), self.s3)
            raise DataError(f"{self.describe(f)} row group {row_group}: read failed ({_short(e)}); "
                            "the file is truncated or corrupt: re-copy or re-write it") from None
        start = sum(f.row_group_rows[:row_group])
        return self._filter(f, row_group, table, start, columns, filt_split, filt_ok, split)

    def iter_batches(self, columns: Sequence[str], *, split: str | None = None, cutout_ok_only: bool = False,
                     files: Sequence[TierFile] | None = None, batch_rows: int | None = None) -> Iterator[TierBatch]:
        """Yield TierBatches in file order: one per row group, or zero-copy slices of at most `batch_rows`
        rows of it (so that decoded float32 stays small when a writer made 100 MB row groups).
        Memory: one row group's requested columns at a time."""
        if batch_rows is not None and batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        for f in (files if files is not None else self.files_for(split)):
            if split is not None and f.split is not None and f.split != split:
                continue
            pf = self.open_parquet(f)
            try:
                for rg in range(f.num_row_groups):
                    b = self.read_row_group(f, rg, columns, split=split, cutout_ok_only=cutout_ok_only, pf=pf)
                    if batch_rows is None or b.table.num_rows <= batch_rows:
                        yield b
                        continue
                    for i in range(0, b.table.num_rows, batch_rows):
                        yield TierBatch(f, rg, b.table.slice(i, batch_rows), b.row_index[i:i + batch_rows])
            finally:
                pf.close()

    def read_columns(self, columns: Sequence[str], *, split: str | None = None,
                     cutout_ok_only: bool = False, threads: int = 8) -> pa.Table:
        """Read small columns (labels, ids, metadata: never stamps) of the whole tier into one table,
        with `region_split` and `_file` columns added. Files are read in parallel."""
        files = self.files_for(split)

        def one(f: TierFile) -> pa.Table:
            parts = [b for b in self.iter_batches(columns, split=split, cutout_ok_only=cutout_ok_only, files=[f])]
            tabs = [b.table.append_column("_row", pa.array(b.row_index, pa.int64())) for b in parts]
            t = pa.concat_tables(tabs) if tabs else pa.table({c: pa.array([], pa.null()) for c in columns})
            if SPLIT_COLUMN not in t.column_names:
                t = t.append_column(SPLIT_COLUMN, pa.array([f.split] * t.num_rows, pa.string()))
            return t.append_column("_file", pa.array([f.relpath] * t.num_rows, pa.string()))

        with ThreadPoolExecutor(max(1, min(threads, len(files) or 1))) as ex:
            tables = list(ex.map(one, files))
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return pa.table({c: [] for c in list(columns) + [SPLIT_COLUMN, "_row", "_file"]})
        return pa.concat_tables(tables, promote_options="permissive")

    # ---- internals ---------------------------------------------------------------------------
    def _plan_columns(self, f: TierFile, columns: Sequence[str], split: str | None, cutout_ok_only: bool):
        missing = [c for c in columns if c not in f.columns and not (c == SPLIT_COLUMN and f.split is not None)]
        if missing:
            raise DataError(f"{self.describe(f)} has no column(s) {', '.join(missing)} (it has: "
                            f"{', '.join(f.columns)}); is this a Phase 4c tier? See `dhs audit`")
        need = [c for c in columns if c in f.columns]
        filt_split = split is not None and f.split is None
        if filt_split:
            if SPLIT_COLUMN not in f.columns:
                raise DataError(f"{self.describe(f)}: no '{SPLIT_COLUMN}' column and no region_split=<name>/ "
                                "partition in its path, so its split is unknown")
            if SPLIT_COLUMN not in need:
                need.append(SPLIT_COLUMN)
        filt_ok = cutout_ok_only and CUTOUT_OK_COLUMN in f.columns
        if filt_ok and CUTOUT_OK_COLUMN not in need:
            need.append(CUTOUT_OK_COLUMN)
        return need, filt_split, filt_ok

    def _filter(self, f, rg, table, start, columns, filt_split, filt_ok, split) -> TierBatch:
        mask = None
        if filt_split:
            mask = pc.equal(table[SPLIT_COLUMN], split)
        if filt_ok:
            ok = pc.equal(table[CUTOUT_OK_COLUMN], 1)
            mask = ok if mask is None else pc.and_(mask, ok)
        idx = np.arange(start, start + table.num_rows, dtype=np.int64)
        if mask is not None:
            mask = pc.fill_null(mask, False)
            keep = mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else np.asarray(mask)
            keep = np.asarray(keep, dtype=bool)
            table = table.filter(mask)
            idx = idx[keep]
        drop = [c for c in table.column_names if c not in columns]
        if drop:
            table = table.drop_columns(drop)
        if SPLIT_COLUMN in columns and SPLIT_COLUMN not in table.column_names and f.split is not None:
            table = table.append_column(SPLIT_COLUMN, pa.array([f.split] * table.num_rows, pa.string()))
        return TierBatch(f, rg, table, idx)


def _raise_s3_fault(e: BaseException, where: str, s3: S3Options | None) -> None:
    """Raise the one-line fault (no credentials, no bucket, denied, endpoint silent) an S3 error stands
    for, instead of calling the file corrupt; return when `where` is local or the error is not one."""
    if is_s3(where):
        fault = s3_fault(e, where, s3 or S3Options.resolve())
        if fault is not None:
            raise fault from None


def _short(e: BaseException) -> str:
    """First line of an exception message, credentials redacted, for a one-line DataError."""
    return redact(str(e).strip().splitlines()[0][:300]) if str(e).strip() else type(e).__name__


def _split_from_path(rel: str) -> str | None:
    for part in rel.split("/"):
        if part.startswith(f"{SPLIT_COLUMN}="):
            return part.split("=", 1)[1]
    return None


_LINK_NOTES: set[str] = set()  # tiers whose skipped symlinks were already reported (said once per process)


def local_files(root: str, uri: str) -> list[pafs.FileInfo]:
    """Every file below local folder `root` without following symlinks: a link either leaves the tier
    (never read), loops inside it, or is a second name for a file or folder that is listed under its own
    name anyway (counted twice). The links skipped are said once on stderr. Tiers and cutout folders
    (`score.sources.CutoutFolderSource`) are both listed with it."""
    out: list[pafs.FileInfo] = []
    links: list[str] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_symlink():
                    links.append(e.path)
                elif e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    out.append(pafs.FileInfo(e.path, pafs.FileType.File, size=e.stat(follow_symlinks=False).st_size))
    if links and uri not in _LINK_NOTES:
        _LINK_NOTES.add(uri)
        print(f"note: {uri}: {len(links)} symlink(s) inside the tier not followed (a link leaves the tier, loops "
              f"or names a file twice; first: {posixpath.relpath(sorted(links)[0], root)})", file=sys.stderr)
    return out


def is_local_tier(path: str | Path) -> bool:
    """Whether local `path` is read as a tier (a file, or a folder with a parquet file below it) rather than as a
    folder of cutouts: the one rule of `dhs score --data` and `dhs simulate --hosts`."""
    p = Path(path)
    return not p.is_dir() or any(p.rglob("*.parquet"))


def cutout_files(folder: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files below local folder `folder` whose names end with one of `suffixes`, sorted, listed as tiers are
    (`local_files`: symlinks not followed). The one listing of a folder of cutouts: `dhs score --data FOLDER`,
    `dhs candidates`, `dhs simulate --hosts FOLDER`."""
    return sorted(Path(i.path) for i in local_files(str(folder), str(folder)) if i.path.endswith(suffixes))


def open_tier(uri: str, s3: S3Options | None = None, *, threads: int = 16) -> Tier:
    """List the parquet files under `uri` and read their footers (row counts, row groups, columns)."""
    uri = str(uri)
    fs, root = arrow_filesystem(uri, s3)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            hint = " / bucket / --s3-endpoint-url" if is_s3(uri) else ""
            raise MissingInputError(f"{uri} does not exist; check the path{hint}")
        if info.type == pafs.FileType.File:
            infos = [info]
            base = posixpath.dirname(root)
        elif isinstance(fs, pafs.LocalFileSystem):
            infos = local_files(root, uri)  # symlinks that leave the tier or loop are not followed
            base = root
        else:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
            base = root
    except DataError:
        raise
    except (OSError, pa.ArrowException) as e:
        _raise_s3_fault(e, uri, s3)
        hint = (" (is the S3 endpoint reachable? check --s3-endpoint-url, AWS_ENDPOINT_URL and credentials)"
                if is_s3(uri) else "")
        raise DataError(f"cannot list {uri}: {_short(e)}{hint}") from None
    paths = []
    for i in infos:
        if i.type != pafs.FileType.File or not i.path.endswith(".parquet"):
            continue
        rel = posixpath.relpath(i.path, base) if i.path != base else posixpath.basename(i.path)
        if any(p.startswith((".", "_")) for p in rel.split("/")):
            continue  # temp files of an interrupted writer, _SUCCESS markers, manifests
        paths.append((i.path, rel, i.size))
    if not paths:
        raise DataError(f"no parquet files under {uri}; expected <tier>/region_split=<split>/part-*.parquet")
    paths.sort(key=lambda p: p[1])

    def footer(p) -> TierFile:
        path, rel, size = p
        where = uri if path == root else f"{uri.rstrip('/')}/{rel}"  # (a tier given as one file: its own name)
        try:
            with fs.open_input_file(path) as fh:
                md = pq.ParquetFile(fh).metadata
        except (OSError, pa.ArrowInvalid) as e:
            _raise_s3_fault(e, where, s3)
            raise DataError(f"{where}: cannot read parquet footer ({_short(e)}); the file is "
                            "truncated or corrupt: re-copy or re-write it, or remove it from the tier") from None
        return TierFile(path=path, relpath=rel, split=_split_from_path(rel), num_rows=md.num_rows,
                        row_group_rows=[md.row_group(i).num_rows for i in range(md.num_row_groups)],
                        columns=list(md.schema.names), size_bytes=int(size or 0), metadata=md)

    with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as ex:
        files = list(ex.map(footer, paths))
    return Tier(uri=uri, fs=fs, root=root, files=files, s3=s3)
