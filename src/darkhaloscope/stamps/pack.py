"""The packed training format: `dhs pack TIER OUT` converts a Phase 4c npz tier, once, into shards
that read at close to memory speed for many epochs.

Layout (same split layout as the source):

    OUT/region_split=<split>/part-<source file index>.parquet
        stamp_f16   fixed_size_binary(24576): float16 (3, 64, 64) C-order g/r/z nanomaggies
        label       int8 from `label_from_is_control` (1 injection, 0 control)
        stamp_id    carried when the source has it, else row_id = "<source relpath>:<row>"
        ...         every other small column of the source (not stamp_npz / ctrl_stamp_npz)
    OUT/_dhs_packed.json   manifest: source, rows per split and class, skipped rows, float16 report

Rows whose stamp fails to decode (corrupt npz, missing band, NaN/Inf) are skipped and counted, with the
first file/row named. Each shard is written to a temp file and renamed; the manifest is written last;
on failure the shards of this run are removed, so OUT is whole or empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope import __version__
from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_text
from darkhaloscope.stamps.batch import PACKED_STAMP_BYTES, decode_tier_batch
from darkhaloscope.stamps.float16 import RangeReport, to_float16
from darkhaloscope.stamps.provenance import PACKED_MANIFEST, read_tier_json
from darkhaloscope.stamps.fs import is_s3
from darkhaloscope.stamps.schema import (BANDS, CTRL_STAMP_COLUMN, LABEL_COLUMN, LABEL_SOURCE_COLUMN,
                                          PACKED_STAMP_COLUMN,
                                          SPLIT_COLUMN, STAMP_COLUMN, STAMP_SIZE, check_split_name)
from darkhaloscope.stamps.tier import Tier, TierFile

MANIFEST_NAME = PACKED_MANIFEST  # '_' prefix: open_tier skips it when listing parquet files
PACK_FORMAT = "darkhaloscope-packed"
PACK_FORMAT_VERSION = 1
COMPRESSIONS = {"none": ("none", None), "zstd": ("zstd", 1)}  # name -> (parquet codec, level)
BLOB_COLUMNS = (STAMP_COLUMN, CTRL_STAMP_COLUMN)  # never carried into a packed tier
DECODE_BATCH_ROWS = 1024  # stamps decoded at once (~50 MB float32) however large the source row groups


@dataclass
class PackOptions:
    clip: bool = False  # clip |x| > 65504 nmgy to the float16 maximum instead of refusing
    compression: str = "none"  # 'none' (fastest reads) or 'zstd' (level 1)
    row_group_rows: int = 1024  # rows per output row group
    workers: int = 2  # source files converted in parallel (threads: inflate releases the GIL)
    decode_threads: int = 1  # threads inside one file's decode


@dataclass
class FileResult:
    """What packing one source file produced."""

    shards: list[Path] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)  # (split, label) -> rows written
    skipped: Counter = field(default_factory=Counter)  # reason (digits replaced by N) -> rows
    first_skipped: str | None = None
    report: RangeReport = field(default_factory=RangeReport)


class _ShardWriter:
    """Buffers rows of one split and writes them in row groups of exactly `row_group_rows`."""

    def __init__(self, path: Path, stack: contextlib.ExitStack, opts: PackOptions):
        self.final = path
        self.tmp = stack.enter_context(atomic_path(path))
        self.opts = opts
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        stack.callback(self._close)

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        while self.buffered >= self.opts.row_group_rows:
            self._flush(self.opts.row_group_rows)

    def finish(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        self._close()

    def _flush(self, nrows: int) -> None:
        table = pa.concat_tables(self.buffer, promote_options="permissive")
        if self.writer is None:
            codec, level = COMPRESSIONS[self.opts.compression]
            small = [c for c in table.column_names if c != PACKED_STAMP_COLUMN]
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression=codec, compression_level=level,
                                           use_dictionary=small, write_statistics=small)
        self.writer.write_table(table.slice(0, nrows), row_group_size=nrows)
        rest = table.slice(nrows)
        self.buffer, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def packed_stamp_array(f16: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(N, 3, 64, 64) float16 -> fixed_size_binary(24576) arrow array, zero-copy."""
    f16 = np.ascontiguousarray(f16, dtype=np.float16)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(PACKED_STAMP_BYTES), len(f16),
                                               [None, pa.py_buffer(f16)])


def _carried_columns(f: TierFile) -> list[str]:
    return [c for c in f.columns if c not in BLOB_COLUMNS and c != LABEL_COLUMN and not c.endswith("_npz")]


