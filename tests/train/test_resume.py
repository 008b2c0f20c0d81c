"""kill -9 in mid-epoch, then `--resume auto`: the run continues at the saved step and, on CPU with a fixed
seed, every following loss equals that of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import torch

from darkhaloscope.cli import main
from trainhelpers import FAST, read_jsonl

# 48 train rows in batches of 4: 12 steps per epoch, 24 in all; last.pt every 5 steps
# one intra-op thread in every run: CPU float sums are bit-exact only for the same thread count, and the
# in-process runs must not depend on what earlier tests left torch set to
ARGS = [*FAST, "--batch_size=4", "--epochs=2", "--checkpoint_every_steps=5", "--max_train_rows=48",
        "--max_val_rows=32", "--torch_threads=1"]


def _lines(path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(train_tier, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", "--data", str(train_tier), "--out", str(ref), *ARGS]) == 0
    reference = read_jsonl(ref / "steps.jsonl")
    assert len(reference) == 24

    proc = subprocess.Popen([sys.executable, "-m", "darkhaloscope", "train", "--data", str(train_tier),
                             "--out", str(run), *ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _lines(run / "steps.jsonl") < 7 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)  # step 7 logged => the step-5 checkpoint has landed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = _lines(run / "steps.jsonl")
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and 0 < ck["cursor"]["batches_done"] < 12, "the kill must land in mid-epoch"
    assert ck["step"] % 5 == 0 and ck["step"] <= killed_at

    assert main(["train", "--data", str(train_tier), "--out", str(run), *ARGS, "--resume", "auto"]) == 0
    resumed = read_jsonl(run / "steps.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 25))
    assert resumed == reference  # losses and learning rates equal, step for step (exact on CPU)
    assert read_jsonl(run / "metrics.jsonl")[-1]["val_auroc"] == read_jsonl(ref / "metrics.jsonl")[-1]["val_auroc"]
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(ref / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


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


def test_resume_epoch_boundary_continues_next_epoch(train_tier, tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=1"]) == 0
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--epochs=2", "--resume", "auto"]) == 0
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1]
    assert [r["step"] for r in read_jsonl(run / "steps.jsonl")] == [1, 2, 3, 4]
