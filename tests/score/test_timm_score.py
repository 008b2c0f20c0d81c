"""`dhs train --model timm:NAME` records the name in its checkpoint, and `dhs score` rebuilds the same net
from it (the fake timm of tests/faketimm.py); without timm, scoring that checkpoint is one error line."""

import json
import sys

import numpy as np
import pyarrow.parquet as pq
import torch

import faketimm
from darkhaloscope.cli import main
from darkhaloscope.models.preprocess import prepare_batch
from darkhaloscope.stamps.codec import decode_batch
from darkhaloscope.runtime.loading import load_checkpoint, load_for_inference


def test_timm_checkpoint_scored_with_the_same_net(demo, tmp_path, monkeypatch, capsys):
    faketimm.install(monkeypatch)
    run, out = tmp_path / "run", tmp_path / "s.parquet"
    assert main(["train", "--data", str(demo["tier"]), "--out", str(run), "--model=timm:fake_efficientnet",
                 "--device=cpu", "--precision=fp32", "--num_workers=0", "--batch_size=32", "--epochs=1",
                 "--progress=false", "--val_batch_size=64"]) == 0
    assert json.loads((run / "run.json").read_text())["timm"] == "0.0+fake"
    ck = load_checkpoint(run / "best.pt")
    assert ck["config"]["model"] == "timm:fake_efficientnet" and "backbone.conv_stem.weight" in ck["model"]
    model, pre, meta = load_for_inference(run / "best.pt")
    assert meta["model"] == "timm:fake_efficientnet" and model.stem == "conv_stem stride 1"
    assert main(["score", "--checkpoint", str(run / "best.pt"), "--data", str(demo["tier"]), "--out", str(out),
                 "--quiet"]) == 0
    t = pq.read_table(out)
    first = pq.read_table(sorted(demo["tier"].rglob("*.parquet"))[0])
    n = 8
    x = torch.from_numpy(decode_batch(first["stamp_npz"].to_pylist()[:n]).images)
    with torch.no_grad():
        want = model(prepare_batch(x, pre, train=False)).numpy()
    got = dict(zip(t["row_id"].to_pylist(), t["logit"].to_numpy()))
    np.testing.assert_allclose([got[i] for i in first["stamp_id"].to_pylist()[:n]], want, rtol=1e-4, atol=1e-4)
    capsys.readouterr()

    monkeypatch.setitem(sys.modules, "timm", None)  # the same checkpoint where timm does not import
    assert main(["score", "--checkpoint", str(run / "best.pt"), "--data", str(demo["tier"]), "--out",
                 str(tmp_path / "t.parquet"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: timm models need timm") and "[cuda]" in err[0]
