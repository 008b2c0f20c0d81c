"""Tier reading: splits from partitions or a column, filters, bad files, bounded memory."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import DataError, MissingInputError
from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.stamps.tier import open_tier
from tierfactory import make_tier


def test_split_column_tier_reads_by_split(tmp_path):
    root = make_tier(tmp_path / "flat", rows_per_split=10, files_per_split=1, row_group_size=4, hive=False)
    tier = open_tier(str(root))
    assert not tier.split_from_partition and tier.splits() == ["test", "train", "val"]
    batches = list(tier.iter_batches(["stamp_id", "stamp_npz"], split="val"))
    ids = [i for b in batches for i in b.table["stamp_id"].to_pylist()]
    assert len(ids) == 10 and all(i.startswith("val-") for i in ids)
    assert batches[0].table.column_names == ["stamp_id", "stamp_npz"]  # the filter column is not added
    assert decode_tier_batch(batches[0]).labels is None  # no label column asked for


def test_hive_split_is_returned_when_asked_for(tiny_tier):
    b = next(open_tier(str(tiny_tier)).iter_batches(["stamp_id", "region_split"], split="test"))
    assert set(b.table["region_split"].to_pylist()) == {"test"}


def test_row_ids_and_where_name_the_file_row(tiny_tier):
    tier = open_tier(str(tiny_tier))
    b = list(tier.iter_batches(["is_control"], split="train"))[1]  # second row group of the first file
    assert b.row_ids()[0] == "region_split=train/part-train-00000.parquet:8"
    assert b.where(0) == "region_split=train/part-train-00000.parquet row 8"


def test_cutout_ok_filter_keeps_row_indices(tmp_path):
    root = make_tier(tmp_path / "t", rows_per_split=8, files_per_split=1, row_group_size=8, splits=("train",))
    path = next(root.rglob("*.parquet"))
    t = pq.read_table(path)
    ok = np.ones(8, np.int32)
    ok[[1, 5]] = 0
    pq.write_table(t.set_column(t.column_names.index("cutout_ok"), "cutout_ok", pa.array(ok)), path)
    b = next(open_tier(str(root)).iter_batches(["stamp_id"], cutout_ok_only=True))
    assert b.row_index.tolist() == [0, 2, 3, 4, 6, 7] and b.table.num_rows == 6


def test_truncated_parquet_is_a_one_line_data_error(tiny_tier, capsys):
    victim = sorted(tiny_tier.rglob("*.parquet"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as e:
        open_tier(str(tiny_tier))
    msg = str(e.value)
    assert victim.name in msg and "truncated or corrupt" in msg and "\n" not in msg
    assert main(["bench", "loader", str(tiny_tier), "--rows", "8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and victim.name in err and len(err.splitlines()) == 1


def test_missing_column_names_file_and_column(tiny_tier):
    tier = open_tier(str(tiny_tier))
    with pytest.raises(DataError, match=r"part-test-00000\.parquet has no column\(s\) ctrl_stamp_npz"):
        next(tier.iter_batches(["stamp_npz", "ctrl_stamp_npz"]))


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        open_tier(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no parquet files"):
        open_tier(str(tmp_path / "empty"))


def test_single_file_and_hidden_temp_files(tiny_tier):
    f = sorted(tiny_tier.rglob("*.parquet"))[0]
    (f.parent / ".part-x.parquet.tmp.parquet").write_bytes(b"half-written")  # an interrupted writer's temp
    assert open_tier(str(tiny_tier)).num_rows == 72
    assert open_tier(str(f)).num_rows == 12


def test_memory_stays_bounded_while_iterating(tmp_path):
    root = make_tier(tmp_path / "big", rows_per_split=240, files_per_split=1, row_group_size=8, splits=("train",))
    tier = open_tier(str(root))
    total_bytes = tier.files[0].size_bytes
    base = pa.total_allocated_bytes()
    peak = rows = 0
    for b in tier.iter_batches(["stamp_npz", "is_control"]):
        sb = decode_tier_batch(b)
        rows += len(sb.images)
        peak = max(peak, pa.total_allocated_bytes() - base)
    rg_bytes = total_bytes / tier.files[0].num_row_groups  # 30 row groups of 8 stamps
    assert rows == 240 and total_bytes > 10e6
    # a few row groups live at once (the batch being decoded, the previous one, the reader's buffer);
    # reading the whole file would hold 30
    assert peak < 6 * rg_bytes, f"arrow held {peak / 1e6:.1f} MB; a row group is {rg_bytes / 1e6:.2f} MB"


def test_read_columns_adds_split_file_and_row(tiny_tier):
    t = open_tier(str(tiny_tier)).read_columns(["is_control"], split="val")
    assert t.num_rows == 24 and set(t["region_split"].to_pylist()) == {"val"}
    assert pc.max(t["_row"]).as_py() == 11 and t["_file"][0].as_py().startswith("region_split=val/")


def _rewrite(path, column, values, type_):
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.column_names.index(column), column, pa.array(values, type_)), path,
                   row_group_size=3)


def test_bad_is_control_and_non_binary_stamps_name_the_row(tmp_path):
    root = make_tier(tmp_path / "t", rows_per_split=6, files_per_split=1, row_group_size=3, splits=("train",))
    path = next(root.rglob("*.parquet"))
    _rewrite(path, "is_control", [1, 0, 1, 0, 2, 1], pa.int32())
    tier = open_tier(str(root))
    first, second = list(tier.iter_batches(["stamp_npz", "is_control"]))
    assert decode_tier_batch(first).labels.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match=r"part-train-00000\.parquet row 4: is_control is 2; it must be 0"):
        decode_tier_batch(second)
    _rewrite(path, "stamp_npz", ["not bytes"] * 6, pa.string())
    with pytest.raises(DataError, match="column stamp_npz has type string, expected binary"):
        decode_tier_batch(next(open_tier(str(root)).iter_batches(["stamp_npz"])))


def test_batch_rows_slices_row_groups_without_losing_rows(tiny_tier):
    tier = open_tier(str(tiny_tier))
    whole = list(tier.iter_batches(["stamp_id"], split="train"))
    sliced = list(tier.iter_batches(["stamp_id"], split="train", batch_rows=3))
    assert [b.table.num_rows for b in sliced[:3]] == [3, 3, 2]  # 8-row groups
    assert [i for b in sliced for i in b.row_ids()] == [i for b in whole for i in b.row_ids()]
    assert [i for b in sliced for i in b.table["stamp_id"].to_pylist()] == \
        [i for b in whole for i in b.table["stamp_id"].to_pylist()]
