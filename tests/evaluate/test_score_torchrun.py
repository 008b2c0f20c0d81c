"""`dhs score` under torchrun (2 CPU processes, gloo): each rank scores its share, rank 0 merges one file
whose rows and logits equal a single-process run."""

import os
import subprocess
import sys

import numpy as np
import pytest
import pyarrow.parquet as pq


@pytest.mark.slow
def test_torchrun_score_equals_single_process(demo, tmp_path):
    out = tmp_path / "scores_ddp.parquet"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "darkhaloscope",
           "score", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores_ddp.parquet"]  # rank parts merged and removed
    single = pq.read_table(demo["scores"]).sort_by("row_id")
    merged = pq.read_table(out).sort_by("row_id")
    ids = merged["row_id"].to_pylist()
    assert len(set(ids)) == len(ids) and ids == single["row_id"].to_pylist()  # every row exactly once
    np.testing.assert_allclose(merged["logit"].to_numpy(), single["logit"].to_numpy(), rtol=1e-5, atol=1e-5)
    assert merged["label"].to_pylist() == single["label"].to_pylist()
