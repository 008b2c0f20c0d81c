"""EpochPlan arithmetic, checked on row indices only (no data): exactly once, equal counts, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.train.data_plan import EpochPlan


def _batches(plan: EpochPlan, epoch, rank, workers, start, window, shuffle=True, seed=0) -> list[list[tuple]]:
    """The rank's batches t >= start as lists of (file, row group, row) ids, in the order the loop sees them:
    the same arithmetic as WindowReader (window rows -> permutation -> skip -> cut), on ids."""
    per_worker = []
    for w in range(workers):
        role = (w + start) % workers
        out, carry = [], []
        for win in plan.worker_windows(epoch, rank, role, workers, start, window, shuffle, seed):
            rows = [(f, rg, r) for f, rg, lo, hi in win.pieces for r in range(lo, hi)]
            if win.permutation is not None:
                rows = [rows[i] for i in win.permutation]
            rows = carry + rows[win.first_skip:]
            for size in win.batch_sizes:
                out.append(rows[:size])
                rows = rows[size:]
            carry = rows
        assert carry == []
        per_worker.append(out)
    merged = []  # in-order DataLoader: round-robin over the workers
    for i in range(max(map(len, per_worker))):
        merged += [p[i] for p in per_worker if i < len(p)]
    return merged


def _units(rng, n_files=4):
    return [(f, rg, int(rng.integers(1, 30))) for f in range(n_files) for rg in range(int(rng.integers(1, 4)))]


@pytest.mark.parametrize("case", range(40))
def test_every_row_once_equal_counts_and_exact_resume(case):
    rng = np.random.default_rng(case)
    units = _units(rng)
    ws, workers = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    batch, window = int(rng.integers(2, 12)), int(rng.integers(1, 40))
    plan = EpochPlan.from_unit_rows(units, ws, batch)
    all_rows = sorted((f, rg, r) for f, rg, n in units for r in range(n))
    seen, counts = [], set()
    for rank in range(ws):
        full = _batches(plan, 3, rank, workers, 0, window)
        counts.add(len(full))
        sizes = [len(b) for b in full]
        assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1
        seen += [r for b in full for r in b]
        k = int(rng.integers(0, len(full) + 1))
        assert _batches(plan, 3, rank, workers, k, window) == full[k:]  # resume after k batches
    assert counts == {plan.batches_per_rank}
    assert sorted(seen) == all_rows


def test_epochs_differ_and_shuffle_off_keeps_tier_order():
    plan = EpochPlan.from_unit_rows([(0, 0, 10), (0, 1, 10), (1, 0, 10)], 1, 4)
    e0, e1 = (_batches(plan, e, 0, 1, 0, 8) for e in (0, 1))
    assert e0 != e1 and sorted(map(tuple, e0)) != sorted(map(tuple, e1))
    flat = [r for b in _batches(plan, 0, 0, 1, 0, 8, shuffle=False) for r in b]
    assert flat == [(0, 0, r) for r in range(10)] + [(0, 1, r) for r in range(10)] + [(1, 0, r) for r in range(10)]


def test_sizes_and_max_rows():
    plan = EpochPlan.from_unit_rows([(0, 0, 50), (1, 0, 11)], 2, 8)
    assert plan.num_rows == 61 and plan.batches_per_rank == 4
    assert plan.rank_range(0) == (0, 30) and plan.rank_range(1) == (30, 61)
    assert plan.batch_sizes(0).tolist() == [8, 8, 7, 7] and plan.batch_sizes(1).tolist() == [8, 8, 8, 7]
    small = EpochPlan.from_unit_rows([(0, 0, 50), (1, 0, 11), (2, 0, 5)], 1, 8, max_rows=55)
    assert small.unit_rows.tolist() == [50, 5] and small.num_units == 2


def test_impossible_plans_are_clear_errors():
    with pytest.raises(DataError, match="no usable rows"):
        EpochPlan.from_unit_rows([], 1, 8)
    with pytest.raises(UsageError, match="cannot fill"):
        EpochPlan.from_unit_rows([(0, 0, 3)], 4, 8)
    with pytest.raises(UsageError, match="max_rows"):
        EpochPlan.from_unit_rows([(0, 0, 3)], 1, 8, max_rows=0)
