"""kill -9 in mid-epoch, then `--resume auto`: the run continues at the saved step and, on CPU with a fixed
seed, every following loss equals that of an uninterrupted run (`darkhaloscope.train.resume_check`, the
same round trip `dhs review` runs)."""

import pytest

from darkhaloscope.cli import main
from darkhaloscope.config import load_config
from darkhaloscope.common.jsonio import read_jsonl
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.resume_check import resume_check
from trainhelpers import FAST

# 48 train rows in batches of 4: 12 steps per epoch, 24 in all; last.pt every 5 steps
# one intra-op thread in every run: CPU float sums are bit-exact only for the same thread count, and the
# in-process runs must not depend on what earlier tests left torch set to
ARGS = [*FAST, "--batch_size=4", "--epochs=2", "--checkpoint_every_steps=5", "--max_train_rows=48",
        "--max_val_rows=32", "--torch_threads=1"]


@pytest.mark.slow
def test_kill9_mid_epoch_then_resume_matches_uninterrupted(train_tier, tmp_path):
    cfg = load_config(TrainConfig, None, [f"--data={train_tier}", *ARGS])
    r = resume_check(cfg, tmp_path, kill_after_step=5)
    assert r.killed and r.killed_at["step"] == 5 and r.killed_at["epoch"] == 0
    assert 0 < r.killed_at["batches_done"] < 12, "the kill must land in mid-epoch"
    assert r.same_losses and r.same_weights and r.ok and r.why == "" and r.steps == 24
    ref, run = read_jsonl(tmp_path / "uninterrupted" / "steps.jsonl"), read_jsonl(tmp_path / "killed" / "steps.jsonl")
    assert [x["step"] for x in run] == list(range(1, 25)) and run == ref
    assert read_jsonl(tmp_path / "killed" / "metrics.jsonl")[-1]["val_auroc"] == \
        read_jsonl(tmp_path / "uninterrupted" / "metrics.jsonl")[-1]["val_auroc"]


SMALL = [*FAST, "--max_train_rows=32", "--max_val_rows=32"]  # 2 steps per epoch


def test_resume_auto_on_empty_folder_starts_fresh(train_tier, tmp_path, capsys):
    assert main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *SMALL, "--epochs=1",
                 "--resume", "auto"]) == 0
    assert "starting from step 0" in capsys.readouterr().out


def test_resume_with_other_batch_size_is_refused(train_tier, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=1"]) == 0
    rc = main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=2", "--batch_size=8",
               "--resume", "auto"])
    assert rc == 2 and "batch_size=16 (now 8)" in capsys.readouterr().err


def test_resume_with_other_position_planes_is_refused(train_tier, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=1"]) == 0
    rc = main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=2", "--coords=r",
               "--pooling=radial", "--resume", "auto"])
    assert rc == 2 and ("holds model 'small_cnn' (coords=none, pooling=avg) but the config asks for 'small_cnn' "
                        "(coords=r, pooling=radial)") in capsys.readouterr().err


def test_resume_epoch_boundary_continues_next_epoch(train_tier, tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=1"]) == 0
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=2", "--resume", "auto"]) == 0
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1]
    assert [r["step"] for r in read_jsonl(run / "steps.jsonl")] == [1, 2, 3, 4]
