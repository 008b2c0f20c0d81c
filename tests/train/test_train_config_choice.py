"""Which TrainConfig `dhs train` uses without --config, what `dhs review` plans with, and the progress lines
training prints when stderr is not a terminal."""

from __future__ import annotations

import re

import pytest

from darkhaloscope.cli import build_parser, main, parse_args
from darkhaloscope.review.commands import _train_config
from darkhaloscope.train.commands import train_config
from trainhelpers import FAST

torch = pytest.importorskip("torch")
needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice is made without CUDA")


@needs_cpu_only
def test_train_without_config_on_cpu_takes_the_cpu_preset_and_says_so(capsys):
    cfg = train_config(parse_args(build_parser(), ["train", "--out", "r"]))
    assert (cfg.model, cfg.device, cfg.batch_size) == ("polar_fourier", "cpu", 64)
    assert "using preset cpu-demo" in capsys.readouterr().err
    cfg = train_config(parse_args(build_parser(), ["train", "--out", "r", "--model=resnet18"]))
    assert (cfg.model, cfg.num_workers) == ("resnet18", 2)  # asked for a model: the plain defaults
    assert capsys.readouterr().err == ""


def test_review_plans_with_what_train_would_use(capsys):
    parser = build_parser()
    review = parse_args(parser, ["review", "--data", "d", "--out", "r.md"])
    assert _train_config(review, say=print) == train_config(parse_args(parser, ["train", "--out", "r"]))
    if not torch.cuda.is_available():  # the line names review's own flags (review has no --model)
        said = capsys.readouterr().out
        assert "using preset cpu-demo" in said and "give --preset=NAME or --config=FILE" in said and "--model" not in said
    review = parse_args(parser, ["review", "--data", "d", "--out", "r.md", "--config", "gpu"])
    assert _train_config(review, say=print).num_workers == 8  # a train preset by name


def test_review_preset_is_the_planned_runs_train_preset(capsys, tmp_path):
    """`dhs review --preset NAME` (what the 'no --config' line suggests) plans with the train preset, exactly
    as `dhs train --preset NAME`; an unknown name lists the train presets; --config and --preset together
    are refused."""
    parser = build_parser()
    for name in ("gpu", "cpu-demo"):
        review = parse_args(parser, ["review", "--data", "d", "--out", "r.md", "--preset", name])
        assert _train_config(review, say=print) == train_config(parse_args(parser, ["train", "--out", "r", "--preset", name]))
    assert capsys.readouterr().out == ""  # a preset was chosen: no "using preset" line
    assert main(["review", "--data", str(tmp_path), "--out", str(tmp_path / "r.md"), "--preset", "cpu_demo"]) == 2
    err = capsys.readouterr().err
    assert "no preset 'cpu_demo' for dhs train; presets: cpu-demo, gpu" in err and "did you mean" in err
    assert main(["review", "--data", str(tmp_path), "--out", str(tmp_path / "r.md"), "--preset", "gpu",
                 "--config", "gpu"]) == 2
    assert "give --config or --preset, not both" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_training_prints_progress_lines_when_stderr_is_not_a_terminal(train_tier, tmp_path, capsys, monkeypatch):
    """The run's steps and the epoch's own are told apart (issue #25 4.11: "epoch 2: 50/132 steps" counted the
    whole run); the summary rounds the AUROC."""
    import darkhaloscope.common.progress as progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    args = [a for a in FAST if not a.startswith("--progress")]
    assert main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *args, "--epochs=2",
                 "--max_train_rows=64"]) == 0
    out, err = capsys.readouterr()
    assert "train: 1/8 steps (12%)" in err and "epoch 0 of 0-1: 1/4 steps, " in err and "samples/s, loss " in err
    assert "train: 5/8 steps (62%)" in err and "epoch 1 of 0-1: 1/4 steps, " in err and "8/8 steps (100%)" in err
    assert re.search(r"best val AUROC (\d\.\d{4}|undefined) at epoch \d", out), out


def test_cpu_demo_preset_trains_the_epochs_its_comment_and_the_demo_state():
    """Issue #25 4.11: the preset said 6 epochs under a comment (and a demo) of 8."""
    import darkhaloscope.configargs as c
    from darkhaloscope.config import load_config
    from darkhaloscope.demo.stages import SIZES
    from darkhaloscope.train.config import TrainConfig

    path = c.config_source("train", "cpu-demo")
    stated = re.search(r"(\d+) epochs take", path.read_text())
    assert stated and load_config(TrainConfig, path).epochs == int(stated.group(1)) == SIZES["full"].epochs
