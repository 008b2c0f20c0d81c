"""`dhs score`: run a trained checkpoint over any tier or cutout folder and write the scores file (one row per
stamp: score, logit, label, ids, every metadata column, img_* statistics). Every metric and figure is then
computed from that file by `dhs evaluate`.

Streaming with bounded memory: one row group is decoded (in a background thread) while the previous one
is scored. Inference uses the training preprocessing (`models.preprocess.prepare_batch`, train=False) and
autocast (bfloat16, or float16 where unsupported) on GPU. `--shard K/N` splits the data between machines;
under torchrun every rank scores its share and rank 0 merges the parts into OUT.
Exercise: `dhs score --checkpoint CKPT --data DATA --out scores.parquet`; `dhs bench score`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch

from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.fileio import clean_temps
from darkhaloscope.score.config import ScoreConfig
from darkhaloscope.score.imagestats import image_statistics
from darkhaloscope.score.scoresfile import (CALIBRATED_COLUMN, CALIBRATED_LOGIT_COLUMN, LOGIT_COLUMN, ROW_ID_COLUMN,
                                            SCORE_COLUMN)
from darkhaloscope.score.sources import SourceBatch, open_source
from darkhaloscope.score.writer import merge_parts, weights_epoch, write_scores
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.stamps.schema import LABEL_COLUMN


@dataclass
class ScoreSummary:
    out: Path
    rows: int  # rows written (all ranks under torchrun)
    failed: int  # rows whose stamp did not decode (score null)
    seconds: float
    note: str | None = None  # a caveat to print (a committee member whose bands were compared by count only)
    is_main: bool = True  # False on the other ranks of a torchrun: only rank 0 reports

    @property
    def stamps_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def infer(model, preprocess, images: np.ndarray, device: torch.device, *, amp: bool = True, batch_size: int = 512,
          meta: np.ndarray | None = None) -> np.ndarray:
    """Logits (N,) float64 of (N, 3, 64, 64) nanomaggy stamps with the training preprocessing."""
    return infer_many([model], preprocess, images, device, amp=amp, batch_size=batch_size, meta=meta)[0]


def infer_many(models: list, preprocess, images: np.ndarray, device: torch.device, *, amp: bool = True,
               batch_size: int = 512, meta: np.ndarray | None = None) -> np.ndarray:
    """Logits (M, N) float64 of M models on the same stamps, preprocessed once per batch (a committee)."""
    from darkhaloscope.models.preprocess import prepare_batch

    out = np.empty((len(models), len(images)), np.float64)
    use_amp = amp and device.type == "cuda"
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=use_amp):
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(images[s:s + batch_size]).to(device, non_blocking=True)
            x = prepare_batch(x, preprocess, train=False)
            m = None if meta is None else torch.from_numpy(meta[s:s + batch_size]).to(device)
            for i, model in enumerate(models):
                logits = model(x) if m is None else model(x, m)
                out[i, s:s + len(x)] = logits.float().reshape(-1).cpu().numpy()
    return out


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run `it` one or two items ahead in a background thread (decode overlaps inference)."""
    with ThreadPoolExecutor(1) as pool:
        queue = []
        for _ in range(depth):
            queue.append(pool.submit(next, it, None))
        while True:
            item = queue.pop(0).result()
            if item is None:
                return
            queue.append(pool.submit(next, it, None))
            yield item


def coalesce(batches: Iterator[SourceBatch], min_rows: int) -> Iterator[SourceBatch]:
    """Merge consecutive small batches (row groups of ~100 rows are common) into batches of >= min_rows
    rows, so the model always runs on full batches. Rows keep their order; unknown labels stay unknown."""
    pending: list[SourceBatch] = []
    rows = 0
    for b in batches:
        pending.append(b)
        rows += len(b.valid)
        if rows >= min_rows:
            yield _merge(pending)
            pending, rows = [], 0
    if pending:
        yield _merge(pending)


def _merge(parts: list[SourceBatch]) -> SourceBatch:
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.valid) for p in parts])
    errors = {int(o + i): msg for o, p in zip(offsets, parts) for i, msg in p.errors.items()}
    labels = None
    if any(p.labels is not None for p in parts):
        labels = np.ma.concatenate([np.ma.masked_all(len(p.valid), np.int8) if p.labels is None
                                    else np.ma.asarray(p.labels, np.int8) for p in parts])
    return SourceBatch(np.concatenate([p.images for p in parts]), np.concatenate([p.valid for p in parts]), errors,
                       labels, pa.concat_tables([p.meta for p in parts], promote_options="permissive"),
                       [f for p in parts for f in p.source_file], np.concatenate([p.source_row for p in parts]))


def _meta_array(b: SourceBatch, columns: tuple[str, ...]) -> np.ndarray | None:
    if not columns:
        return None
    missing = [c for c in columns if c not in b.meta.column_names]
    if missing:
        raise DataError(f"{b.source_file[0]}: the model takes metadata column(s) {', '.join(missing)}, absent here")
    return np.stack([b.meta[c].cast(pa.float32()).fill_null(0).to_numpy(zero_copy_only=False) for c in columns], 1)


def _labels_array(labels, n: int) -> pa.Array:
    if labels is None:
        return pa.nulls(n, pa.int8())
    mask = np.ma.getmaskarray(labels) if np.ma.isMaskedArray(labels) else None
    return pa.array(np.ma.getdata(labels).astype(np.int8), pa.int8(), mask=mask)


def _masked(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, np.float32), mask=~valid)


