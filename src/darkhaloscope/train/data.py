"""The training input pipeline: a sharded, shuffled, resumable stream of decoded stamp batches.

    stream = StampStream("s3://bucket/tier/", "train", batch_size=256, seed=0, rank=r, world_size=ws,
                         cache_dir="/scratch/dhs-cache")
    loader = make_loader(stream, num_workers=8, pin_memory=True)
    for epoch in range(start_epoch, epochs):
        stream.set_epoch(epoch)
        for batch in loader:                   # {"image", "label", "row_id", "n_skipped"} (+ "weight")
            x = prepare_batch(batch["image"].to(dev), pcfg, train=True, generator=gen)
            ...                                # a checkpoint saved here stores stream.state_dict()

The epoch plan (pure arithmetic on row counts, no data read; see `EpochPlan`):
1. Units are the (file, row group) pieces of the split with their exact row counts after the split and
   cutout_ok filters (footers, or the small label/cutout_ok columns). They are shuffled with (seed, epoch).
2. The shuffled units are laid end to end as one row sequence of N rows, cut into `world_size`
   contiguous ranges of N // world_size or +1 rows. Every rank yields the same number of batches,
   n = ceil(ceil(N / world_size) / batch_size) (`len(stream)`): no DDP hang. A rank's rows are spread
   over its n batches as evenly as possible (sizes differ by at most one row, never above batch_size),
   so no row is dropped or repeated and there is no tiny last batch.
3. Rank batch t is made by DataLoader worker t % W. The rank's range is cut again into W contiguous
   pieces holding exactly the rows of each worker's batches. The in-order DataLoader asks workers
   round-robin, so the loop receives batches 0, 1, 2, ... in order.
4. Each worker passes its rows through a shuffle window of `shuffle_buffer` rows (rows of the window
   are decoded, permuted with (seed, epoch, rank, worker, window), emitted; memory per worker is about
   (shuffle_buffer + batch_size) decoded stamps plus one compressed row group).
Each row thus goes to exactly one (rank, worker) once per epoch, and every epoch has a new order.

Resume. The cursor is `{"epoch", "batches_done"}` where batches_done = batches the LOOP consumed this
epoch, identical on every rank (saving rank 0's is enough). Prefetching by workers does not matter:
`make_loader`'s DataLoader counts batches as it hands them to the loop, so `stream.state_dict()` taken
between steps is exact. Loops that iterate the stream without `make_loader` call
`mark_consumed(stream, n)`. After `load_state_dict`, the next iteration of that epoch recomputes the
plan, skips the consumed batches without reading them, and rotates worker roles so that the first
batch comes from worker 0: the remaining batches equal those of an uninterrupted run. Resuming needs the
same tier, batch_size, seed, shuffle, shuffle_buffer and world_size (checked when the saved dict has
its fingerprint). Store the whole `state_dict()`: with its num_workers, a resume under another worker
count is still exact (every worker then decodes the rest of that epoch, slower); with only epoch and
batches_done, resume with the same num_workers. An iteration starts at the cursor: 0 after set_epoch
(of a new epoch), the loaded batches_done after load_state_dict, where an abandoned iteration stopped,
and 0 again once the epoch was completed (a validation stream can be iterated every epoch as is).

Bad rows. Rows whose stamp cannot be decoded, or holds NaN/Inf, are dropped with on_error="skip" (a
warning once per file naming the first bad row; batch["n_skipped"] counts them; `stream.rows_skipped`
sums them in the main process): their batch is smaller, the batch count never changes. on_error="raise"
stops with a StampDecodeError naming the file and row. `num_rows()` counts rows before decoding.

Packed tiers (`stamp_f16`) come out as float16 (half the bytes to move), Phase 4c npz tiers as float32;
`prepare_batch` converts on the device. Exercised by `dhs train` and `benchmarks/bench_pipeline.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Iterator

import numpy as np
import pyarrow.compute as pc
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from darkhaloscope.errors import DataError, DHSError, UsageError
from darkhaloscope.stamps.fs import S3Options, is_s3
from darkhaloscope.stamps.schema import (CUTOUT_OK_COLUMN, HARD_NEGATIVE_COLUMNS, LABEL_COLUMN, LABEL_SOURCE_COLUMN,
                                          PACKED_STAMP_COLUMN, STAMP_COLUMN)
from darkhaloscope.stamps.tier import open_tier
from darkhaloscope.train.data_plan import EpochPlan
from darkhaloscope.train.data_reader import DecodedCache, WindowReader

log = logging.getLogger(__name__)
ON_ERROR_CHOICES = ("skip", "raise")
READ_THREADS_LOCAL, READ_THREADS_S3 = 4, 32  # parallel small-column reads when counting rows (s3: latency-bound)


class StampStream(IterableDataset):
    """Decoded (image, label, row_id) batches of one split: see the module docstring for the plan."""

    def __init__(self, data: str, split: str, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 shuffle_buffer: int = 4096, cutout_ok_only: bool = True, s3: S3Options | None = None,
                 cache_dir: str | None = None, rank: int = 0, world_size: int = 1, on_error: str = "skip",
                 max_rows: int | None = None, decode_threads: int = 1, mined: str = "", mined_repeat: int = 1,
                 confuser_weight: float = 1.0, weight_optional: bool = False, decoded_cache_mb: int = 0):
        if batch_size < 1 or shuffle_buffer < 1:
            raise UsageError(f"batch_size ({batch_size}) and shuffle_buffer ({shuffle_buffer}) must be >= 1")
        if seed < 0:
            raise UsageError(f"seed must be >= 0; got {seed}")
        if not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is outside 0..world_size-1 (world_size={world_size})")
        if on_error not in ON_ERROR_CHOICES:
            raise UsageError(f"on_error '{on_error}' is unknown; choose one of {', '.join(ON_ERROR_CHOICES)}")
        self.data, self.split, self.batch_size = str(data), split, int(batch_size)
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, int(seed), int(shuffle_buffer)
        self.cutout_ok_only, self.on_error, self.decode_threads = cutout_ok_only, on_error, int(decode_threads)
        self.rank, self.world_size = int(rank), int(world_size)
        self.confuser_weight = float(confuser_weight)
        self.weight_optional = weight_optional  # a split without look-alike columns reads unweighted (validation)
        self.cache_dir = str(cache_dir) if cache_dir and is_s3(self.data) else None  # local data: no cache
        self.decoded_cache_mb = int(decoded_cache_mb)  # decoded row groups kept across epochs (loading in this
        self._decoded = DecodedCache(self.decoded_cache_mb << 20) if self.decoded_cache_mb > 0 else None  # process)
        self.tier = open_tier(self.data, s3)
        if mined:  # the mined files become files of this split of the tier (self.tier is read everywhere)
            self.tier = dataclasses.replace(self.tier, files=self.tier.files + mined_files(
                mined, self.tier, split, mined_repeat, s3))
        self.files = self.tier.files_for(split)
        self._check_columns()
        self.plan = EpochPlan.from_unit_rows(self._unit_rows(), self.world_size, self.batch_size, max_rows)
        self.packed = all(PACKED_STAMP_COLUMN in f.columns for f in self.files)
        self.epoch = 0
        self.num_workers = 1  # DataLoader workers the plan is made for; set by make_loader
        self.rows_skipped = 0  # rows dropped for decode errors / NaN, as seen by the main process
        self._batches_done = 0
        self._resume_epoch: int | None = None  # epoch a loaded cursor belongs to
        self._plan_workers: int | None = None  # loader workers of a loaded cursor's plan (None: current)

    # ---- description -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self.plan.batches_per_rank

    def num_rows(self) -> int:
        """Rows per epoch of this split over all ranks: after the split / cutout_ok filters and max_rows,
        before decoding (rows that fail to decode are dropped later and counted in rows_skipped)."""
        return self.plan.num_rows

    # ---- epochs and the cursor -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next. Keeps the cursor if it was loaded for this epoch."""
        if self._resume_epoch != epoch:
            self._batches_done, self._plan_workers = 0, None
        self._resume_epoch = None
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """The cursor (plain types): epoch, batches the loop consumed, the loader workers this epoch's plan
        was made for, and a fingerprint of what the plan depends on (checked by load_state_dict)."""
        return {"epoch": self.epoch, "batches_done": self._batches_done,
                "num_workers": self._plan_workers or self.num_workers, "fingerprint": self._fingerprint()}

    def load_state_dict(self, d: dict) -> None:
        """Restore a cursor: the next iteration of d['epoch'] skips the d['batches_done'] consumed batches.

        Only epoch and batches_done are required. With the saved num_workers, the rest of that epoch is
        exact even under another worker count (slower: every worker then decodes the whole remainder)."""
        want = self._fingerprint()
        got = d.get("fingerprint") or want
        diff = [f"{k}={got.get(k)} (now {v})" for k, v in want.items() if got.get(k) != v]
        if diff:
            raise UsageError("the saved data cursor was made for a different plan: " + ", ".join(diff) +
                             "; resume with the same data and settings, or start a new run")
        done = int(d["batches_done"])
        if not 0 <= done <= len(self):
            raise UsageError(f"saved batches_done={done} is outside 0..{len(self)} batches per epoch")
        self.epoch, self._batches_done, self._resume_epoch = int(d["epoch"]), done, int(d["epoch"])
        self._plan_workers = int(d["num_workers"]) if d.get("num_workers") else None

    def _fingerprint(self) -> dict:
        return {"num_rows": self.plan.num_rows, "units": self.plan.num_units, "batch_size": self.batch_size,
                "seed": self.seed, "shuffle": self.shuffle, "shuffle_buffer": self.shuffle_buffer,
                "world_size": self.world_size}

    # ---- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker_id = (info.num_workers, info.id) if info is not None else (1, 0)
        if workers != self.num_workers:
            raise UsageError(f"the stream was set up for {self.num_workers} loader worker(s) but runs in "
                             f"{workers}; build the DataLoader with make_loader(stream, num_workers=...)")
        self._start()
        start, plan_workers = self._batches_done, self._plan_workers or workers
        if plan_workers == workers:  # worker 0 makes the first remaining batch, then round-robin
            yield from self._role_batches((worker_id + start) % workers, workers, start)
            return
        if worker_id == 0:
            log.warning("resuming epoch %d, planned for %d loader workers, with %d: every worker decodes the "
                        "rest of this epoch (exact, but slower until the next epoch)", self.epoch, plan_workers, workers)
        roles = [self._role_batches(r, plan_workers, start) for r in range(plan_workers)]
        for t in range(start, len(self)):
            batch = next(roles[t % plan_workers])
            if (t - start) % workers == worker_id:
                yield batch

    def _start(self) -> None:
        """An iteration starts at the cursor; once an epoch was completed it starts that epoch again."""
        if self._batches_done >= len(self):
            self._batches_done = 0

    def _role_batches(self, role: int, workers: int, start: int) -> Iterator[dict]:
        """The batches t = role, role + workers, ... (t >= start) of this rank, in order."""
        in_process = get_worker_info() is None  # a loader worker's copy lives one epoch: it keeps nothing
        reader = WindowReader(self.tier, self.files, split=self.split, cutout_ok_only=self.cutout_ok_only,
                              on_error=self.on_error, decode_threads=self.decode_threads, packed=self.packed,
                              cache_dir=self.cache_dir, confuser_weight=self.confuser_weight,
                              decoded=self._decoded if in_process else None)
        for window in self.plan.worker_windows(self.epoch, self.rank, role, workers, start, self.shuffle_buffer,
                                               self.shuffle, self.seed):
            yield from reader.batches(window)
        reader.finish()

    def __getstate__(self) -> dict:  # loader workers get the stream without the decoded stamps
        state = dict(self.__dict__)
        state["_decoded"] = None
        return state

    # ---- set-up helpers --------------------------------------------------------------------------
    def _check_columns(self) -> None:
        if not self.files:
            raise DataError(f"{self.data} has no files for split '{self.split}' (splits present: "
                            f"{', '.join(self.tier.splits()) or 'none'}); check --split and the tier")
        for f in self.files:
            if not ({PACKED_STAMP_COLUMN, STAMP_COLUMN} & set(f.columns)):
                raise DataError(f"{self.tier.describe(f)} has no stamp column (stamp_npz or {PACKED_STAMP_COLUMN});"
                                " is this a Phase 4c or packed tier?")
            if not ({LABEL_COLUMN, LABEL_SOURCE_COLUMN} & set(f.columns)):
                raise DataError(f"{self.tier.describe(f)} has no {LABEL_SOURCE_COLUMN} (or {LABEL_COLUMN}) column,"
                                " so its rows have no label; training needs it")
        if self.confuser_weight != 1.0 and not any(set(HARD_NEGATIVE_COLUMNS) & set(f.columns) for f in self.files):
            if not self.weight_optional:
                raise UsageError(f"confuser_weight={self.confuser_weight:g}, but no file of split '{self.split}' of "
                                 f"{self.data} has a {' or '.join(HARD_NEGATIVE_COLUMNS)} column, so no row would be weighted: "
                                 "simulate the tier with --confusers F, build it with `dhs catalog` (its pool column), "
                                 "or drop confuser_weight")
            self.confuser_weight = 1.0

    def _unit_rows(self) -> list[tuple[int, int, int]]:
        """(file index, row group, rows kept) for every row group of the split, in tier order: from the
        footers, or (split column / cutout_ok filter) from one small label column, never the stamps."""
        sizes = [np.asarray(f.row_group_rows, np.int64) for f in self.files]
        if any(f.split is None or (self.cutout_ok_only and CUTOUT_OK_COLUMN in f.columns) for f in self.files):
            label = LABEL_COLUMN if all(LABEL_COLUMN in f.columns for f in self.files) else LABEL_SOURCE_COLUMN
            table = self.tier.read_columns([label], split=self.split, cutout_ok_only=self.cutout_ok_only,
                                           threads=READ_THREADS_S3 if is_s3(self.data) else READ_THREADS_LOCAL)
            if table.num_rows == 0:
                raise DataError(f"{self.data}: split '{self.split}' has no rows with {CUTOUT_OK_COLUMN}=1"
                                if self.cutout_ok_only else f"{self.data}: split '{self.split}' has no rows")
            file_base = np.concatenate([[0], np.cumsum([f.num_rows for f in self.files])])
            unit_ends = np.concatenate([file_base[i] + np.cumsum(s) for i, s in enumerate(sizes)])
            index = {f.relpath: i for i, f in enumerate(self.files)}
            codes = pc.dictionary_encode(table["_file"]).combine_chunks()
            file_of_code = np.asarray([index[r] for r in codes.dictionary.to_pylist()], np.int64)
            rows = file_base[file_of_code[codes.indices.to_numpy()]] + table["_row"].to_numpy()
            kept = np.bincount(np.searchsorted(unit_ends, rows, side="right"), minlength=len(unit_ends))
            sizes = np.split(kept, np.cumsum([len(s) for s in sizes])[:-1])
        return [(i, rg, int(n)) for i, s in enumerate(sizes) for rg, n in enumerate(s) if n > 0]


