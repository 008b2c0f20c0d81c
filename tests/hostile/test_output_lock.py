"""One writer per output (issue #26 item 9): every command that writes an --out / OUT takes the advisory
lock `.<name>.dhs-lock` beside it; a second writer is refused (exit 3) naming the holder's pid and host, and a
lock left by a dead process on this host is reclaimed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.outlock import lock_path, output_lock
from darkhaloscope.survey.fakeservice import FakeCutoutService
from hostilehelpers import REPO, TRAIN_FAST, dhs


@pytest.mark.parametrize("argv", [
    ["cutouts", "{t}/targets.parquet", "--out", "{out}"], ["simulate", "--out", "{out}", "--tier", "demo", "--rows=8", "--seed=1"],
    ["train", "--data", "{tier}", "--out", "{out}", *TRAIN_FAST], ["pack", "{tier}", "{out}"],
    ["catalog", "--out", "{out}", "--negatives", "{t}/neg.parquet"],
    ["score", "--checkpoint", "{ck}", "--data", "{tier}", "--out", "{out}"],
    ["mine", "--checkpoint", "{ck}", "--data", "{tier}", "--top", "5", "--out", "{out}"],
    ["evaluate", "{t}/scores.parquet", "--out", "{out}"], ["candidates", "{t}/scores.parquet", "--out", "{out}"],
])
def test_second_writer_is_refused_naming_the_holder(argv, tier, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    args = [a.format(t=tmp_path, out=out, tier=tier, ck=checkpoint) for a in argv]
    with output_lock(out) as held:
        before = held.read_text()
        rc, _, err = dhs(capsys, *args)
        assert held.read_text() == before  # the holder's lock untouched
    assert rc == 3 and f"{out}: another dhs command is writing it (pid {os.getpid()} on host " \
        f"{socket.gethostname()}" in err, err
    assert not out.exists() and not lock_path(out).exists()


def test_output_lock_reclaims_a_dead_holder_refuses_a_live_or_foreign_one(tmp_path):
    from darkhaloscope.outlock import OutputLockedError

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    notes: list[str] = []
    for holder in ({"pid": dead.pid, "host": socket.gethostname()},  # died: reclaimed
                   {"pid": os.getpid(), "host": socket.gethostname()}):  # pid alive but no flock held: pid reused
        lock_path(out).write_text(json.dumps(holder))
        with output_lock(out, note=notes.append) as p:
            assert json.loads(p.read_text())["pid"] == os.getpid()
            with pytest.raises(OutputLockedError, match=f"pid {os.getpid()} on host"):
                with output_lock(out):
                    pass
        assert not p.exists()
    assert len(notes) == 2
    lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": "gpu-node-7"}))
    with pytest.raises(OutputLockedError, match="on host gpu-node-7.*remove the lock file"):
        with output_lock(out):
            pass
    assert lock_path(out).exists()


def test_two_spellings_of_one_output_share_its_lock(tmp_path):
    from darkhaloscope.outlock import OutputLockedError

    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with output_lock(tmp_path / "data" / "tier"):
        for other in (tmp_path / "link" / "tier", tmp_path / "data" / ".." / "data" / "tier"):
            with pytest.raises(OutputLockedError):
                with output_lock(other):
                    pass


def test_a_refused_command_leaves_no_folders_made_for_its_lock(tier, tmp_path, capsys):
    out = tmp_path / "typo" / "deeper" / "scores.parquet"
    rc, _, err = dhs(capsys, "score", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(tier), "--out", str(out))
    assert rc != 0 and err.startswith("error: ") and not (tmp_path / "typo").exists()
    (tmp_path / "kept").mkdir()
    with output_lock(tmp_path / "kept" / "new" / "run") as held:
        (held.parent / "a-file").write_text("written")  # a folder the command wrote into stays
    assert (tmp_path / "kept" / "new" / "a-file").exists() and not held.exists()


@pytest.mark.slow  # ~3 s idle, 10 s on this loaded box: imports, a fake service
def test_stale_lock_of_a_dead_process_is_reclaimed_another_hosts_is_not(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = targets(tmp_path / "t.parquet", 150, 3)
    out = tmp_path / "tier"
    stale = {"pid": dead.pid, "host": socket.gethostname(), "command": "dhs cutouts", "started": "earlier"}
    lock_path(out).write_text(json.dumps(stale))
    with FakeCutoutService() as svc:
        rc, _, err = dhs(capsys, "cutouts", t, "--out", out, "--service-url", svc.url, "-q")
        assert rc == 0 and "took over the lock its earlier command left" in err, err
        assert not lock_path(out).exists() and (out / "manifest.json").is_file()
        lock_path(out).write_text(json.dumps({**stale, "host": "gpu-node-7"}))
        rc, _, err = dhs(capsys, "cutouts", t, "--out", out, "--service-url", svc.url, "-q")
    assert rc == 3 and f"pid {dead.pid} on host gpu-node-7" in err and "remove the lock file" in err, err


def targets(path, ra0: float, n: int = 6):
    pq.write_table(pa.table({"target_id": [f"{path.stem}{i}" for i in range(n)], "ra": ra0 + 0.01 * np.arange(n),
                             "dec": np.full(n, 2.0), "label": [0, 1] * (n // 2) + [0] * (n % 2),
                             "split": (["train", "val", "test"] * n)[:n]}), path)
    return path


@pytest.mark.slow  # ~9 s: a second process fetching through a slow service
def test_two_cutouts_runs_into_one_folder_do_not_mix(tmp_path, capsys):
    """The issue's reproducer: list B into the folder list A is being fetched into: B is refused, A finishes."""
    a, b = targets(tmp_path / "a.parquet", 150), targets(tmp_path / "b.parquet", 160)
    out = tmp_path / "tier"
    with FakeCutoutService(latency_s=0.5) as svc:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        first = subprocess.Popen([sys.executable, "-m", "darkhaloscope", "cutouts", str(a), "--out", str(out),
                                  "--service-url", svc.url, "--rate-limit", "0", "-q"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(400):
            if lock_path(out).exists():
                break
            time.sleep(0.05)
        rc, _, err = dhs(capsys, "cutouts", b, "--out", out, "--service-url", svc.url, "--rate-limit", "0", "-q")
        assert rc == 3 and f"pid {first.pid}" in err and "dhs cutouts" in err, err
        assert first.wait(120) == 0, first.stderr.read()
    ids = pa.concat_tables([pq.read_table(p) for p in out.glob("region_split=*/*.parquet")])["stamp_id"].to_pylist()
    assert sorted(ids) == [f"a{i}" for i in range(6)]
    assert json.loads((out / "manifest.json").read_text())["targets"] == [str(a)]