def pack_file(tier: Tier, f: TierFile, index: int, out: Path, opts: PackOptions,
              advance: Callable[[int], None] = lambda n: None) -> FileResult:
    """Pack one source file into one shard per split it holds."""
    res = FileResult()
    carried = _carried_columns(f)
    writers: dict[str, _ShardWriter] = {}
    with contextlib.ExitStack() as stack:
        for batch in tier.iter_batches([STAMP_COLUMN] + carried, files=[f], batch_rows=DECODE_BATCH_ROWS):
            sb = decode_tier_batch(batch, on_error="mask", threads=opts.decode_threads)
            for i, reason in sorted(sb.errors.items()):
                res.skipped[re.sub(r"\d+", "N", reason)] += 1
                res.first_skipped = res.first_skipped or f"{sb.where[i]}: {reason}"
            keep = np.flatnonzero(sb.valid)
            f16 = to_float16(sb.images[keep], res.report, clip=opts.clip, where=lambda i: sb.where[keep[i]])
            t = batch.table.drop_columns([STAMP_COLUMN]).take(pa.array(keep))
            t = t.append_column(PACKED_STAMP_COLUMN, packed_stamp_array(f16))
            t = t.append_column(LABEL_COLUMN, pa.array(sb.labels[keep], pa.int8()))
            if "stamp_id" not in t.column_names:
                t = t.append_column("row_id", pa.array([f"{f.relpath}:{r}" for r in batch.row_index[keep]]))
            splits = [f.split] * t.num_rows if f.split is not None else t[SPLIT_COLUMN].to_pylist()
            if SPLIT_COLUMN in t.column_names:
                t = t.drop_columns([SPLIT_COLUMN])  # the split is the shard's partition folder
            for s in sorted(set(splits), key=str):
                mask = np.asarray([x == s for x in splits])
                if s is None:  # a row of a split-column tier with no split: it belongs to no shard
                    res.skipped["region_split is null"] += int(mask.sum())
                    first = int(np.flatnonzero(mask)[0])
                    res.first_skipped = res.first_skipped or f"{sb.where[keep[first]]}: region_split is null"
                    continue
                part = t.filter(pa.array(mask))
                if s not in writers:  # the split becomes a folder name: only a plain name may
                    check_split_name(s, f.relpath if f.split is not None else
                                     sb.where[keep[int(np.flatnonzero(mask)[0])]])
                    path = out / f"{SPLIT_COLUMN}={s}" / f"part-{index:05d}.parquet"
                    writers[s] = _ShardWriter(path, stack, opts)
                writers[s].add(part)
                labels = sb.labels[keep][mask]
                res.rows[(str(s), 0)] += int((labels == 0).sum())
                res.rows[(str(s), 1)] += int((labels == 1).sum())
            advance(batch.table.num_rows)
        for w in writers.values():
            w.finish()
            res.shards.append(w.final)
    return res


def check_destination(out: str, source: str | None = None) -> Path:
    """OUT must be a local folder that is missing or empty (a packed tier is never half overwritten), apart from
    the `source` tier (not it, inside it, nor holding it: the tier would gain its own packed copy as rows)."""
    if is_s3(out):
        raise UsageError(f"OUT {out}: dhs pack writes to a local folder; pack locally, then copy the folder up")
    path = Path(out)
    if source is not None and not is_s3(source):
        src, dst = Path(source).resolve(), path.resolve()
        if dst == src or src in dst.parents or dst in src.parents:
            raise UsageError(f"OUT {out} is the input tier {source}, inside it or holds it: its shards would become "
                             "rows of the tier; choose a folder outside it")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        unfinished = path.is_dir() and not (path / MANIFEST_NAME).exists()
        raise UsageError(f"OUT {out} exists and is not empty" + (f" (an unfinished pack: no {MANIFEST_NAME})"
                                                                  if unfinished else "")
                         + "; remove it or choose another folder")
    return path


