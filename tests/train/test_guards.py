"""Guards of `dhs train`: one-class split and forbidden inputs refused (exit 3, nothing written),
initial-loss warning, nan/inf loss stops the run, unsharded input detected."""

import math

import numpy as np
import pytest
import torch

from darkhaloscope.cli import main
from darkhaloscope.errors import DataError, RefusedError
from darkhaloscope.train import guards, loop
from tierfactory import make_tier
from trainhelpers import FAST, read_jsonl


def test_one_class_val_split_refused_before_first_step(tmp_path, capsys):
    tier = make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, splits=("train",))
    make_tier(tmp_path / "tier", rows_per_split=12, files_per_split=1, splits=("val",), control_frac=0, seed=3)
    run = tmp_path / "run"
    rc = main(["train", "--data", str(tier), "--out", str(run), *FAST])
    err = capsys.readouterr().err
    assert rc == 3
    assert "split 'val' has 12 injection(s) (is_control=0) and 0 control(s) (is_control=1)" in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not run.exists()  # no checkpoint, no config: nothing written


def test_missing_val_split_refused(tmp_path, capsys):
    tier = make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, splits=("train", "test"))
    assert main(["train", "--data", str(tier), "--out", str(tmp_path / "run"), *FAST]) == 3
    err = capsys.readouterr().err
    assert "split 'val' has 0 injection(s) (is_control=0) and 0 control(s) (is_control=1): no rows" in err


@pytest.mark.parametrize("cols", ["theta_e_arcsec", "psfdepth_r,arc_snr", "is_control"])
def test_label_leaking_meta_columns_refused(train_tier, tmp_path, capsys, cols):
    run = tmp_path / "run"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *FAST, f"--meta_columns={cols}"]) == 3
    assert "leak the label" in capsys.readouterr().err
    assert not run.exists()


def test_initial_loss_warning_thresholds():
    assert guards.initial_loss_warning(math.log(2) + 0.1, 0.25) is None
    msg = guards.initial_loss_warning(5.3, 0.25)
    assert "5.3000" in msg and "ln 2" in msg and "nanomaggies" in msg


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(train_tier, tmp_path, monkeypatch, capsys):
    real_step = loop.train_step
    calls = {"n": 0}

    def step_that_diverges(*a, **kw):
        calls["n"] += 1
        loss = real_step(*a, **kw)
        return loss * float("nan") if calls["n"] == 9 else loss

    monkeypatch.setattr(loop, "train_step", step_that_diverges)
    run = tmp_path / "run"
    rc = main(["train", "--data", str(train_tier), "--out", str(run), *FAST, "--epochs=2"])
    err = capsys.readouterr().err
    assert rc == 1 and "training loss became nan at step 9 (epoch 1" in err and "--resume auto" in err
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 9))  # the bad step is never logged
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 6  # epoch-0 checkpoint left as it was


def test_check_finite_losses_names_first_bad_step():
    with pytest.raises(DataError, match=r"became inf at step 12 \(epoch 3, lr 0.002\)"):
        guards.check_finite_losses(np.array([0.5, 0.4, np.inf, np.nan]), 10, epoch=3, lrs=[1e-3, 1e-3, 2e-3, 2e-3])
    guards.check_finite_losses(np.array([0.5]), 1, epoch=0, lrs=[1e-3])


def test_unsharded_rows_refused():
    assert guards.check_disjoint_rows([["a", "b"], ["c"]]) == {"rows_per_rank": [2, 1], "overlap": 0}
    with pytest.raises(RefusedError, match="row b was read on ranks 0 and 1"):
        guards.check_disjoint_rows([["a", "b"], ["b"]])
    with pytest.raises(RefusedError, match="twice on rank 0"):
        guards.check_disjoint_rows([["a", "a"]])


def test_tensorboard_requested_but_missing_warns(train_tier, tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    assert main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *FAST, "--epochs=1",
                 "--max_train_rows=16", "--max_val_rows=16", "--tensorboard=true"]) == 0
    assert "tensorboard is not installed" in capsys.readouterr().err
