"""One loader worker's reading for `StampStream`: read row groups, decode into a reused window buffer,
gather batches in the window's shuffled order, drop bad rows, and cache s3 files locally.

Memory per worker: one window buffer of `shuffle_buffer` decoded stamps (48 KiB each as float32, 24 KiB
as packed float16), at most one batch of rows carried into the next window, and one compressed row
group. Each decoded row is copied once more, into its batch. See `darkhaloscope.train.data`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

from darkhaloscope.errors import DataError, StampDecodeError
from darkhaloscope.fileio import atomic_path
from darkhaloscope.stamps.batch import decode_tier_batch, hard_negatives_of, labels_of, stamp_column
from darkhaloscope.stamps.schema import (BANDS, HARD_NEGATIVE_COLUMNS, LABEL_COLUMN, LABEL_SOURCE_COLUMN,
                                          PACKED_STAMP_COLUMN, STAMP_SIZE)
from darkhaloscope.stamps.tier import Tier, TierBatch, TierFile
from darkhaloscope.train.data_plan import Window

log = logging.getLogger("darkhaloscope.train.data")
ID_COLUMNS = ("stamp_id", "row_id")  # row ids: the first of these the tier has (packed tiers carry row_id),
# else "relpath:row" of the file read
CACHE_CHUNK_BYTES = 8 << 20  # copy size when filling the local cache
F16_EXPONENT_MASK = 0x7C00  # float16 bits: exponent all ones = Inf or NaN


class DecodedCache:
    """Decoded row groups kept across epochs by the process that trains when it also loads (num_workers 0): a
    split that fits in `limit_bytes` is read and decoded once, not once per epoch (the demo's 8,400 train stamps:
    413 MB, ~5 s of decoding per epoch on the 2-core box). Batches are the same arrays either way (tested)."""

    def __init__(self, limit_bytes: int):
        self.limit, self.used = int(limit_bytes), 0
        self.units: dict[tuple[int, int], tuple] = {}

    def room_for(self, nbytes: int) -> bool:
        return self.used + nbytes <= self.limit

    def put(self, key: tuple[int, int], unit: tuple) -> None:
        self.units[key] = unit
        self.used += sum(a.nbytes for a in unit if a.dtype != object) + 64 * len(unit[2])


class WindowReader:
    """Decodes the windows of one worker and yields its batches: {"image", "label", "row_id", "n_skipped"},
    plus "weight" (per-row loss weight: `confuser_weight` for negatives that carry a look-alike, else 1) when
    confuser_weight != 1."""

    def __init__(self, tier: Tier, files: list[TierFile], *, split: str | None, cutout_ok_only: bool,
                 on_error: str, decode_threads: int, packed: bool, cache_dir: str | None,
                 confuser_weight: float = 1.0, decoded: DecodedCache | None = None):
        self.tier, self.files, self.split, self.cutout_ok_only = tier, files, split, cutout_ok_only
        self.decoded = decoded  # decoded row groups kept across epochs (None: decode each time)
        self.confuser_weight = float(confuser_weight)
        self.on_error, self.decode_threads, self.cache_dir = on_error, decode_threads, cache_dir
        self.dtype = np.float16 if packed else np.float32  # packed: half the bytes to move; cast on the device
        self.images = np.zeros((0, len(BANDS), STAMP_SIZE, STAMP_SIZE), self.dtype)  # window buffer, reused
        self.labels = np.zeros(0, np.float32)
        self.weights = np.zeros(0, np.float32)
        self.ids = np.zeros(0, object)
        self.valid = np.zeros(0, bool)
        self.carry: tuple | None = None  # rows of the last window not yet emitted (< one batch)
        self.unit: tuple[tuple[int, int], TierBatch, pq.ParquetFile] | None = None
        self.warned: set[str] = set()

    def batches(self, window: Window) -> Iterator[dict]:
        """Decode the rows of `window` into the buffer, then emit the batches it completes, in shuffled order."""
        n = sum(hi - lo for _, _, lo, hi in window.pieces)
        self._reserve(n)
        pos = 0
        for piece in window.pieces:
            pos += self._decode_piece(*piece, at=pos)
        order = window.permutation if window.permutation is not None else np.arange(n)
        order = order[window.first_skip:]
        cursor = 0
        for size in window.batch_sizes:
            take = size - (len(self.carry[0]) if self.carry else 0)
            if take < 0 or cursor + take > len(order):
                raise AssertionError("epoch plan and window rows disagree")  # a plan bug, never the data
            rows = self._gather(order[cursor:cursor + take])
            cursor += take
            yield _to_batch(*rows, weighted=self.confuser_weight != 1.0)
        if cursor < len(order):
            self.carry = self._gather(order[cursor:])

    def finish(self) -> None:
        if self.carry:
            raise AssertionError(f"{len(self.carry[0])} planned rows were not emitted")
        self._close_unit()

    # ---- internals ---------------------------------------------------------------------------------
    def _gather(self, idx: np.ndarray) -> tuple:
        rows = (self.images[idx], self.labels[idx], self.ids[idx], self.valid[idx], self.weights[idx])
        if self.carry:
            rows = tuple(np.concatenate([c, r]) for c, r in zip(self.carry, rows))
            self.carry = None
        return rows

    def _reserve(self, n: int) -> None:
        if len(self.images) < n:
            self.images = np.empty((n, len(BANDS), STAMP_SIZE, STAMP_SIZE), self.dtype)
            self.labels, self.ids, self.valid = np.empty(n, np.float32), np.empty(n, object), np.empty(n, bool)
            self.weights = np.empty(n, np.float32)

    def _decode_piece(self, file_index: int, row_group: int, lo: int, hi: int, *, at: int) -> int:
        m, key = hi - lo, (file_index, row_group)
        unit = self.decoded.units.get(key) if self.decoded is not None else None
        if unit is None and self.decoded is not None:
            n = self._unit(file_index, row_group).table.num_rows
            if self.decoded.room_for(n * self.images[0].nbytes):  # the whole row group, once for every epoch
                unit = (np.empty((n, *self.images.shape[1:]), self.dtype), np.empty(n, np.float32),
                        np.empty(n, object), np.empty(n, bool), np.empty(n, np.float32))
                self._decode_rows(file_index, row_group, 0, n, unit)
                self.decoded.put(key, unit)
        if unit is not None:
            if hi > len(unit[0]):
                raise AssertionError("epoch plan and decoded row group disagree")  # a plan bug, never the data
            for dst, src in zip((self.images, self.labels, self.ids, self.valid, self.weights), unit):
                dst[at:at + m] = src[lo:hi]
            return m
        self._decode_rows(file_index, row_group, lo, hi, tuple(a[at:at + m] for a in (
            self.images, self.labels, self.ids, self.valid, self.weights)))
        return m

    def _decode_rows(self, file_index: int, row_group: int, lo: int, hi: int, out: tuple) -> None:
        """Rows lo:hi of a row group into `out` = (images, labels, ids, valid, weights), each of hi - lo rows."""
        images, labels, ids_out, valid, weights = out
        ub = self._unit(file_index, row_group)
        if hi > ub.table.num_rows:
            raise DataError(f"{self.tier.describe(ub.file)} row group {row_group} now has {ub.table.num_rows} "
                            "usable rows, fewer than when the stream was planned; was the tier rewritten? Restart")
        part = TierBatch(ub.file, row_group, ub.table.slice(lo, hi - lo), ub.row_index[lo:hi])
        errors = self._decode(part, images)
        valid[:] = True
        valid[list(errors)] = False
        try:
            labels[:] = labels_of(part.table)
        except (DataError, TypeError) as e:
            raise DataError(f"{self.tier.describe(ub.file)} row group {row_group}: {e}") from None
        weights[:] = 1.0
        hard = hard_negatives_of(part.table) if self.confuser_weight != 1.0 else None
        if hard is not None:
            weights[hard & (labels == 0)] = self.confuser_weight
        id_col = next((c for c in ID_COLUMNS if c in part.table.column_names), None)
        ids = part.table[id_col].to_pylist() if id_col else part.row_ids()
        ids_out[:] = [f"{ub.file.id_prefix}{i}" for i in ids] if ub.file.id_prefix else ids
        if errors and ub.file.relpath not in self.warned:
            self.warned.add(ub.file.relpath)
            i = min(errors)
            log.warning("%s: skipping undecodable or non-finite row(s) (first: %s: %s); `dhs audit` lists them "
                        "all", self.tier.describe(ub.file), part.where(i), errors[i])

    def _decode(self, part: TierBatch, out: np.ndarray) -> dict[int, str]:
        """decode_tier_batch into `out`; float16 finiteness is checked on the exponent bits (6x numpy's)."""
        bits_check = out.dtype == np.float16 and PACKED_STAMP_COLUMN in part.table.column_names
        try:
            sb = decode_tier_batch(part, on_error="mask" if self.on_error == "skip" else "raise",
                                   threads=self.decode_threads, out=out, check_finite=not bits_check)
        except StampDecodeError as e:
            raise StampDecodeError(f"{e}; train with on_error=skip to drop such rows (counted)") from None
        errors = dict(sb.errors)
        if bits_check:
            bad = (out.view(np.uint16).reshape(len(out), -1) & F16_EXPONENT_MASK).max(axis=1) == F16_EXPONENT_MASK
            for i in np.flatnonzero(bad):
                errors.setdefault(int(i), "NaN/Inf pixels")
            if errors and self.on_error == "raise":
                i = min(errors)
                raise StampDecodeError(f"{errors[i]}; train with on_error=skip to drop such rows (counted)",
                                       where=part.where(i))
        return errors

    def _unit(self, file_index: int, row_group: int) -> TierBatch:
        """The compressed rows of one (file, row group), read once while its pieces are decoded."""
        if self.unit is not None and self.unit[0] == (file_index, row_group):
            return self.unit[1]
        self._close_unit()
        f = self.files[file_index]
        pf = pq.ParquetFile(self._local_copy(f)) if self.cache_dir else self.tier.open_parquet(f)
        label = LABEL_COLUMN if LABEL_COLUMN in f.columns else LABEL_SOURCE_COLUMN
        cols = [stamp_column(f.columns), label] + [c for c in ID_COLUMNS if c in f.columns][:1]
        if self.confuser_weight != 1.0:
            cols += [c for c in HARD_NEGATIVE_COLUMNS if c in f.columns]
        ub = self.tier.read_row_group(f, row_group, cols, split=self.split, cutout_ok_only=self.cutout_ok_only, pf=pf)
        self.unit = ((file_index, row_group), ub, pf)
        return ub

    def _close_unit(self) -> None:
        if self.unit is not None:
            self.unit[2].close()
            self.unit = None

    def _local_copy(self, f: TierFile) -> str:
        """Download an s3 file once into cache_dir (atomically: temp file + rename) and return its path."""
        key = hashlib.sha1(self.tier.uri.rstrip("/").encode()).hexdigest()[:12]
        dst = Path(self.cache_dir) / key / f.relpath
        if dst.is_file() and (not f.size_bytes or dst.stat().st_size == f.size_bytes):
            return str(dst)
        try:
            with atomic_path(dst) as tmp, self.tier.fs.open_input_stream(f.path) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CACHE_CHUNK_BYTES)
        except OSError as e:
            raise DataError(f"{self.tier.describe(f)}: download into the cache {dst} failed ({e}); check the "
                            "endpoint / credentials and the free space in cache_dir") from None
        return str(dst)


def _to_batch(images: np.ndarray, labels: np.ndarray, ids: np.ndarray, valid: np.ndarray, weights: np.ndarray,
              *, weighted: bool) -> dict:
    n_bad = int(len(valid) - valid.sum())
    if n_bad:
        images, labels, ids, weights = images[valid], labels[valid], ids[valid], weights[valid]
    batch = {"image": torch.from_numpy(images), "label": torch.from_numpy(labels),
             "row_id": [str(i) for i in ids], "n_skipped": n_bad}
    if weighted:
        batch["weight"] = torch.from_numpy(weights)
    return batch