def mark_consumed(stream: StampStream, n_batches: int = 1) -> None:
    """Record that the loop consumed n more batches (only needed when not iterating via make_loader)."""
    stream._batches_done += int(n_batches)


class StampLoader(DataLoader):
    """The DataLoader of `make_loader`: counts the batches it hands to the loop into the stream's cursor
    and turns errors raised in workers back into one-line messages."""

    def __iter__(self):
        stream: StampStream = self.dataset
        stream._start()  # before the workers get their copy of the stream
        it = super().__iter__()
        try:
            for batch in it:
                mark_consumed(stream, 1)
                stream.rows_skipped += batch["n_skipped"]
                yield batch
        except DHSError as e:
            raise _clean_worker_error(e) from None
        finally:  # stop the workers now on an error or an early break, not whenever the iterator is collected
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def _clean_worker_error(e: DHSError) -> DHSError:
    """DataLoader re-raises worker errors with the whole traceback in the message: keep the last line."""
    msg = str(e)
    if "Traceback" not in msg:
        return e
    last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
    return type(e)(re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip()))


def make_loader(stream: StampStream, num_workers: int = 0, pin_memory: bool = False, prefetch_factor: int = 4,
                multiprocessing_context: str | None = None) -> DataLoader:
    """An in-order DataLoader over `stream` (batch_size=None: the stream batches). Workers are not
    persistent, so each epoch's iterator sees `set_epoch` and the cursor. `multiprocessing_context`
    ('spawn', 'forkserver') starts workers without forking the parent, e.g. if an S3 client misbehaves
    after fork; the default is the platform's (fork on Linux)."""
    if num_workers < 0 or prefetch_factor < 1:
        raise UsageError(f"num_workers must be >= 0 and prefetch_factor >= 1; got {num_workers}, {prefetch_factor}")
    stream.num_workers = max(1, int(num_workers))
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": False,
             "multiprocessing_context": multiprocessing_context} if num_workers > 0 else {}
    return StampLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **extra)