def batch_table(b: SourceBatch, logits: np.ndarray, stats: bool, calibrated: np.ndarray | None = None,
                extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """The scores-file rows of one source batch (invalid stamps: null score and logit, reason kept).
    `calibrated`: logit / T -> `logit_calibrated` and `score_calibrated`; `extra`: more float columns
    (a committee's member logits and spread)."""
    logits = np.where(b.valid, logits, 0.0)  # invalid rows are masked below
    prob = sigmoid(logits)
    ids = (b.meta["stamp_id"].cast(pa.string()) if "stamp_id" in b.meta.column_names
           else pa.array([f"{f}:{r}" for f, r in zip(b.source_file, b.source_row)], pa.string()))
    cols = {SCORE_COLUMN: _masked(prob, b.valid)}
    if calibrated is not None:
        cols[CALIBRATED_COLUMN] = _masked(sigmoid(np.where(b.valid, calibrated, 0.0)), b.valid)
    cols[LOGIT_COLUMN] = _masked(logits, b.valid)
    if calibrated is not None:
        cols[CALIBRATED_LOGIT_COLUMN] = _masked(calibrated, b.valid)
    cols |= {k: _masked(v, b.valid) for k, v in (extra or {}).items()}
    cols |= {LABEL_COLUMN: _labels_array(b.labels, len(prob)), ROW_ID_COLUMN: ids,
             "source_file": pa.array(b.source_file, pa.string()), "source_row": pa.array(b.source_row, pa.int64()),
             "decode_error": pa.array([b.errors.get(i) for i in range(len(prob))], pa.string())}
    for name in b.meta.column_names:
        if name not in cols:
            cols[name] = b.meta[name]
    if stats:
        for k, v in image_statistics(b.images).items():
            cols[k] = _masked(np.where(b.valid, v, np.nan), b.valid)
    return pa.table(cols)


def score_data(checkpoint: str | list[str], data: str, out: str | Path, cfg: ScoreConfig, *,
               s3: S3Options | None = None, split: str | None = None, shard: tuple[int, int] = (0, 1),
               progress: bool = True, run: dict | None = None, combine: str = "logit") -> ScoreSummary:
    """Score every stamp of `data` with `checkpoint` (or a committee: a list of them, see
    score.committee) into `out` (see the module docstring)."""
    from darkhaloscope.common.progress import Progress
    from darkhaloscope.runtime import distributed
    from darkhaloscope.score import committee

    checkpoints = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if combine not in committee.COMBINE:
        raise UsageError(f"--combine {combine!r}: choose one of {', '.join(committee.COMBINE)}")
    ranked = combine == "rank" and len(checkpoints) > 1
    if ranked and shard[1] > 1:
        raise UsageError("--combine rank ranks the rows scored together, so one shard's ranks differ from the "
                         "whole set's; score without --shard, or use --combine logit")
    out = Path(out)
    if out.is_dir():  # refused before any work (it used to fail after scoring everything)
        raise UsageError(f"--out {out} is a folder; name the scores file to write, e.g. {out / 'scores.parquet'}")
    clean_temps(out.parent, name=out.name)  # a killed run's half-written scores
    info, device = distributed.setup(cfg.device)
    try:
        k, n = shard
        shard = (k * info.world_size + info.rank, n * info.world_size)
        part = out if info.world_size == 1 else out.with_name(f"{out.stem}.rank{info.rank:03d}{out.suffix}")
        members, note = committee.load_members(checkpoints, device, s3)
        models, pre, meta = [m.model for m in members], members[0].preprocess, members[0].meta
        meta_cols = tuple(getattr(models[0], "meta_columns", ()) or ())
        temps = [m.temperature for m in members]
        source = open_source(data, s3, split=split, cutout_ok_only=cfg.cutout_ok_only, shard=shard)
        provenance = {"data": data, "checkpoint": members[0].checkpoint if len(members) == 1 else
                      [m.checkpoint for m in members], "split": split, "shard": list(shard),
                      "model": meta.get("model"), "epoch": weights_epoch(meta), "step": meta.get("step"),
                      "calibration": (meta.get("calibration") or None) if len(members) == 1 else None,
                      "confuser_weights": sorted({m.confuser_weight for m in members}),
                      "committee": {"combine": combine, "members": [m.describe() for m in members]}
                      if len(members) > 1 else None, "run": run or {},
                      "duplicates_merged": getattr(source, "duplicates", None) or None}
        note = "; ".join(n for n in (note, getattr(source, "note", None)) if n) or None
        t0 = time.perf_counter()
        with Progress(source.num_rows, "score", unit="stamps", enabled=progress and info.is_main) as bar:
            def tables():
                for b in coalesce(_prefetch(source.batches(threads=cfg.decode_threads)), cfg.batch_size):
                    z = infer_many(models, pre, b.images, device, amp=cfg.amp, batch_size=cfg.batch_size,
                                   meta=_meta_array(b, meta_cols))
                    bar.advance(z.shape[1])
                    if len(models) == 1:
                        yield batch_table(b, z[0], cfg.image_stats, None if temps[0] is None else z[0] / temps[0])
                        continue
                    cols = committee.committee_columns(z, temps)
                    yield batch_table(b, cols.pop(LOGIT_COLUMN), cfg.image_stats,
                                      cols.pop(CALIBRATED_LOGIT_COLUMN, None), cols)
            rows, failed = write_scores(tables(), part, provenance)
        if ranked and info.world_size == 1:
            committee.apply_rank_average(out)
        seconds = time.perf_counter() - t0
        if info.world_size > 1:
            counts = distributed.all_gather_objects((rows, failed), info)  # also the barrier before the merge
            rows, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
            if info.is_main:
                merge_parts([out.with_name(f"{out.stem}.rank{r:03d}{out.suffix}") for r in range(info.world_size)], out,
                            shard=(k, n))
                if ranked:
                    committee.apply_rank_average(out)
        return ScoreSummary(out, rows, failed, seconds, note, is_main=info.is_main)
    finally:
        distributed.teardown(info)
