"""End-to-end `dhs train` on CPU: run folder contents, metrics, best checkpoint, inference loading."""

import json

import numpy as np
import pytest
import torch
import yaml

from trainhelpers import FAST, read_jsonl
from darkhaloscope.cli import main
from darkhaloscope.config import load_config
from darkhaloscope.runtime.loading import load_checkpoint, load_for_inference
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.data import StampStream, make_loader
from darkhaloscope.train.loop import train
from darkhaloscope.train.metrics import val_metrics
from darkhaloscope.models.preprocess import prepare_batch


def test_train_cli_reaches_high_auroc_and_writes_run_folder(train_tier, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "--data", str(train_tier), "--out", str(run), *FAST, "--epochs=3"])
    assert rc == 0
    out = capsys.readouterr()
    assert "best val AUROC" in out.out and "initial loss" in out.err
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.csv", "metrics.jsonl", "run.json", "steps.jsonl",
                 "summary.json"):
        assert (run / name).is_file(), name
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2] and [r["step"] for r in rows] == [6, 12, 18]
    assert rows[-1]["val_auroc"] >= 0.95 and rows[-1]["val_n"] == 96
    assert len((run / "metrics.csv").read_text().splitlines()) == 4  # header + one row per epoch
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 19))
    assert abs(steps[0]["loss"] - np.log(2)) < 0.25 and steps[-1]["loss"] < steps[0]["loss"]
    # lr: warmup then cosine to 0 at the last step
    lrs = [s["lr"] for s in steps]
    assert max(lrs) == pytest.approx(3e-3) and lrs[-1] < 1e-4
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "small_cnn" and cfg["data"] == str(train_tier) and cfg["preprocess"]["norm"] == "annulus"
    info = json.loads((run / "run.json").read_text())
    assert info["command"].startswith("dhs train --out") and "--model=small_cnn" in info["command"]
    assert info["version"] and info["git_commit"] and info["class_counts"]["val"] == {"0": 48, "1": 48}
    summary = json.loads((run / "summary.json").read_text())
    best_row = max(rows, key=lambda r: (r["val_auroc"], -r["step"]))
    assert summary["best"]["step"] == best_row["step"] and summary["shard_check"]["overlap"] == 0


@pytest.mark.parametrize("coords, pooling", [("none", "avg"), pytest.param("r", "radial", marks=pytest.mark.slow)])
def test_best_checkpoint_scores_like_training_validation(train_tier, tmp_path, coords, pooling):
    """Inference rebuilds the trained model (position planes and pooling included) and scores val as training did."""
    cfg = load_config(TrainConfig, None, [f"--data={train_tier}", *FAST, "--epochs=2", f"--coords={coords}",
                                          f"--pooling={pooling}"])
    summary = train(cfg, tmp_path / "run")
    ck = load_checkpoint(summary["paths"]["best"])  # weights_only=True inside
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "cursor", "config", "version", "step"} <= set(ck)
    model, pcfg, meta = load_for_inference(summary["paths"]["best"])
    assert not model.training and meta["step"] == summary["best"]["step"] and meta["model"] == "small_cnn"
    assert model.coords == coords and meta["config"]["coords"] == coords
    assert model.pooling_name == pooling and meta["config"]["pooling"] == pooling
    stream = StampStream(str(train_tier), "val", 64, shuffle=False)
    labels, logits = [], []
    with torch.no_grad():
        for b in make_loader(stream):
            logits.append(model(prepare_batch(b["image"], pcfg, train=False)))
            labels.append(b["label"])
    m = val_metrics(torch.cat(labels).numpy(), torch.cat(logits).numpy())
    assert m["val_auroc"] == pytest.approx(summary["best"]["val_auroc"])
    assert m["val_loss"] == pytest.approx(summary["best"]["val_loss"], rel=1e-5)


def test_presets_load_and_hold_only_changes():
    from darkhaloscope.configargs import list_presets, preset_path

    assert {"cpu-demo", "gpu"} <= set(list_presets("train"))
    cpu = load_config(TrainConfig, preset_path("train", "cpu-demo"))
    assert cpu.model == "polar_fourier" and cpu.device == "cpu" and cpu.weight_decay == TrainConfig().weight_decay
    gpu = load_config(TrainConfig, preset_path("train", "gpu"))
    assert (gpu.model, gpu.lr, gpu.num_workers) == ("resnet18", 3e-4, 8)


@pytest.mark.parametrize("args, code, msg", [
    (["--lr=fast"], 2, "expected float"),
    (["--no_such_key=1"], 2, "unknown config key 'no_such_key'"),
    (["--precision=fp8"], 2, "precision"),
    (["--model=vgg"], 2, "unknown model 'vgg'"),
    (["--train_split=val"], 2, "held-out"),
    (["--coords=radius"], 2, "coords='radius': choose one of none, r, xyr"),
    (["--pooling=max"], 2, "pooling='max': choose one of avg, radial, grid"),
])
def test_bad_settings_exit_2(train_tier, tmp_path, capsys, args, code, msg):
    with pytest.raises(SystemExit) if "unknown config key" in msg else _noop():
        rc = main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *FAST, *args])
        assert rc == code
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r" / "last.pt").exists()


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.slow  # bf16 emulated on CPU: ~5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_mid_epoch_validation_bf16_channels_last(train_tier, tmp_path):
    """val_every_steps adds validations inside the epoch; bf16 autocast + channels_last run on CPU too."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *FAST, "--epochs=2", "--val_every_steps=4",
                 "--precision=bf16", "--channels_last=true", "--max_val_rows=32"]) == 0
    rows = read_jsonl(run / "metrics.jsonl")
    assert [(r["epoch"], r["step"]) for r in rows] == [(0, 4), (0, 6), (1, 8), (1, 12)]
    assert all(r["val_n"] == 32 and r["val_auroc"] is not None for r in rows)
    assert json.loads((run / "run.json").read_text())["precision"] == "bf16"
