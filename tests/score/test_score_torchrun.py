"""`dhs score` under torchrun (2 CPU processes, gloo): each rank scores its share, rank 0 merges one file
whose rows and logits equal a single-process run; a committee with --combine rank is ranked over the merged
rows (all of them), as in one process."""

import os
import subprocess
import sys

import numpy as np
import pytest
import pyarrow.parquet as pq

from darkhaloscope.cli import main
from darkhaloscope.score.committee import rank_fractions
from darkhaloscope.score.scoresfile import read_provenance


def _torchrun_score(out, *args):
    """`dhs score ... --out OUT` under torchrun, 2 CPU processes (gloo); asserts exit 0 and the parts merged."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "darkhaloscope",
           "score", *args, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # rank parts merged and removed
    return proc


@pytest.mark.slow
def test_torchrun_score_equals_single_process(demo, tmp_path):
    out = tmp_path / "scores_ddp.parquet"
    proc = _torchrun_score(out, "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]))
    single = pq.read_table(demo["scores"]).sort_by("row_id")
    merged = pq.read_table(out).sort_by("row_id")
    ids = merged["row_id"].to_pylist()
    assert len(set(ids)) == len(ids) and ids == single["row_id"].to_pylist()  # every row exactly once
    np.testing.assert_allclose(merged["logit"].to_numpy(), single["logit"].to_numpy(), rtol=1e-5, atol=1e-5)
    assert merged["label"].to_pylist() == single["label"].to_pylist()
    # one report, by rank 0, counting the rows of every rank (each rank printed its own share before)
    said = [line for line in proc.stdout.splitlines() if line.startswith("scored ")]
    assert len(said) == 1 and said[0].startswith(f"scored {len(ids):,} stamps"), proc.stdout


@pytest.mark.slow
def test_torchrun_committee_rank_combine_equals_single_process(demo, second, tmp_path):
    members = ["--checkpoint", str(demo["checkpoint"]), "--checkpoint", str(second), "--combine", "rank",
               "--data", str(demo["tier"])]
    (tmp_path / "ddp").mkdir()
    out = tmp_path / "ddp" / "rank.parquet"
    _torchrun_score(out, *members)
    single = tmp_path / "single.parquet"
    assert main(["score", *members, "--out", str(single), "--quiet"]) == 0
    a, b = pq.read_table(single).sort_by("row_id"), pq.read_table(out).sort_by("row_id")
    assert b["row_id"].to_pylist() == a["row_id"].to_pylist()  # every row once
    for col in ("logit_m0", "logit_m1", "score", "logit"):
        np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-5, atol=1e-5, err_msg=col)
    # ranked over all merged rows, not within each rank's half
    q = np.mean([rank_fractions(b[c].to_numpy().astype(np.float64)) for c in ("logit_m0", "logit_m1")], 0)
    np.testing.assert_allclose(b["score"].to_numpy(), q, atol=1e-6)
    info = read_provenance(pq.ParquetFile(out).schema_arrow)
    assert info["committee"]["combine"] == "rank" and info["shard"] == [0, 1]  # the merged file is all shards
