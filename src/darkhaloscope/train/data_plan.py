"""The epoch plan of the training input pipeline: which rows go to which rank, worker and batch.

Pure arithmetic on per-row-group row counts: no data are read, so every rank and worker computes the
same plan independently, and a resumed run skips consumed batches without reading them. The rules
(exactly once per epoch, equal batch counts per rank, worker round-robin, shuffle windows) are
described in `darkhaloscope.train.data`; `StampStream` is the only user. Tested by
`tests/train/test_data_plan.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from darkhaloscope.errors import DataError, UsageError


@dataclass
class Window:
    """One shuffle window of a worker: the row slices to read, their permutation, and what to emit."""

    pieces: list[tuple[int, int, int, int]]  # (file index, row group, lo, hi): kept rows [lo, hi) of that unit
    permutation: np.ndarray | None  # order of the window's rows (None: no shuffling)
    first_skip: int  # rows at the start of the permuted window already consumed (resume)
    batch_sizes: list[int] = field(default_factory=list)  # batches completed by this window, in order


@dataclass
class EpochPlan:
    unit_file: np.ndarray  # (U,) file index of each unit (a row group holding >= 1 usable row)
    unit_row_group: np.ndarray  # (U,) row group inside that file
    unit_rows: np.ndarray  # (U,) usable rows of the unit (after the split / cutout_ok filters and max_rows)
    world_size: int  # DDP ranks
    batch_size: int  # largest batch, rows

    @classmethod
    def from_unit_rows(cls, units: Sequence[tuple[int, int, int]], world_size: int, batch_size: int,
                       max_rows: int | None = None) -> "EpochPlan":
        """units: (file index, row group, usable rows) in tier order. max_rows keeps the first rows only."""
        arr = np.asarray(list(units), dtype=np.int64).reshape(-1, 3)
        rows = arr[:, 2].copy()
        if max_rows is not None:
            if max_rows < 1:
                raise UsageError(f"max_rows must be >= 1; got {max_rows}")
            before = np.concatenate([[0], np.cumsum(rows)[:-1]])
            rows = np.clip(max_rows - before, 0, rows)
        keep = rows > 0
        plan = cls(arr[keep, 0], arr[keep, 1], rows[keep], int(world_size), int(batch_size))
        plan._check()
        return plan

    def _check(self) -> None:
        n_rows = self.num_rows
        if n_rows == 0:
            raise DataError("the split has no usable rows (after the region_split and cutout_ok filters); "
                            "check the split name and the tier with `dhs audit`")
        if n_rows // self.world_size < self.batches_per_rank:
            raise UsageError(f"{n_rows} rows cannot fill {self.batches_per_rank} batch(es) on each of "
                             f"{self.world_size} ranks; use fewer ranks or a batch_size >= 2")

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return int(self.unit_rows.sum())

    @property
    def num_units(self) -> int:
        return int(len(self.unit_rows))

    @property
    def batches_per_rank(self) -> int:
        """n = ceil(ceil(N / world_size) / batch_size), the same on every rank."""
        return math.ceil(math.ceil(self.num_rows / self.world_size) / self.batch_size)

    def rank_range(self, rank: int) -> tuple[int, int]:
        """Rank's [start, end) in the epoch's row sequence: N // world_size rows, +1 for the first N % ws."""
        n, ws = self.num_rows, self.world_size
        return n * rank // ws, n * (rank + 1) // ws

    def batch_sizes(self, rank: int) -> np.ndarray:
        """Sizes of the rank's batches: its rows spread evenly, differing by at most one row."""
        a, b = self.rank_range(rank)
        n = self.batches_per_rank
        base, extra = divmod(b - a, n)
        sizes = np.full(n, base, np.int64)
        sizes[:extra] += 1
        return sizes

    def unit_order(self, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
        if not shuffle:
            return np.arange(self.num_units)
        return np.random.default_rng([seed, epoch, 0x5EED]).permutation(self.num_units)

    # ---- one worker's share ------------------------------------------------------------------------
    def worker_windows(self, epoch: int, rank: int, role: int, workers: int, start: int, window_rows: int,
                       shuffle: bool, seed: int) -> Iterator[Window]:
        """Windows of worker `role` of `rank`, which makes rank batches t = role, role + workers, ...,
        resuming after the first `start` batches of the rank have been consumed."""
        sizes = self.batch_sizes(rank)
        per_role = [int(sizes[r::workers].sum()) for r in range(workers)]
        role_sizes = sizes[role::workers]
        done = len(range(role, start, workers))
        remaining = role_sizes[done:]
        if len(remaining) == 0:
            return
        a = self.rank_range(rank)[0] + sum(per_role[:role])
        length = per_role[role]
        skip = int(role_sizes[:done].sum())
        ends = skip + np.cumsum(remaining)  # row offset (from a) at which each remaining batch is complete
        order = self.unit_order(epoch, seed, shuffle)
        cum = np.concatenate([[0], np.cumsum(self.unit_rows[order])])
        k0 = skip // window_rows
        emitted = 0
        for k in range(k0, math.ceil(length / window_rows)):
            lo, hi = k * window_rows, min((k + 1) * window_rows, length)
            perm = np.random.default_rng([seed, epoch, rank, workers, role, k]).permutation(hi - lo) if shuffle else None
            n_done = int(np.searchsorted(ends, hi, side="right"))
            yield Window(self._pieces(order, cum, a + lo, a + hi), perm, skip - lo if k == k0 else 0,
                         [int(s) for s in remaining[emitted:n_done]])
            emitted = n_done

    def _pieces(self, order: np.ndarray, cum: np.ndarray, start: int, end: int) -> list[tuple[int, int, int, int]]:
        """Row slices of units covering [start, end) of the epoch's row sequence."""
        out = []
        j = int(np.searchsorted(cum, start, side="right")) - 1
        while j < len(order) and cum[j] < end:
            u = order[j]
            lo, hi = max(start, cum[j]) - cum[j], min(end, cum[j + 1]) - cum[j]
            if hi > lo:
                out.append((int(self.unit_file[u]), int(self.unit_row_group[u]), int(lo), int(hi)))
            j += 1
        return out
