"""torchrun with 2 CPU processes (gloo): disjoint rows on each rank, equal step counts, one writer."""

import json
import subprocess
import sys

import pytest

from trainhelpers import FAST, read_jsonl


@pytest.mark.slow
def test_torchrun_two_cpu_ranks(train_tier, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "darkhaloscope", "train", "--data", str(train_tier), "--out", str(run), *FAST, "--epochs=2",
           "--shard_check_rows=1000", "--checkpoint_every_steps=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    # 96 train rows -> 48 per rank -> 3 batches of 16 per epoch on each rank
    assert summary["steps_per_rank"] == [6, 6] and summary["steps_per_epoch"] == 3
    # every train row of epoch 0 checked: each rank saw 48 rows, no row on both ranks
    assert summary["shard_check"] == {"rows_per_rank": [48, 48], "overlap": 0}
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1]  # one row per epoch: a single writer
    assert all(m["val_n"] == 96 for m in metrics)  # val shards gathered from both ranks: every row once
    assert [s["step"] for s in read_jsonl(run / "steps.jsonl")] == list(range(1, 7))
    names = sorted(p.name for p in run.iterdir())
    assert names == ["best.pt", "config.yaml", "last.pt", "metrics.csv", "metrics.jsonl", "run.json", "steps.jsonl",
                     "summary.json"]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert proc.stdout.count("best val AUROC") == 1  # rank 1 prints nothing


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
