"""`dhs bench loader DATA`: the training input path (decode -> normalise -> torch tensor) timed; stamps/s and MB/s of turning DATA (a Phase 4c npz tier or a packed one)
into normalised float32 tensors, next to the same work done the naive way in the same run.

Naive (what the Phase 5 users ran): read each whole parquet file, `.as_py()` per row, `np.load`
(BytesIO) per stamp, stack the bands, per-stamp numpy median/MAD. Fast: `Tier.iter_batches` (only the
stamp and label columns, one row group at a time), the zero-copy codec (or the packed float16 read),
batched normalisation into reused buffers, `torch.from_numpy`. For a packed DATA the naive path runs
on the npz tier it was packed from (named in its manifest) when that is readable, since that is the
pipeline the packed format replaces.

Order: a warm-up pass of the fast path (untimed), then `--repeat` rounds of (naive pass, fast pass),
the best of each kept, so both timed passes see the same (warm) file cache. Wall-clock and CPU-time
rates are both reported: on a shared machine the CPU-time ones are the steadier per-core cost.
Dev box, per core: npz (deflate) 3.4-3.8x the naive loop, packed 59-65x decode-only and ~20x with the
median/MAD (benchmarks/RESULTS.md, loader).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.models.preprocess import PreprocessConfig, prepare_batch
from darkhaloscope.stamps.batch import decode_tier_batch, stamp_column
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.stamps.pack import read_manifest
from darkhaloscope.stamps.robust import normalize_median_mad, normalize_median_mad_one
from darkhaloscope.stamps.schema import (BANDS, LABEL_COLUMN, LABEL_SOURCE_COLUMN, NPZ_CUTOUT_KEY,
                                          PACKED_STAMP_COLUMN, STAMP_SIZE, label_from_is_control)
from darkhaloscope.stamps.tier import Tier, open_tier

MB = 1e6  # bytes per MB in every MB/s figure


def _norm_numpy(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    return normalize_median_mad(images, out=out)


def _norm_prepare_batch(images: np.ndarray, out: np.ndarray) -> torch.Tensor:
    return prepare_batch(torch.from_numpy(images), PreprocessConfig(), train=False)


def _norm_none(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    return images


# --norm choices: what the fast path does after decoding (the naive path always does per-stamp median/MAD)
# (what each does: `dhs bench loader --help`, train.commands.LOADER_NORMS)
NORMALISERS: dict[str, Callable[[np.ndarray, np.ndarray], object]] = {
    "numpy": _norm_numpy, "prepare_batch": _norm_prepare_batch, "none": _norm_none}


@dataclass
class PassResult:
    stamps: int
    bytes: int  # bytes of the stamp column read (npz blobs or float16 packed)
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process (all its threads): per-core cost, robust to a busy machine

    @property
    def stamps_per_s(self) -> float:
        return self.stamps / self.seconds if self.seconds > 0 else 0.0

    @property
    def stamps_per_cpu_s(self) -> float:
        return self.stamps / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Let torch's ops (the float16 cast) use at most `n` threads inside the block: per-core figures."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fast_pass(tier: Tier, rows: int, *, threads: int = 1, norm: str = "numpy") -> PassResult:
    """Decode + normalise at least `rows` rows (whole row groups) into float32 tensors."""
    fn = NORMALISERS[norm]
    col = stamp_column(tier.columns)
    label = LABEL_COLUMN if LABEL_COLUMN in tier.columns else LABEL_SOURCE_COLUMN
    max_rows = max((n for f in tier.files for n in f.row_group_rows), default=0)
    decoded = np.empty((max_rows, len(BANDS), STAMP_SIZE, STAMP_SIZE), np.float32)  # reused: no page faults
    normed = np.empty_like(decoded)
    n = nbytes = 0
    with torch_threads(threads):
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in tier.iter_batches([col, label]):
            k = batch.table.num_rows
            sb = decode_tier_batch(batch, on_error="mask", threads=threads, out=decoded[:k])
            x = fn(sb.images, normed[:k])
            tensor = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
            labels = torch.tensor(sb.labels)
            assert tensor.shape[0] == labels.shape[0] == k
            n += k
            nbytes += batch.table[col].nbytes
            if n >= rows:
                break
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return PassResult(n, nbytes, seconds, cpu)


def _naive_stamp(blob: bytes, packed: bool) -> np.ndarray:
    if packed:
        return np.frombuffer(blob, np.float16).reshape(len(BANDS), STAMP_SIZE, STAMP_SIZE).astype(np.float32)
    d = np.load(io.BytesIO(blob))
    if NPZ_CUTOUT_KEY in d.files:
        full = np.moveaxis(d[NPZ_CUTOUT_KEY], 2, 0)
        y0 = (full.shape[1] - STAMP_SIZE) // 2
        return full[:, y0:y0 + STAMP_SIZE, y0:y0 + STAMP_SIZE].astype(np.float32)
    return np.stack([d[f"image_{b}"] for b in BANDS]).astype(np.float32)


def naive_pass(tier: Tier, rows: int) -> PassResult:
    """The Phase 5 loop: whole-file read, per-row .as_py(), np.load, per-stamp median/MAD; >= `rows` rows."""
    col = stamp_column(tier.columns)
    packed = col == PACKED_STAMP_COLUMN
    label = LABEL_COLUMN if LABEL_COLUMN in tier.columns else LABEL_SOURCE_COLUMN
    n = nbytes = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for f in tier.files:
        table = pq.read_table(f.path, filesystem=tier.fs)
        stamps, labels = table[col], table[label]
        for i in range(table.num_rows):
            blob = stamps[i].as_py()
            value = labels[i].as_py()
            y = float(value) if label == LABEL_COLUMN else float(label_from_is_control([value])[0])
            x = torch.from_numpy(normalize_median_mad_one(_naive_stamp(blob, packed)))
            assert x.shape[0] == len(BANDS) and y in (0.0, 1.0)
            n += 1
            nbytes += len(blob)
        if n >= rows:
            break
    return PassResult(n, nbytes, time.perf_counter() - t0, time.process_time() - c0)


def naive_tier_for(tier: Tier, s3: S3Options | None, override: str | None) -> tuple[Tier, str]:
    """The tier the naive pass runs on, and a note saying which."""
    if override:
        return open_tier(override, s3), override
    if not tier.is_packed:
        return tier, tier.uri
    source = (read_manifest(tier) or {}).get("source")
    if source:
        try:
            return open_tier(source, s3), f"{source} (the npz tier DATA was packed from)"
        except DataError:
            pass
    return tier, f"{tier.uri} (packed rows read one by one: the npz source is not readable)"


def bench_loader(data: str, s3: S3Options | None = None, *, rows: int = 2048, threads: int = 1,
                 norm: str = "numpy", naive_data: str | None = None, naive: bool = True, repeat: int = 1) -> dict:
    """Run the naive and the fast pass on DATA `repeat` times each (alternating), keep the best of each;
    return the figures (see `dhs bench loader --json`)."""
    if norm not in NORMALISERS:
        raise UsageError(f"--norm {norm}: choose one of {', '.join(NORMALISERS)}")
    if rows < 1 or threads < 1 or repeat < 1:
        raise UsageError("--rows, --threads and --repeat must be >= 1")
    tier = open_tier(data, s3)
    fast_pass(tier, min(rows, 256), threads=threads, norm=norm)  # warm-up: imports, caches, allocator
    ntier, note = naive_tier_for(tier, s3, naive_data) if naive else (None, None)
    slow = fast = None
    for _ in range(repeat):
        if ntier is not None:
            slow = _best(slow, naive_pass(ntier, rows))
        fast = _best(fast, fast_pass(tier, rows, threads=threads, norm=norm))
    result = {"data": data, "format": "packed" if tier.is_packed else "npz", "threads": threads,
              "norm": norm, "repeat": repeat, "cpu_count": os.cpu_count(),
              "stamps": fast.stamps, "seconds": round(fast.seconds, 4), "stamps_per_s": fast.stamps_per_s,
              "mb_per_s": fast.mb_per_s, "stamps_per_cpu_s": fast.stamps_per_cpu_s}
    if slow is not None:
        result.update(naive_data=note, naive_stamps=slow.stamps, naive_seconds=round(slow.seconds, 4),
                      naive_stamps_per_s=slow.stamps_per_s, naive_mb_per_s=slow.mb_per_s,
                      naive_stamps_per_cpu_s=slow.stamps_per_cpu_s,
                      ratio=fast.stamps_per_s / slow.stamps_per_s if slow.stamps_per_s else None,
                      cpu_ratio=fast.stamps_per_cpu_s / slow.stamps_per_cpu_s if slow.stamps_per_cpu_s else None)
    return result


def _best(a: PassResult | None, b: PassResult) -> PassResult:
    """The faster pass (by wall clock; CPU time kept from the same pass)."""
    return b if a is None or b.stamps_per_s > a.stamps_per_s else a
