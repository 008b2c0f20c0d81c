"""StampStream inputs: npz vs packed tiers, s3 + local cache, split column, cutout_ok, bad rows, errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tierfactory import make_tier  # noqa: E402

from darkhaloscope.errors import DataError, StampDecodeError, UsageError  # noqa: E402
from darkhaloscope.stamps.codec import encode_stamp  # noqa: E402
from darkhaloscope.stamps.fs import S3Options  # noqa: E402
from darkhaloscope.stamps.pack import pack_tier  # noqa: E402
from darkhaloscope.stamps.tier import open_tier  # noqa: E402
from darkhaloscope.train.data import StampStream, make_loader  # noqa: E402
from s3util import upload_folder  # noqa: E402




def _rows(stream: StampStream, workers: int = 0) -> dict[str, tuple[np.ndarray, float]]:
    return {rid: (b["image"][i].numpy(), float(b["label"][i]))
            for b in make_loader(stream, num_workers=workers) for i, rid in enumerate(b["row_id"])}


def test_packed_tier_streams_float16_with_the_same_rows_and_labels(tiny_tier, tmp_path):
    packed = tmp_path / "packed"
    pack_tier(open_tier(str(tiny_tier)), str(packed))
    npz = _rows(StampStream(str(tiny_tier), "train", 7, seed=1))
    s = StampStream(str(packed), "train", 7, seed=1)
    assert s.packed and s.num_rows() == 24
    b = next(iter(make_loader(s)))
    assert b["image"].dtype == torch.float16 and b["label"].dtype == torch.float32
    s.set_epoch(0)  # the abandoned iteration above would otherwise be continued
    f16 = _rows(s, workers=2)
    assert set(f16) == set(npz)  # packed tiers carry stamp_id: the same row ids
    for rid, (img, label) in npz.items():
        assert f16[rid][1] == label  # labels from the packed `label` column == is_control mapping
        np.testing.assert_array_equal(f16[rid][0], img.astype(np.float16))


def test_s3_tier_with_local_cache(tiny_tier, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "tiers/tiny")
    s3 = S3Options(endpoint_url=endpoint)
    cache = tmp_path / "cache"
    remote = _rows(StampStream(uri, "val", 8, s3=s3, cache_dir=str(cache)), workers=2)
    cached = sorted(p.relative_to(cache).parts[1:] for p in cache.rglob("*.parquet"))
    assert cached == [("region_split=val", "part-val-00000.parquet"), ("region_split=val", "part-val-00001.parquet")]
    local = _rows(StampStream(str(tiny_tier), "val", 8))
    assert remote.keys() == local.keys()
    assert all(np.array_equal(remote[k][0], local[k][0]) for k in local)
    streamed = _rows(StampStream(uri, "val", 8, s3=s3))  # no cache: row groups read from s3 directly
    assert all(np.array_equal(streamed[k][0], local[k][0]) for k in local) and streamed.keys() == local.keys()
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}
    _rows(StampStream(uri, "val", 8, s3=s3, cache_dir=str(cache)))  # second epoch: read from the cache
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")} == before
    stale = sorted(cache.rglob("*.parquet"))[0]
    stale.write_bytes(b"half a file")  # e.g. copied in by hand: wrong size -> downloaded again
    again = _rows(StampStream(uri, "val", 8, s3=s3, cache_dir=str(cache), decode_threads=2))
    assert all(np.array_equal(again[k][0], local[k][0]) for k in local) and stale.stat().st_size > 100


def _damage(path: Path, corrupt=(), nan=(), not_ok=()) -> None:
    t = pq.read_table(path)
    stamps = t["stamp_npz"].to_pylist()
    nan_img = np.zeros((3, 64, 64), np.float32)
    nan_img[1, 5, 5] = np.nan
    for i in corrupt:
        stamps[i] = b"not an npz"
    for i in nan:
        stamps[i] = encode_stamp(nan_img)
    ok = np.ones(t.num_rows, np.int32)
    ok[list(not_ok)] = 0
    t = t.set_column(t.column_names.index("stamp_npz"), "stamp_npz", pa.array(stamps, pa.binary()))
    t = t.set_column(t.column_names.index("cutout_ok"), "cutout_ok", pa.array(ok))
    pq.write_table(t, path, row_group_size=5)


@pytest.fixture
def flat_damaged(tmp_path) -> Path:
    """Split as a column (no hive folders); train file 0 has a corrupt npz (row 2), a NaN stamp (row 7) and
    two cutout_ok=0 rows (3, 4); row groups of 5."""
    root = make_tier(tmp_path / "flat", rows_per_split=30, files_per_split=2, row_group_size=5, hive=False)
    _damage(root / "part-train-00000.parquet", corrupt=[2], nan=[7], not_ok=[3, 4])
    return root


def test_split_column_cutout_filter_and_skipped_rows(flat_damaged, caplog):
    s = StampStream(str(flat_damaged), "train", 4, seed=0, shuffle_buffer=6)
    assert s.num_rows() == 28 and len(s) == 7  # 30 - 2 cutout_ok=0 rows, counted before decoding
    with caplog.at_level(logging.WARNING, logger="darkhaloscope.train.data"):
        batches = list(make_loader(s))
    assert len(batches) == 7  # the batch count never changes
    ids = [r for b in batches for r in b["row_id"]]
    assert len(ids) == 26 and sum(b["n_skipped"] for b in batches) == 2 and s.rows_skipped == 2
    assert {"train-000002", "train-000007", "train-000003", "train-000004"}.isdisjoint(ids)
    assert all(i.startswith("train-") for i in ids)  # only this split's rows
    assert "part-train-00000.parquet" in caplog.text and "skipping" in caplog.text
    assert all(torch.isfinite(b["image"]).all() for b in batches)


@pytest.mark.parametrize("workers", [0, 2])
def test_on_error_raise_names_file_and_row_on_one_line(flat_damaged, workers):
    s = StampStream(str(flat_damaged), "train", 4, shuffle=False, on_error="raise")
    with pytest.raises(StampDecodeError) as e:
        list(make_loader(s, num_workers=workers))
    msg = str(e.value)
    assert "\n" not in msg and "part-train-00000.parquet row 2" in msg and "on_error=skip" in msg


def test_max_rows_keeps_the_first_rows_of_the_split(tiny_tier):
    s = StampStream(str(tiny_tier), "train", 4, max_rows=10, seed=3)
    assert s.num_rows() == 10 and len(s) == 3
    ids = sorted(r for b in make_loader(s) for r in b["row_id"])
    assert ids == [f"train-{i:06d}" for i in range(10)]


def test_bad_arguments_and_data_are_clear_errors(tiny_tier, tmp_path):
    with pytest.raises(DataError, match="no files for split 'dev'.*splits present: test, train, val"):
        StampStream(str(tiny_tier), "dev", 4)
    with pytest.raises(UsageError, match="on_error"):
        StampStream(str(tiny_tier), "train", 4, on_error="ignore")
    with pytest.raises(UsageError, match="rank 2"):
        StampStream(str(tiny_tier), "train", 4, rank=2, world_size=2)
    with pytest.raises(UsageError, match="cannot fill"):
        StampStream(str(tiny_tier), "train", 4, world_size=30)
    nolabel = tmp_path / "nolabel"
    nolabel.mkdir()
    t = pq.read_table(next(tiny_tier.rglob("*.parquet"))).drop_columns(["is_control"])
    pq.write_table(t, nolabel / "part-0.parquet")
    with pytest.raises(DataError, match="part-0.parquet has no is_control"):
        StampStream(str(nolabel), None, 4)


def test_plain_dataloader_with_workers_is_refused(tiny_tier):
    s = StampStream(str(tiny_tier), "train", 4)
    it = iter(torch.utils.data.DataLoader(s, batch_size=None, num_workers=2))
    try:
        with pytest.raises(UsageError, match="make_loader"):
            next(it)
    finally:
        it._shutdown_workers()  # else the failed iterator's workers are joined at gc, 5 s each


def test_cursor_from_another_plan_is_refused(tiny_tier):
    a = StampStream(str(tiny_tier), "train", 4, seed=1)
    b = StampStream(str(tiny_tier), "train", 6, seed=1)
    with pytest.raises(UsageError, match="batch_size=4 \\(now 6\\)"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(UsageError, match="outside"):
        a.load_state_dict({"epoch": 0, "batches_done": 99})


def test_a_split_without_usable_rows_is_a_data_error(tmp_path):
    root = make_tier(tmp_path / "t", rows_per_split=8, files_per_split=1, splits=("train",))
    _damage(next(root.rglob("*.parquet")), not_ok=range(8))
    with pytest.raises(DataError, match="split 'train' has no rows with cutout_ok=1"):
        StampStream(str(root), "train", 4)
    assert StampStream(str(root), "train", 4, cutout_ok_only=False).num_rows() == 8
