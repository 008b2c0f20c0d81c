"""`dhs pack`: the packed tier keeps splits, classes, ids and pixels; bad rows are skipped and counted;
out-of-range pixels are refused or clipped; nothing is left half-written."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.stamps.batch import decode_packed, decode_tier_batch
from darkhaloscope.stamps.codec import encode_stamp
from darkhaloscope.stamps.counts import class_counts
from darkhaloscope.stamps.pack import MANIFEST_NAME, PackOptions, pack_tier, packed_stamp_array
from darkhaloscope.stamps.schema import label_from_is_control
from darkhaloscope.stamps.tier import open_tier
from tierfactory import make_tier


def _by_id(tier, columns):
    """{stamp_id or row_id: (image, label)} over a whole tier."""
    out = {}
    key = "stamp_id" if "stamp_id" in tier.columns else "row_id"
    for b in tier.iter_batches([key] + columns):
        sb = decode_tier_batch(b)
        out.update(zip(b.table[key].to_pylist(), zip(sb.images, sb.labels)))
    return out


def test_pack_round_trip(tiny_tier, tmp_path, capsys):
    out = tmp_path / "packed"
    assert main(["pack", str(tiny_tier), str(out), "--row-group-rows", "5", "--workers", "2"]) == 0
    assert "wrote 72 rows" in capsys.readouterr().out
    src, packed = open_tier(str(tiny_tier)), open_tier(str(out))
    assert packed.is_packed and packed.splits() == src.splits()
    assert class_counts(packed) == class_counts(src)
    assert all(max(f.row_group_rows) <= 5 for f in packed.files)
    assert not {"stamp_npz", "region_split"} & set(packed.columns)
    assert {"stamp_f16", "label", "stamp_id", "host_id", "is_control", "psfdepth_r"} <= set(packed.columns)
    a, b = _by_id(src, ["stamp_npz", "is_control"]), _by_id(packed, ["stamp_f16", "label"])
    assert a.keys() == b.keys()
    for k, (img, lab) in a.items():
        assert b[k][1] == lab
        np.testing.assert_allclose(b[k][0], img, rtol=2.0 ** -11, atol=3e-8)  # float16 rounding only
    t = pq.read_table(sorted(out.rglob("*.parquet"))[0])
    assert t["label"].to_pylist() == label_from_is_control(t["is_control"]).tolist()
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["rows"] == {s: {"0": 12, "1": 12} for s in ("test", "train", "val")}
    assert m["skipped"]["rows"] == 0 and m["float16"]["clipped_pixels"] == 0
    assert m["run"]["command"].startswith(f"dhs pack {tiny_tier} {out}") and "--row-group-rows 5" in m["run"]["command"]
    assert 0 < m["float16"]["bands"]["r"]["max_rel_err"] <= 2.0 ** -11


def test_split_column_source_becomes_hive_and_row_ids(tmp_path):
    src = make_tier(tmp_path / "flat", rows_per_split=6, files_per_split=1, row_group_size=4, hive=False)
    for p in src.glob("*.parquet"):
        t = pq.read_table(p).drop_columns(["stamp_id"])
        pq.write_table(t.append_column("ctrl_stamp_npz", t["stamp_npz"]), p)  # the paired control stamp
    m = pack_tier(open_tier(str(src)), str(tmp_path / "out"), PackOptions(compression="zstd", workers=1))
    packed = open_tier(str(tmp_path / "out"))
    assert packed.split_from_partition and packed.splits() == ["test", "train", "val"]
    ids = packed.read_columns(["row_id"], split="val")["row_id"].to_pylist()
    assert ids == [f"part-val-00000.parquet:{i}" for i in range(6)]
    assert m["compression"] == "zstd" and len(m["shards"]) == 3
    assert "ctrl_stamp_npz" not in packed.columns and "stamp_npz" not in packed.columns


def test_bad_rows_are_skipped_counted_and_named(tmp_path, capsys):
    src = make_tier(tmp_path / "t", rows_per_split=8, files_per_split=1, row_group_size=8, splits=("train",))
    path = next(src.rglob("*.parquet"))
    t = pq.read_table(path)
    blobs = t["stamp_npz"].to_pylist()
    blobs[2] = blobs[2][:100]  # truncated npz
    nan = np.zeros((3, 64, 64), np.float32)
    nan[1, 3, 3] = np.nan
    blobs[5] = encode_stamp(nan)
    pq.write_table(t.set_column(t.column_names.index("stamp_npz"), "stamp_npz", pa.array(blobs, pa.binary())), path)
    assert main(["pack", str(src), str(tmp_path / "out")]) == 0
    assert "skipped 2 row(s)" in capsys.readouterr().out
    m = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert m["rows_written"] == 6 and m["skipped"]["rows"] == 2
    assert m["skipped"]["first"].startswith("region_split=train/part-train-00000.parquet row 2: ")
    assert sum(m["skipped"]["reasons"].values()) == 2


def _tier_with_bright_pixel(tmp_path):
    def stamp(rng, lens):
        img = rng.normal(0, 0.003, (3, 64, 64)).astype(np.float32)
        if lens:
            img[2, 30, 30] = 2.0e5  # not nanomaggies
        return img
    return make_tier(tmp_path / "t", rows_per_split=4, files_per_split=2, row_group_size=2, stamp_fn=stamp)


def test_out_of_range_is_refused_and_nothing_is_left(tmp_path, capsys):
    src, out = _tier_with_bright_pixel(tmp_path), tmp_path / "out"
    assert main(["pack", str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "band z value 2e+05 nmgy: exceeds the float16 maximum 65504" in err and "--clip" in err
    assert len(err.splitlines()) == 1
    assert not [p for p in out.rglob("*") if p.is_file()]  # no shard, no temp file, no manifest


def test_clip_clips_and_reports(tmp_path, capsys):
    src, out = _tier_with_bright_pixel(tmp_path), tmp_path / "out"
    assert main(["pack", str(src), str(out), "--clip", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["clip"] and m["float16"]["clipped_pixels"] == 6 and m["float16"]["bands"]["z"]["clipped_frac"] > 0
    imgs = np.concatenate([decode_tier_batch(b).images for b in open_tier(str(out)).iter_batches(["stamp_f16"])])
    assert imgs.max() == 65504.0


def test_refuses_non_empty_out_already_packed_and_bad_options(tiny_tier, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["pack", str(tiny_tier), str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["pack", str(tiny_tier), str(tmp_path / "p")]) == 0
    assert main(["pack", str(tmp_path / "p"), str(tmp_path / "q")]) == 2
    assert "already a packed tier" in capsys.readouterr().err
    assert main(["pack", str(tiny_tier), "s3://b/x"]) == 2
    assert main(["pack", str(tiny_tier), str(tmp_path / "r"), "--row-group-rows", "0"]) == 2
    assert main(["pack", str(tiny_tier), str(tmp_path / "r"), "--workers", "-4"]) == 2  # (taken as 1 before)
    before = sorted(str(q.relative_to(tiny_tier)) for q in tiny_tier.rglob("*"))
    assert main(["pack", str(tiny_tier), str(tiny_tier / "pk")]) == 2  # its shards became rows of the tier
    assert "inside it" in capsys.readouterr().err
    assert sorted(str(q.relative_to(tiny_tier)) for q in tiny_tier.rglob("*")) == before


def test_decode_packed_respects_offsets_and_type():
    x = np.random.default_rng(0).normal(size=(5, 3, 64, 64)).astype(np.float16)
    arr = packed_stamp_array(x)
    assert np.array_equal(decode_packed(arr.slice(2, 3)), x[2:].astype(np.float32))
    assert np.array_equal(decode_packed(pa.chunked_array([arr.slice(0, 2), arr.slice(2)])), x.astype(np.float32))
    with pytest.raises(Exception, match="fixed_size_binary"):
        decode_packed(pa.array([b"x" * 10], pa.binary(10)))


def test_a_tier_where_nothing_decodes_is_an_error(tmp_path, capsys):
    src = make_tier(tmp_path / "t", rows_per_split=3, files_per_split=1, row_group_size=3, splits=("train",))
    path = next(src.rglob("*.parquet"))
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.column_names.index("stamp_npz"), "stamp_npz",
                                pa.array([b"junk"] * 3, pa.binary())), path)
    assert main(["pack", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no row could be packed" in err and "part-train-00000.parquet row 0: not a zip/npz" in err
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_rows_without_a_split_are_skipped_and_counted(tmp_path):
    src = make_tier(tmp_path / "flat", rows_per_split=4, files_per_split=1, row_group_size=4, hive=False,
                    splits=("train",))
    path = next(src.glob("*.parquet"))
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.column_names.index("region_split"), "region_split",
                                pa.array(["train", None, "train", "train"])), path)
    m = pack_tier(open_tier(str(src)), str(tmp_path / "out"), PackOptions(workers=1))
    assert m["rows_written"] == 3 and m["skipped"]["reasons"] == {"region_split is null": 1}
    assert m["skipped"]["first"] == "part-train-00000.parquet row 1: region_split is null"


def test_a_file_without_any_split_is_refused(tmp_path, capsys):
    src = make_tier(tmp_path / "flat", rows_per_split=2, files_per_split=1, row_group_size=2, hive=False,
                    splits=("train",))
    path = next(src.glob("*.parquet"))
    pq.write_table(pq.read_table(path).drop_columns(["region_split"]), path)
    assert main(["pack", str(path), str(tmp_path / "out")]) == 1
    assert "no region_split=<name>/ folder and no 'region_split' column" in capsys.readouterr().err