def mined_files(mined: str, tier, split: str, repeat: int, s3: S3Options | None = None) -> list:
    """The files of a `dhs mine` tier as files of `split` of `tier`, each `repeat` times under its own relpath
    (`_mined<r>/...`), so every copy gets row ids of its own: its stamp_id (a hand-made tier may keep one; `dhs
    mine` renames it mined_stamp_id) or relpath:row, prefixed with `_mined<r>/`."""
    extra = open_tier(mined, s3)
    if type(extra.fs) is not type(tier.fs) or extra.is_packed != tier.is_packed:
        raise UsageError(f"mined={mined}: must be on the same kind of filesystem, in the same stamp format (npz or "
                         f"packed), as the training data {tier.uri}")
    return [dataclasses.replace(f, relpath=f"_mined{r}/{f.relpath}", split=split, id_prefix=f"_mined{r}/")
            for r in range(repeat) for f in extra.files]



def iter_batches(data: str, split: str, batch_size: int, n: int | None = None, *, s3=None, seed: int = 0,
                 shuffle: bool = True, max_rows: int | None = None, shuffle_buffer: int = 512):
    """Real batches {'image', 'label', ...} of a split through the training input pipeline, in-process:
    `n` of them (cycling epochs), or one epoch when n is None. Used by `dhs review`'s sanity checks and probes."""
    stream = StampStream(data, split, batch_size, shuffle=shuffle, seed=seed, s3=s3, shuffle_buffer=shuffle_buffer,
                         max_rows=max_rows)
    n = len(stream) if n is None else n
    loader, got, epoch = make_loader(stream, num_workers=0), 0, 0
    while got < n and len(stream):
        stream.set_epoch(epoch)
        for b in loader:
            yield b
            got += 1
            if got >= n:
                return
        epoch += 1
