"""`dhs review` of a planned on-the-fly run (`dhs train --inject`): its training batches are rendered the way that run
renders them (sanity checks, the audit gate, rendering + model step time, the cursor's kill -9 resume), never
read from the stored tier's train split."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from darkhaloscope.cli import main
from darkhaloscope.config import load_config
from darkhaloscope.review.sanity import train_batches
from darkhaloscope.train.config import TrainConfig

PLAN = {"model": "small_cnn", "inject": "synthetic", "batch_size": 16, "epochs": 1, "inject_steps_per_epoch": 10,
        "inject_audit_stamps": 64, "device": "cpu", "precision": "fp32", "sim": {"confusers": 0.5}}


@pytest.mark.slow  # the renderer's first batches (~3 s idle, 7 s at load 3); tests/train/test_onthefly.py covers them fast
def test_training_batches_of_an_on_the_fly_run_are_rendered_not_read():
    cfg = load_config(TrainConfig, None, {"inject": "synthetic", "batch_size": 8, "sim.confusers": 0.5})
    got = list(train_batches("no/such/tier", cfg, 8, 2))  # never opened: the batches are rendered
    assert [tuple(b["image"].shape) for b in got] == [(8, 3, 64, 64)] * 2
    assert [b["label"].tolist() for b in got] == [[1.0] * 4 + [0.0] * 4] * 2  # lenses, paired controls, look-alikes
    again = next(train_batches("no/such/tier", cfg, 8, 1))
    assert torch.equal(again["image"], got[0]["image"])  # the run's batch 0, as dhs train renders it
    assert not torch.equal(got[0]["image"], got[1]["image"])


@pytest.mark.slow  # the audit gate, a render + step benchmark and a kill -9 resume of a scratch run (~40 s)
def test_review_of_an_on_the_fly_plan(demo_dir, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    out = tmp_path / "r.md"
    rc = main(["review", "--data", str(demo_dir / "data" / "demo"), "--out", str(out), "--quick", "--config",
               str(plan), "--set", "sections=data,throughput,checkpoint"])
    doc = json.loads(out.with_suffix(".json").read_text())
    checks = {c["check"]: c for s in doc["sections"] for c in s["checks"]}
    assert rc == 0 and doc["verdict"] == "GO", doc["blocking"]
    assert checks["on the fly: audit gate"]["severity"] == "pass" and "on the fly: paired" in checks
    assert "rendering" in checks["bench train --inject"]["message"] and "bench loader" not in checks
    assert checks["save / kill / resume"]["severity"] == "pass"
    assert "--inject synthetic" in out.read_text()
