"""Fixtures for the evaluate tests: synthetic scores files, and one small simulated tier (paired controls)
with a briefly trained small_cnn, shared by the score / probe tests of the session, and a second checkpoint
of it (other weights) for committees."""

from __future__ import annotations

from pathlib import Path

import pytest

from darkhaloscope.cli import main

TRAIN_FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=32", "--lr=3e-3", "--progress=false", "--val_batch_size=64", "--epochs=1"]


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, Path]:
    """{'tier', 'checkpoint', 'scores'}: `dhs simulate --pair` (120 rows) -> `dhs train` -> `dhs score`.
    The subjects here are scoring, reports and probes, not the arcs' fine structure: the simulator's
    costliest realism is off (sub-pixel sampling, Poisson noise of the added light, knots)."""
    root = tmp_path_factory.mktemp("evaldemo")
    assert main(["simulate", "--out", str(root), "--tier", "t", "--rows", "120", "--seed", "3", "--pair",
                 "--workers", "1", "--rows-per-file", "40", "-q", "--supersample=1", "--photon_noise=false",
                 "--src_knots=0,0"]) == 0
    tier = root / "t"
    assert main(["train", "--data", str(tier), "--out", str(root / "run"), *TRAIN_FAST]) == 0
    ckpt = root / "run" / "best.pt"
    scores = root / "scores.parquet"
    assert main(["score", "--checkpoint", str(ckpt), "--data", str(tier), "--out", str(scores), "--quiet"]) == 0
    return {"tier": tier, "checkpoint": ckpt, "scores": scores, "root": root}


@pytest.fixture(scope="session")
def second(demo, tmp_path_factory):
    """A second committee member: the demo checkpoint with other weights (seed 7), other temperature."""
    import torch

    from darkhaloscope.models import create_model
    from darkhaloscope.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(demo["checkpoint"])
    torch.manual_seed(7)
    ck["model"] = create_model("small_cnn").state_dict()
    ck["calibration"] = {**ck["calibration"], "temperature": 2.0}
    path = tmp_path_factory.mktemp("member") / "best.pt"
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, path)
    return path
