"""StampStream: exactly once per epoch over ranks x workers, equal batch counts, shuffling, exact resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tierfactory import make_tier  # noqa: E402

from darkhaloscope.stamps.tier import open_tier  # noqa: E402
from darkhaloscope.train.data import StampStream, make_loader, mark_consumed  # noqa: E402


@pytest.fixture(scope="module")
def uneven_tier(tmp_path_factory) -> Path:
    """train split: 61 rows in 3 files of 21/20/20 rows, row groups of 6 (uneven units)."""
    root = tmp_path_factory.mktemp("uneven") / "tier"
    return make_tier(root, rows_per_split=61, files_per_split=3, row_group_size=6, splits=("train",), seed=3)


def _all_row_ids(tier: Path, split: str = "train") -> list[str]:
    t = open_tier(str(tier))
    return sorted(str(x) for x in t.read_columns(["stamp_id"], split=split)["stamp_id"].to_pylist())


def _epoch(stream: StampStream, workers: int) -> list[dict]:
    return list(make_loader(stream, num_workers=workers))


def test_each_row_exactly_once_over_2_ranks_x_2_workers(uneven_tier):
    seen, counts = [], []
    for rank in range(2):
        s = StampStream(str(uneven_tier), "train", 8, seed=5, shuffle_buffer=10, rank=rank, world_size=2)
        s.set_epoch(1)
        batches = _epoch(s, workers=2)
        counts.append(len(batches))
        assert len(batches) == len(s)
        assert all(1 <= len(b["row_id"]) <= 8 for b in batches)
        seen += [r for b in batches for r in b["row_id"]]
    assert counts[0] == counts[1] == 4  # ceil(ceil(61/2)/8): equal on both ranks, no DDP hang
    assert sorted(seen) == _all_row_ids(uneven_tier)  # each row once: no duplicate, none dropped


@pytest.mark.parametrize("world_size", [1, 3])
def test_equal_batch_counts_and_no_row_lost(uneven_tier, world_size):
    seen, lens = [], set()
    for rank in range(world_size):
        s = StampStream(str(uneven_tier), "train", 5, shuffle_buffer=7, rank=rank, world_size=world_size)
        batches = _epoch(s, workers=0)
        lens.add(len(batches))
        sizes = [len(b["label"]) for b in batches]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 5
        seen += [r for b in batches for r in b["row_id"]]
    assert len(lens) == 1
    assert sorted(seen) == _all_row_ids(uneven_tier)


def test_batch_content_and_types(tiny_tier):
    s = StampStream(str(tiny_tier), "val", 6, shuffle=False)
    assert s.num_rows() == 24 and len(s) == 4
    b = next(iter(make_loader(s)))
    assert b["image"].shape == (6, 3, 64, 64) and b["image"].dtype == torch.float32
    assert b["label"].dtype == torch.float32 and set(b["label"].tolist()) <= {0.0, 1.0}
    assert b["row_id"] == [f"val-{i:06d}" for i in range(24, 30)]  # stamp_id column, tier order
    assert b["n_skipped"] == 0


def test_deterministic_for_seed_and_fresh_each_epoch(uneven_tier):
    def order(seed, epoch, workers):
        s = StampStream(str(uneven_tier), "train", 8, seed=seed, shuffle_buffer=16)
        s.set_epoch(epoch)
        return [r for b in _epoch(s, workers) for r in b["row_id"]]

    e0 = order(0, 0, 0)
    assert e0 == order(0, 0, 0)
    assert e0 != order(0, 1, 0) and sorted(e0) == sorted(order(0, 1, 0))  # new order, same rows
    assert e0 != order(1, 0, 0)


@pytest.mark.parametrize("workers,consumed", [(0, 3), (2, 3), (2, 4)])
def test_resume_mid_epoch_gives_the_remaining_batches(uneven_tier, workers, consumed):
    def stream():
        s = StampStream(str(uneven_tier), "train", 4, seed=2, shuffle_buffer=9, rank=1, world_size=2)
        s.set_epoch(2)
        return s

    full = [b["row_id"] for b in _epoch(stream(), workers)]
    first = stream()
    loader = make_loader(first, num_workers=workers)
    got = []
    for b in loader:
        got.append(b["row_id"])
        if len(got) == consumed:
            break  # the run is killed here: the checkpoint holds the cursor
    state = first.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == consumed
    resumed = StampStream(str(uneven_tier), "train", 4, seed=2, shuffle_buffer=9, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop calls set_epoch as usual: the loaded cursor is kept
    rest = [b["row_id"] for b in make_loader(resumed, num_workers=workers)]
    assert got + rest == full
    assert resumed.state_dict()["batches_done"] == len(full)
    resumed.set_epoch(3)
    assert resumed.state_dict()["batches_done"] == 0


def test_a_completed_epoch_starts_again_and_an_abandoned_one_continues(tiny_tier):
    s = StampStream(str(tiny_tier), "val", 5, shuffle=False)
    first = [b["row_id"] for b in make_loader(s, num_workers=2)]
    assert [b["row_id"] for b in make_loader(s, num_workers=2)] == first  # e.g. validation every epoch
    it = iter(make_loader(s, num_workers=2))
    next(it), next(it)
    del it
    assert [b["row_id"] for b in make_loader(s, num_workers=2)] == first[2:]


def test_mark_consumed_for_direct_iteration(tiny_tier):
    s = StampStream(str(tiny_tier), "train", 8, shuffle=False)
    it = iter(s)
    first = next(it)["row_id"]
    mark_consumed(s, 1)
    s2 = StampStream(str(tiny_tier), "train", 8, shuffle=False)
    s2.load_state_dict(s.state_dict())
    assert [b["row_id"] for b in s2] == [b["row_id"] for b in list(StampStream(str(tiny_tier), "train", 8,
                                                                                  shuffle=False))[1:]]
    assert first[0] == "train-000000"


def test_bounded_memory_tier_larger_than_shuffle_buffer(uneven_tier, monkeypatch):
    """The decoded-row buffer never exceeds shuffle_buffer rows, and what is carried over stays < 1 batch."""
    from darkhaloscope.train.data_reader import WindowReader

    reserved, carried = [], []
    real_reserve, real_gather = WindowReader._reserve, WindowReader._gather

    def reserve(self, n):
        reserved.append(n)
        real_reserve(self, n)

    def gather(self, idx):
        rows = real_gather(self, idx)
        carried.append(len(rows[0]))
        return rows

    monkeypatch.setattr(WindowReader, "_reserve", reserve)
    monkeypatch.setattr(WindowReader, "_gather", gather)
    s = StampStream(str(uneven_tier), "train", 4, shuffle_buffer=8)
    rows = [r for b in s for r in b["row_id"]]
    assert sorted(rows) == _all_row_ids(uneven_tier)
    assert max(reserved) == 8 and len(reserved) == 8  # 61 rows -> 8 windows of <= 8 decoded rows
    assert max(carried) <= 4


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("before,after", [(2, 0), (0, 2), (2, 3)])
def test_resume_with_another_worker_count_is_still_exact(uneven_tier, before, after):
    def stream():
        s = StampStream(str(uneven_tier), "train", 4, seed=7, shuffle_buffer=9)
        s.set_epoch(1)
        return s

    first = stream()
    full = [b["row_id"] for b in make_loader(first, num_workers=before)]
    interrupted = stream()
    got = []
    for b in make_loader(interrupted, num_workers=before):
        got.append(b["row_id"])
        if len(got) == 5:
            break
    resumed = stream()
    resumed.load_state_dict(interrupted.state_dict())
    rest = [b["row_id"] for b in make_loader(resumed, num_workers=after)]
    assert got + rest == full


def test_fewer_batches_than_workers(tiny_tier):
    s = StampStream(str(tiny_tier), "test", 64)  # 24 rows: one batch, worker 1 has nothing to do
    batches = list(make_loader(s, num_workers=2))
    assert len(batches) == len(s) == 1 and len(batches[0]["row_id"]) == 24
    assert s.state_dict()["batches_done"] == 1


def _epochs(stream: StampStream, n: int) -> list[list[dict]]:
    out = []
    for e in range(n):
        stream.set_epoch(e)
        out.append(_epoch(stream, workers=0))
    return out


def test_decoded_cache_gives_the_same_batches_and_decodes_once(uneven_tier, monkeypatch):
    from darkhaloscope.train import data_reader

    plain = _epochs(StampStream(str(uneven_tier), "train", 8, seed=2, shuffle_buffer=10), 3)
    calls = []
    decode = data_reader.WindowReader._decode
    monkeypatch.setattr(data_reader.WindowReader, "_decode", lambda self, part, out: calls.append(len(out)) or
                        decode(self, part, out))
    cached = StampStream(str(uneven_tier), "train", 8, seed=2, shuffle_buffer=10, decoded_cache_mb=64)
    got = _epochs(cached, 3)
    for a_epoch, b_epoch in zip(plain, got):
        assert len(a_epoch) == len(b_epoch)
        for a, b in zip(a_epoch, b_epoch):
            assert a["row_id"] == b["row_id"] and torch.equal(a["image"], b["image"])
            assert torch.equal(a["label"], b["label"]) and a["n_skipped"] == b["n_skipped"]
    assert sum(calls) == 61 and len(cached._decoded.units) == 12  # every row decoded once, in 12 row groups
    assert plain[0][0]["row_id"] != plain[1][0]["row_id"]  # epochs are still shuffled differently


def test_decoded_cache_keeps_within_its_budget_and_decodes_the_rest_each_epoch(uneven_tier):
    one_group = 6 * 3 * 64 * 64 * 4  # bytes of a 6-row row group of float32 stamps
    s = StampStream(str(uneven_tier), "train", 8, seed=2, shuffle_buffer=10, decoded_cache_mb=1)
    s._decoded.limit = 2 * one_group + 1000
    got = _epochs(s, 2)
    assert len(s._decoded.units) == 2 and s._decoded.used <= s._decoded.limit
    assert sorted(r for b in got[1] for r in b["row_id"]) == _all_row_ids(uneven_tier)


def test_loader_workers_get_the_stream_without_its_decoded_stamps(uneven_tier):
    import pickle

    s = StampStream(str(uneven_tier), "train", 8, seed=2, decoded_cache_mb=64)
    _epochs(s, 1)
    assert s._decoded.units and pickle.loads(pickle.dumps(s))._decoded is None
