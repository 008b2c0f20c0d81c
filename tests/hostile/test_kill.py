"""kill -9 at random moments: train loses at most one checkpoint interval and never best.pt; pack and
score leave whole files only (an unfinished pack is refused, never read as whole); simulate's workers die
with their parent. Issue #14 items 6, 7, 10, 11 and the goal line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hostilehelpers import REPO, TRAIN_FAST, dhs_subprocess
from tierfactory import make_tier

pytestmark = pytest.mark.slow


def _start(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "darkhaloscope", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after(p: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `p` after `seconds` unless it ended first; True when it was killed."""
    try:
        p.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids = (task / "children")
        if kids.exists():
            out += [int(x) for x in kids.read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def big_tier(tmp_path) -> Path:
    return make_tier(tmp_path / "tier", rows_per_split=48, files_per_split=3, row_group_size=8)


@pytest.mark.parametrize("seed", [1, 2])
def test_train_killed_at_random_moments_resumes_with_best_pt(big_tier, tmp_path, seed):
    rng = random.Random(seed)
    run = tmp_path / "run"
    argv = ["train", "--data", big_tier, "--out", run, *TRAIN_FAST, "--epochs=3", "--checkpoint_every_steps=1"]
    for _ in range(2):
        p = _start(*argv, "--resume", "auto")
        killed = _kill_after(p, rng.uniform(2.0, 9.0))
        assert killed or p.returncode == 0, p.stderr.read()
    done = dhs_subprocess(*argv, "--resume", "auto")
    assert done.returncode == 0, done.stderr
    steps = [json.loads(x)["step"] for x in (run / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 3 * 6 + 1))  # every step logged exactly once after the kills
    assert (run / "best.pt").is_file() and not list(run.glob(".*.tmp"))
    epochs = [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]


@pytest.mark.parametrize("seed", [1, 2])
def test_pack_and_score_killed_at_random_moments_leave_whole_files(big_tier, tmp_path, seed):
    rng = random.Random(seed)
    out = tmp_path / "packed"
    killed = _kill_after(_start("pack", big_tier, out, "--workers=1"), rng.uniform(0.5, 4.0))
    for shard in out.rglob("*.parquet"):
        assert pq.read_metadata(shard).num_rows > 0  # whole shards only (temp file + rename)
    if killed and not (out / "_dhs_packed.json").exists():
        p = dhs_subprocess("train", "--data", out, "--out", tmp_path / "run", *TRAIN_FAST)
        assert p.returncode in (1, 2) and p.stderr.count("error:") == 1  # refused: never trained as whole
    assert dhs_subprocess("train", "--data", big_tier, "--out", tmp_path / "r2", *TRAIN_FAST).returncode == 0
    ck = tmp_path / "r2" / "best.pt"
    scores = tmp_path / "s.parquet"
    _kill_after(_start("score", "--checkpoint", ck, "--data", big_tier, "--out", scores), rng.uniform(1.0, 5.0))
    if scores.exists():
        assert pq.read_metadata(scores).num_rows == 144
    p = dhs_subprocess("score", "--checkpoint", ck, "--data", big_tier, "--out", scores)
    assert p.returncode == 0 and pq.read_metadata(scores).num_rows == 144 and not list(tmp_path.glob(".*.tmp"))


def test_simulate_workers_die_with_their_parent(tmp_path):
    p = _start("simulate", "--out", tmp_path, "--tier", "t", "--rows=4000", "--seed=1", "--workers=2",
               "--rows-per-file=20", "-q")
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while len(workers) < 2 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
        workers = _children(p.pid)
    assert len(workers) >= 2, "simulate did not start its workers"
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(2.0)
    assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    before = sorted((tmp_path / "t").rglob("*"))
    time.sleep(2.0)
    assert sorted((tmp_path / "t").rglob("*")) == before  # nothing more is written
    for f in (tmp_path / "t").rglob("*.parquet"):
        pq.read_metadata(f)  # and what was written is whole
