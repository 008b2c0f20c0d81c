"""`confuser_weight`: negatives that carry a look-alike weigh more in the training loss."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from trainhelpers import FAST
from darkhaloscope.cli import main
from darkhaloscope.train.data import StampStream, make_loader
from darkhaloscope.train.step import make_scheduler, train_step


def _mark_tier(tier, kind_every: int = 3, pool: bool = False) -> dict[str, bool]:
    """Add confuser_kind (every kind_every-th control: 'ring') or pool ('confuser' for those) to each file;
    returns {stamp_id: carries a look-alike}."""
    hard = {}
    for f in sorted(tier.rglob("*.parquet")):
        t = pq.read_table(f)
        ctrl = np.asarray(t["is_control"]) == 1
        marked = ctrl & (np.arange(t.num_rows) % kind_every == 0)
        hard.update(zip(t["stamp_id"].to_pylist(), marked.tolist()))
        if pool:
            col = pa.array(["confuser" if m else ("random" if c else "positive") for m, c in zip(marked, ctrl)])
            t = t.append_column("pool", col)
        else:
            t = t.append_column("confuser_kind", pa.array(["ring" if m else None for m in marked], pa.string()))
        pq.write_table(t, f, row_group_size=8)
    return hard


@pytest.mark.parametrize("pool", [False, True])
def test_look_alike_negatives_get_the_weight_and_nothing_else_does(tiny_tier, pool):
    hard = _mark_tier(tiny_tier, pool=pool)
    assert sum(hard.values()) >= 3
    batches = list(make_loader(StampStream(str(tiny_tier), "train", 5, seed=2, confuser_weight=4.0)))
    seen = 0
    for b in batches:
        for rid, w, y in zip(b["row_id"], b["weight"].tolist(), b["label"].tolist()):
            assert w == (4.0 if hard[rid] else 1.0) and not (hard[rid] and y == 1)
            seen += 1
    assert seen == 24
    # off (the default): no weight key, the batches are what they were
    assert all("weight" not in b for b in make_loader(StampStream(str(tiny_tier), "train", 5, seed=2)))


def test_weight_without_a_look_alike_column_is_refused(tiny_tier, tmp_path, capsys):
    rc = main(["train", "--data", str(tiny_tier), "--out", str(tmp_path / "r"), *FAST, "--confuser_weight=3"])
    err = capsys.readouterr().err
    assert rc == 2 and "confuser_weight=3" in err and "confuser_kind or pool" in err
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_weight_must_be_positive_and_finite(tiny_tier, tmp_path, capsys, value):
    rc = main(["train", "--data", str(tiny_tier), "--out", str(tmp_path / "r"), *FAST, f"--confuser_weight={value}"])
    assert rc == 2 and "confuser_weight" in capsys.readouterr().err


def test_weighted_step_is_the_weighted_mean_loss_and_ones_change_nothing():
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.tensor([1.0, 0, 0, 1, 0, 0])
    w = torch.tensor([1.0, 5, 1, 1, 5, 1])

    def step(weight):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)  # AdamW's first step is sign(grad): blind to scale
        loss = train_step(model, x, y, opt, make_scheduler(opt, 10, 0.0, 1.0), torch.amp.GradScaler("cpu", enabled=False),
                          device=torch.device("cpu"), precision="fp32", grad_clip_norm=0, weight=weight)
        return float(loss), model[0].weight.detach().clone()

    torch.manual_seed(1)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(ref(x), y, reduction="none").detach()
    loss_w, after_w = step(w)
    assert loss_w == pytest.approx(float((per_row * w).sum() / w.sum()), rel=1e-6)
    loss_1, after_1 = step(torch.ones(6))
    loss_0, after_0 = step(None)
    assert loss_1 == pytest.approx(loss_0, rel=1e-6) and torch.allclose(after_1, after_0)
    assert not torch.allclose(after_w, after_0)


def test_train_with_confuser_weight_runs_and_records_it(tiny_tier, tmp_path):
    _mark_tier(tiny_tier)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_tier), "--out", str(run), *FAST, "--epochs=1",
                 "--confuser_weight=3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["confuser_weight"] == 3.0
    # dhs score records it, so that `dhs evaluate` can say the model was trained so
    from darkhaloscope.score.scoresfile import read_provenance

    assert main(["score", "--data", str(tiny_tier), "--checkpoint", str(run / "best.pt"), "--split", "val",
                 "--out", str(tmp_path / "s.parquet")]) == 0
    assert read_provenance(pq.read_schema(tmp_path / "s.parquet"))["confuser_weights"] == [3.0]


def test_val_loss_is_weighted_as_the_training_loss():
    from darkhaloscope.common.calibration import bce_with_logits
    from darkhaloscope.train.metrics import val_metrics

    y, z = np.array([1, 0, 0, 1, 0, 0]), np.array([2.0, 1.5, -3.0, 0.5, 2.5, -1.0])
    w = np.array([1.0, 5, 1, 1, 5, 1])
    per_row = bce_with_logits(y, z)
    weighted, plain = val_metrics(y, z, w), val_metrics(y, z)
    assert weighted["val_loss"] == pytest.approx(float((per_row * w).sum() / w.sum()))
    assert plain["val_loss"] == pytest.approx(float(per_row.mean())) and weighted["val_loss"] > plain["val_loss"]
    assert {k: v for k, v in weighted.items() if k != "val_loss"} == {k: v for k, v in plain.items() if k != "val_loss"}


def test_training_validates_with_the_look_alikes_weighted(tiny_tier, tmp_path, monkeypatch):
    """The val split's look-alike negatives weigh W in the val loss (the review's train/val gap compares the two);
    a val split without a look-alike column validates unweighted instead of refusing the run."""
    from darkhaloscope.train import loop

    hard = _mark_tier(tiny_tier)
    seen = []
    real = loop.val_metrics
    monkeypatch.setattr(loop, "val_metrics", lambda lab, log, w=None: (seen.append(np.asarray(w)), real(lab, log, w))[1])
    assert main(["train", "--data", str(tiny_tier), "--out", str(tmp_path / "r"), *FAST, "--epochs=1",
                 "--confuser_weight=3"]) == 0
    val_hard = sum(v for k, v in hard.items() if k.startswith("val-"))  # stamp ids: SPLIT-NNNNNN
    assert val_hard and seen and sorted(set(seen[-1].tolist())) == [1.0, 3.0]
    assert (seen[-1] == 3.0).sum() == val_hard


def test_a_val_split_without_look_alike_columns_validates_unweighted(tiny_tier, tmp_path, monkeypatch):
    from darkhaloscope.train import loop

    _mark_tier(tiny_tier)
    for f in tiny_tier.rglob("*.parquet"):
        if "val" in f.parent.name:
            t = pq.read_table(f)
            pq.write_table(t.drop(["confuser_kind"]), f, row_group_size=8)
    seen = []
    real = loop.val_metrics
    monkeypatch.setattr(loop, "val_metrics", lambda lab, log, w=None: (seen.append(np.asarray(w)), real(lab, log, w))[1])
    assert main(["train", "--data", str(tiny_tier), "--out", str(tmp_path / "r"), *FAST, "--epochs=1",
                 "--confuser_weight=3"]) == 0
    assert seen and set(seen[-1].tolist()) == {1.0}
