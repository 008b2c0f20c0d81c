"""Smoke tests of the core stamp layer (the stamps helper extends these)."""

import numpy as np

from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.stamps.counts import class_counts
from darkhaloscope.stamps.tier import open_tier


def test_open_hive_tier_by_split(tiny_tier):
    tier = open_tier(str(tiny_tier))
    assert tier.splits() == ["test", "train", "val"]
    assert tier.num_rows == 72
    rows = sum(b.table.num_rows for b in tier.iter_batches(["stamp_npz", "is_control"], split="val"))
    assert rows == 24
    b = next(tier.iter_batches(["stamp_npz", "is_control"], split="train"))
    sb = decode_tier_batch(b)
    assert sb.images.shape == (8, 3, 64, 64) and sb.images.dtype == np.float32
    assert set(sb.labels.tolist()) <= {0, 1}


def test_class_counts(tiny_tier):
    counts = class_counts(open_tier(str(tiny_tier)))
    assert counts == {s: {0: 12, 1: 12} for s in ("test", "train", "val")}




def test_class_counts_split_column_and_cutout_ok(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tierfactory import make_tier

    root = make_tier(tmp_path / "flat", rows_per_split=6, files_per_split=2, row_group_size=3, hive=False)
    path = sorted(root.glob("*.parquet"))[0]  # part-test-00000: 3 rows
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.column_names.index("cutout_ok"), "cutout_ok", pa.array([0, 1, 1], pa.int32())),
                   path)
    expected = {s: {0: 0, 1: 0} for s in ("test", "train", "val")}
    expected_all = {s: {0: 0, 1: 0} for s in ("test", "train", "val")}
    for p in root.glob("*.parquet"):
        for row in pq.read_table(p, columns=["region_split", "is_control", "cutout_ok"]).to_pylist():
            label = 0 if row["is_control"] == 1 else 1  # the documented mapping, by hand
            expected_all[row["region_split"]][label] += 1
            expected[row["region_split"]][label] += row["cutout_ok"] == 1
    assert class_counts(open_tier(str(root))) == expected
    assert class_counts(open_tier(str(root)), cutout_ok_only=False) == expected_all
    assert sum(expected["test"].values()) == 5
