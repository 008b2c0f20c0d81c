"""`dhs audit` on stamps that are real DR10 cutouts (the `cutout` (101, 101, 3) npz layout, centre-cropped)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.audit import run_audit


def test_real_dr10_cutouts_decode_and_duplicate_is_found(dr10_dir, tmp_path):
    files = sorted(p for p in dr10_dir.glob("*.npz") if p.name != "sample_cutout.npz")
    blobs = [p.read_bytes() for p in files]
    ids = [str(np.load(p)["meta_galaxy_id"]) for p in files]
    layout = {"train": [0, 1, 2, 3], "val": [4, 0]}  # cutout 0 copied into val: the same stamp in two splits
    for split, idx in layout.items():
        (tmp_path / f"region_split={split}").mkdir()
        t = pa.table({"stamp_npz": pa.array([blobs[i] for i in idx], pa.binary()),
                      "is_control": pa.array([k % 2 for k in range(len(idx))], pa.int32()),
                      "galaxy_id": [ids[i] for i in idx]})
        pq.write_table(t, tmp_path / f"region_split={split}" / "part-00000.parquet")
    r = run_audit(str(tmp_path))
    assert r.find("usability", "error") == [], r.to_markdown()  # real cutouts: finite, all bands, 64x64 crop
    split_errors = {f.details.get("column", "stamp"): f for f in r.find("split", "error")}
    assert set(split_errors) == {"galaxy_id", "stamp"}
    assert "val: region_split=val/part-00000.parquet row 1" in split_errors["stamp"].message
    assert split_errors["galaxy_id"].details["shared_ids"] == 1
