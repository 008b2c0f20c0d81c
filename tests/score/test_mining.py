"""`dhs mine` -> `dhs train --mined` -> `dhs evaluate --before-mining` on the evaluate demo tier."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from darkhaloscope.cli import main

TRAIN_FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=32", "--lr=3e-3", "--progress=false", "--val_batch_size=64", "--epochs=1"]


@pytest.mark.slow
def test_mine_train_mixed_and_before_after(demo, tmp_path):
    mined = tmp_path / "mined"
    assert main(["mine", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]), "--top", "10",
                 "--out", str(mined), "--quiet"]) == 0
    t = pq.read_table(mined / "region_split=train" / "part-00000.parquet").to_pandas()
    assert len(t) == 10 and (t["is_control"] == 1).all() and "stamp_id" not in t
    assert np.all(np.diff(t["mined_logit"]) <= 0) and t["mined_rank"].tolist() == list(range(10))
    sc = pq.read_table(demo["scores"]).to_pandas()
    train_ctrl = sc[(sc["region_split"] == "train") & (sc["label"] == 0)]
    assert np.allclose(np.sort(train_ctrl["logit"])[::-1][:10], t["mined_logit"], atol=1e-4)
    assert json.loads((mined / "manifest.json").read_text())["rows"] == 10

    run2 = tmp_path / "run2"
    assert main(["train", "--data", str(demo["tier"]), "--out", str(run2), *TRAIN_FAST, f"--mined={mined}",
                 "--mined_repeat=2"]) == 0
    scores2 = tmp_path / "scores2.parquet"
    assert main(["score", "--checkpoint", str(run2 / "best.pt"), "--data", str(demo["tier"]), "--out",
                 str(scores2), "--quiet"]) == 0
    out = tmp_path / "report"
    assert main(["evaluate", str(scores2), "--out", str(out), "--no-data", "--before-mining", str(demo["scores"]),
                 "--set", "n_boot=20", "--set", "baselines=false"]) == 0
    m = json.loads((out / "metrics.json").read_text())["mining"]
    assert set(m) >= {"before", "after"} and m["before"]["negatives"] == m["after"]["negatives"] > 0
    assert "Hard-negative mining: before and after" in (out / "report.md").read_text()


def test_train_counts_mined_rows(demo, tmp_path):
    """The train stream of `--mined` holds the training split plus mined_repeat copies of the mined rows."""
    from darkhaloscope.train.data import StampStream

    mined = tmp_path / "mined"
    assert main(["mine", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]), "--top", "4",
                 "--out", str(mined), "--quiet"]) == 0
    base = StampStream(str(demo["tier"]), "train", 8)
    mixed = StampStream(str(demo["tier"]), "train", 8, mined=str(mined), mined_repeat=3)
    assert mixed.num_rows() == base.num_rows() + 12
    assert {f.relpath.split("/")[0] for f in mixed.files[len(base.files):]} == {"_mined0", "_mined1", "_mined2"}


def test_mined_copies_keep_ids_of_their_own(demo, tmp_path):
    """A hand-made mined tier that keeps stamp_id, read mined_repeat=2 times: each copy's row ids carry its
    `_mined<r>/` prefix, so the loader's disjoint-rows check sees no row twice (it said 'read twice ... a bug
    in the input pipeline' before)."""
    import pyarrow.compute as pc

    from darkhaloscope.train.data import StampStream, make_loader
    from darkhaloscope.train.guards import check_disjoint_rows

    src = sorted((demo["tier"] / "region_split=train").glob("*.parquet"))[0]
    t = pq.read_table(src)
    t = t.filter(pc.equal(t["is_control"], 1)).slice(0, 5)
    assert "stamp_id" in t.column_names
    (tmp_path / "hand" / "region_split=train").mkdir(parents=True)
    pq.write_table(t, tmp_path / "hand" / "region_split=train" / "part-0.parquet")
    stream = StampStream(str(demo["tier"]), "train", 8, mined=str(tmp_path / "hand"), mined_repeat=2)
    ids = [i for b in make_loader(stream, num_workers=0) for i in b["row_id"]]
    copies = [i for i in ids if i.startswith("_mined")]
    assert len(copies) == 10 and len(set(ids)) == len(ids)
    assert {i.split("/", 1)[1] for i in copies} == set(t["stamp_id"].to_pylist())
    check_disjoint_rows([ids])