def pack_tier(tier: Tier, out: str, opts: PackOptions | None = None,
              advance: Callable[[int], None] = lambda n: None, run: dict | None = None) -> dict:
    """Pack `tier` into `out`; return the manifest (also written to OUT/_dhs_packed.json)."""
    opts = opts or PackOptions()
    if opts.compression not in COMPRESSIONS:
        raise UsageError(f"--compression {opts.compression}: choose one of {', '.join(COMPRESSIONS)}")
    if opts.row_group_rows < 1:
        raise UsageError("--row-group-rows must be >= 1 (512-1024 reads fastest)")
    if opts.workers < 1 or opts.decode_threads < 1:
        raise UsageError(f"--workers {opts.workers}: files packed at once must be >= 1 (and decode threads >= 1)")
    if tier.is_packed:
        raise UsageError(f"{tier.uri} is already a packed tier ({PACKED_STAMP_COLUMN}); nothing to do")
    for col in (STAMP_COLUMN, LABEL_SOURCE_COLUMN):
        lacking = [f for f in tier.files if col not in f.columns]
        if lacking:
            raise DataError(f"{tier.describe(lacking[0])} has no '{col}' column (it has: "
                            f"{', '.join(lacking[0].columns)}); dhs pack needs a Phase 4c tier")
    unsplit = [f for f in tier.files if f.split is None and SPLIT_COLUMN not in f.columns]
    if unsplit:
        raise DataError(f"{tier.describe(unsplit[0])}: no region_split=<name>/ folder and no '{SPLIT_COLUMN}' "
                        "column, so its rows belong to no split; add one (the packed tier keeps the split layout)")
    path = check_destination(out, tier.uri)
    t0 = time.perf_counter()
    ex = ThreadPoolExecutor(max(1, opts.workers))
    futures = []
    try:
        futures = [ex.submit(pack_file, tier, f, k, path, opts, advance) for k, f in enumerate(tier.files)]
        results = [fut.result() for fut in futures]  # in order: the first failing file is the one reported
    except BaseException:
        for fut in futures:
            fut.cancel()
        ex.shutdown(wait=True)
        _remove_written(path, futures)
        raise
    finally:
        ex.shutdown(wait=True)
    if not any(sum(r.rows.values()) for r in results):
        first = next((r.first_skipped for r in results if r.first_skipped), "the tier has no rows")
        _remove_written(path, futures)
        raise DataError(f"{tier.uri}: no row could be packed (every stamp failed to decode); first: {first}")
    manifest = _manifest(tier, opts, results, time.perf_counter() - t0, run)
    atomic_write_text(path / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _remove_written(path: Path, futures) -> None:
    """Undo a failed run: delete the shards its finished files wrote, then empty split folders."""
    for fut in futures:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            for shard in fut.result().shards:
                shard.unlink(missing_ok=True)
    for d in path.glob(f"{SPLIT_COLUMN}=*"):
        with contextlib.suppress(OSError):
            d.rmdir()


def _manifest(tier: Tier, opts: PackOptions, results: list[FileResult], seconds: float, run: dict | None) -> dict:
    rows: Counter = Counter()
    skipped: Counter = Counter()
    report = RangeReport()
    for r in results:
        rows.update(r.rows)
        skipped.update(r.skipped)
        report.merge(r.report)
    first = next((r.first_skipped for r in results if r.first_skipped), None)
    per_split = {s: {"0": rows[(s, 0)], "1": rows[(s, 1)]} for s in sorted({k[0] for k in rows})}
    written = sum(rows.values())
    return {
        "format": PACK_FORMAT, "version": PACK_FORMAT_VERSION, "darkhaloscope_version": __version__,
        "source": tier.uri if is_s3(tier.uri) else os.path.abspath(tier.uri),
        "source_rows": tier.num_rows, "rows_written": written,
        "stamp": {"column": PACKED_STAMP_COLUMN, "dtype": "float16", "shape": [len(BANDS), STAMP_SIZE, STAMP_SIZE],
                  "bands": list(BANDS), "unit": "nanomaggies"},
        "label": {"column": LABEL_COLUMN, "meaning": "1 injection (is_control=0), 0 control (is_control=1)"},
        "rows": per_split,
        "skipped": {"rows": sum(skipped.values()), "first": first, "reasons": dict(skipped.most_common())},
        "float16": report.to_dict(), "clip": opts.clip,
        "compression": opts.compression, "row_group_rows": opts.row_group_rows,
        "shards": sorted(os.path.relpath(p, p.parents[1]) for r in results for p in r.shards),
        "seconds": round(seconds, 3), "run": run or {},
    }


def read_manifest(tier: Tier) -> dict | None:
    """The `_dhs_packed.json` of a packed tier (None when absent or unreadable)."""
    return read_tier_json(tier, MANIFEST_NAME)


def check_packed_complete(tier: Tier) -> None:
    """DataError unless a packed tier is whole: its `_dhs_packed.json` (written last by `dhs pack`) exists
    and lists exactly the shards present. An npz tier passes untouched."""
    if not tier.is_packed:
        return
    manifest = read_manifest(tier)
    if manifest is None:
        raise DataError(f"{tier.uri}: packed tier without its {MANIFEST_NAME} completion marker: `dhs pack` did "
                        "not finish (killed or failed); pack the source tier again into an empty folder")
    listed = set(manifest.get("shards") or [])
    present = {f.relpath for f in tier.files}
    if listed and present != listed and not tier.root.endswith(".parquet"):
        missing, extra = sorted(listed - present), sorted(present - listed)
        raise DataError(f"{tier.uri}: the shards differ from {MANIFEST_NAME} (missing: {', '.join(missing[:3]) or 'none'}"
                        f"; not listed: {', '.join(extra[:3]) or 'none'}); pack the source tier again")
