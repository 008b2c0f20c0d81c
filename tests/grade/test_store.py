"""The grades database: schema and migrations, refusals (missing, corrupt, newer, read-only), candidates from a
scores file, regrade / undo history, queues, idempotent retries, and several writers at once (threads,
processes, a writer killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gradefactory import write_scores  # noqa: E402

from darkhaloscope.errors import DataError, EnvironmentFault, MissingInputError, UsageError  # noqa: E402
from darkhaloscope.grade.store import MIGRATIONS, SCHEMA_VERSION, open_store  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "g.sqlite", create=True)
    s.add_candidates(write_scores(tmp_path / "scores.parquet", 20))
    yield s
    s.close()


def test_new_database_is_wal_full_sync_and_versioned(tmp_path):
    with open_store(tmp_path / "g.sqlite", create=True) as s:
        conn = s._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "candidates", "grades"} <= tables
    with open_store(tmp_path / "g.sqlite", create=False) as s:  # reopening changes nothing
        assert s.schema_version() == SCHEMA_VERSION and s.count() == 0


def test_migration_from_v1_keeps_grades_and_lifts_ra_dec(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO meta VALUES ('application', 'darkhaloscope.grade')")
    conn.execute("INSERT INTO candidates (candidate_id, score, metadata, added_utc) VALUES ('x1', 0.9, ?, 't')",
                 (json.dumps({"ra": 150.5, "dec": -2.25}),))
    conn.execute("INSERT INTO grades (candidate_id, grader, grade, time_utc) VALUES ('x1', 'ana', 'A', 't')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with open_store(path, create=False) as s:
        assert s.schema_version() == SCHEMA_VERSION
        c = s.candidate("x1")
        assert (c["ra"], c["dec"]) == (150.5, -2.25)
        assert [(g["grader"], g["grade"]) for g in s.latest_grades()] == [("ana", "A")]


def test_refusals_are_one_line_errors(tmp_path):
    with pytest.raises(MissingInputError, match="no such grades database"):
        open_store(tmp_path / "none.sqlite", create=False)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DataError, match="not a readable SQLite database"):
        open_store(bad, create=False)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        open_store(empty, create=False)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(DataError, match="not a darkhaloscope grades database"):
        open_store(other, create=True)
    newer = tmp_path / "newer.sqlite"
    open_store(newer, create=True).close()
    c = sqlite3.connect(newer)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.commit()
    c.close()
    with pytest.raises(EnvironmentFault, match="upgrade darkhaloscope") as e:
        open_store(newer, create=False)
    assert "\n" not in str(e.value)


def test_read_only_folder_is_refused(tmp_path, monkeypatch):
    """chmod 555 on the folder; root writes anywhere, so as root os.access answers as for another user."""
    folder = tmp_path / "ro"
    folder.mkdir()
    open_store(folder / "g.sqlite", create=True).close()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and not (
            mode & os.W_OK and Path(p).resolve().is_relative_to(folder.resolve())))
    try:
        for create in (False, True):
            with pytest.raises(EnvironmentFault, match="read-only folder"):
                open_store(folder / "g.sqlite", create=create)
        with pytest.raises(EnvironmentFault, match="read-only folder"):
            open_store(folder / "new.sqlite", create=True)
    finally:
        folder.chmod(0o755)


def test_read_only_copy_is_read_for_export_unless_its_wal_holds_grades(tmp_path, monkeypatch):
    """An archived database in a read-only folder: export/report/progress read it as it is (nothing written
    beside it); refused when its -wal still holds grades the database file lacks, and for anything that writes."""
    folder = tmp_path / "archive"
    folder.mkdir()
    with open_store(folder / "g.sqlite", create=True) as s:
        s.add_candidates(write_scores(tmp_path / "s.parquet", 6))
        s.grade(s.queue("ana")[0], "ana", "A")
    assert sorted(p.name for p in folder.iterdir()) == ["g.sqlite"]  # closed cleanly: WAL checkpointed away
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and not (
        mode & os.W_OK and Path(p).resolve().is_relative_to(folder.resolve())))
    with open_store(folder / "g.sqlite", create=False, read_only=True) as s:
        assert [g["grade"] for g in s.latest_grades()] == ["A"] and s.read_only
        with pytest.raises(EnvironmentFault, match="cannot write the grades database"):
            s.grade(s.queue("bo")[0], "bo", "B")
    assert sorted(p.name for p in folder.iterdir()) == ["g.sqlite"]
    with pytest.raises(EnvironmentFault, match="read-only folder"):
        open_store(folder / "g.sqlite", create=False)  # serve / grading need to write
    (folder / "g.sqlite-wal").write_bytes(b"x" * 64)
    with pytest.raises(EnvironmentFault, match="its -wal file holds grades not yet in the database file"):
        open_store(folder / "g.sqlite", create=False, read_only=True)


def test_candidates_from_scores_file(tmp_path):
    with open_store(tmp_path / "g.sqlite", create=True) as s:
        assert s.add_candidates(write_scores(tmp_path / "s.parquet", 20), top=5) == {"added": 5, "updated": 0}
        cands = s.candidates()
        assert [c["candidate_id"] for c in cands] == ["c000", "c001", "c002", "c003", "c004"]
        assert [c["rank"] for c in cands] == [1, 2, 3, 4, 5]
        c = s.candidate("c002")
        assert (c["source_file"], c["source_row"], c["data"], c["split"]) == \
            ("region_split=test/part-0.parquet", 2, "tier", "test")
        assert c["ra"] == pytest.approx(150.52) and c["metadata"]["brickname"] == "1500p02"
        assert "img_mean" not in c["metadata"] and len(c["checkpoint_hash"]) == 16
        assert s.add_candidates(tmp_path / "s.parquet", top=7, data="moved") == {"added": 2, "updated": 5}
        assert s.candidate("c000")["data"] == "moved"


def test_scores_file_without_ids_or_with_duplicates_is_refused(tmp_path):
    with open_store(tmp_path / "g.sqlite", create=True) as s:
        with pytest.raises(DataError, match=r"no row_id column"):
            s.add_candidates(write_scores(tmp_path / "a.parquet", 5, drop=("row_id",)))
        with pytest.raises(DataError, match=r"b\.parquet: duplicate row_id \"dup\""):
            s.add_candidates(write_scores(tmp_path / "b.parquet", 4, ids=["u1", "dup", "u2", "dup"]))
        with pytest.raises(MissingInputError):
            s.add_candidates(tmp_path / "missing.parquet")
        assert s.count() == 0


def _with_column(path, name, array):
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    i = t.column_names.index(name) if name in t.column_names else None
    t2 = t.set_column(i, name, array) if i is not None else t.append_column(name, array)
    pq.write_table(t2.replace_schema_metadata(t.schema.metadata), path)
    return path


@pytest.mark.parametrize("name,values,words", [
    ("row_id", lambda n: pa.array([b"\xff\xfe" + bytes([i]) for i in range(n)], pa.binary()), "row_id cannot be read as text"),
    ("logit", lambda n: pa.array(["x"] * n), "logit cannot be read as numbers"),
    ("source_row", lambda n: pa.array([2 ** 64 - 1] * n, pa.uint64()), "source_row cannot be read as 64-bit"),
    ("source_row", lambda n: pa.array([-5] * n, pa.int64()), "has source_row -5"),
    ("source_row", lambda n: pa.array([None] * n, pa.int64()), "has source_row null"),
    ("source_row", lambda n: pa.array(["3"] * n), "source_row is string, not whole numbers"),
])
def test_hostile_columns_of_a_scores_file_are_one_line_and_make_no_database(tmp_path, capsys, name, values, words):
    """Each raised an Arrow / SQLite / int() traceback in `grade add` or later in `grade export`, after an empty
    database had been made."""
    from darkhaloscope.cli import main

    scores = _with_column(write_scores(tmp_path / "s.parquet", 6), name, values(6))
    assert main(["grade", "add", str(scores), "--db", str(tmp_path / "g.sqlite")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "s.parquet" in err and words in err, err
    assert not (tmp_path / "g.sqlite").exists()


def test_an_integer_beyond_64_bits_is_kept_as_its_digits(tmp_path):
    scores = _with_column(write_scores(tmp_path / "s.parquet", 3), "objid", pa.array([2 ** 64 - 1] * 3, pa.uint64()))
    with open_store(tmp_path / "g.sqlite", create=True) as s:
        s.add_candidates(scores)
        assert s.candidate("c000")["metadata"]["objid"] == str(2 ** 64 - 1)


@pytest.mark.parametrize("tamper,words", [
    ("UPDATE candidates SET metadata = '{bad' WHERE candidate_id = 'c003'", 'candidate "c003" has metadata'),
    ("UPDATE candidates SET score = 'abc' WHERE candidate_id = 'c001'", 'candidate "c001" has a score'),
    ("UPDATE grades SET grade = 'Z'", 'grade row "1" has a grade'),
    ("UPDATE grades SET grader = 'ana' || char(10)", "grader"),
])
def test_a_database_edited_outside_is_one_line_for_its_readers(tmp_path, capsys, tamper, words):
    """Export, report and progress read it: a JSONDecodeError, a KeyError or a TypeError before."""
    from darkhaloscope.cli import main

    db = tmp_path / "g.sqlite"
    with open_store(db, create=True) as s:
        s.add_candidates(write_scores(tmp_path / "s.parquet", 6))
        s.grade("c000", "ana", "A")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA ignore_check_constraints = 1")
    conn.execute(tamper)
    conn.commit()
    conn.close()
    for argv in (["export", "--out", str(tmp_path / "e.parquet")], ["report", "--out", str(tmp_path / "r")],
                 ["progress"]):
        assert main(["grade", *argv, "--db", str(db)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a readable grades database" in err
        assert words in err, err
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "r").exists()


def test_validation_of_keys_tags_and_graders(store):
    with pytest.raises(UsageError, match="unknown grade key"):
        store.grade("c000", "ana", "X")
    with pytest.raises(UsageError, match="unknown tag"):
        store.grade("c000", "ana", "N", tag="blob")
    for name in ("", "a b", "<script>", "total", "x" * 41, "ana\n"):
        with pytest.raises(UsageError, match="grader name"):
            store.grade("c000", name, "A")
    with pytest.raises(UsageError, match="no candidate"):
        store.grade("nope", "ana", "A")
    with pytest.raises(UsageError, match="queue order"):
        store.queue("ana", "alphabetical")
    assert store.history() == []
    assert store.grade("c000", "ana", "n", tag="ring") > 0  # keys are case-insensitive
    assert store.latest_grades()[0]["grade"] == "N"


def test_regrade_and_undo_keep_history(store):
    store.grade("c000", "ana", "A")
    store.grade("c001", "ana", "C")
    store.grade("c000", "ana", "B")  # regrade: latest wins
    store.grade("c000", "bo", "N", tag="spiral")
    assert {(g["candidate_id"], g["grader"]): g["grade"] for g in store.latest_grades()} == \
        {("c000", "ana"): "B", ("c001", "ana"): "C", ("c000", "bo"): "N"}
    assert store.undo("ana") == "c000"  # retracts the B: the A stands again
    assert {(g["candidate_id"], g["grader"]): g["grade"] for g in store.latest_grades()}[("c000", "ana")] == "A"
    assert store.undo("ana") == "c001"
    assert store.undo("ana") == "c000"
    assert store.undo("ana") is None
    assert [(g["grader"], g["grade"]) for g in store.latest_grades()] == [("bo", "N")]
    hist = store.history()
    assert len(hist) == 7 and [h["grade"] for h in hist[:4]] == ["A", "C", "B", "N"]
    assert [h["retracts"] for h in hist[4:]] == [hist[2]["id"], hist[1]["id"], hist[0]["id"]]
    assert store.latest_grades()[0]["score"] == pytest.approx(store.candidate("c000")["score"])


def test_queues_and_progress(store):
    assert store.queue("ana") == [f"c{i:03d}" for i in range(20)]
    store.grade("c000", "ana", "A")
    store.grade("c001", "ana", "S")  # skipped: comes back after the unseen ones
    q = store.queue("ana")
    assert q[0] == "c002" and q[-1] == "c001" and "c000" not in q and len(q) == 19
    r1, r2 = store.queue("ana", "random", seed=1), store.queue("ana", "random", seed=2)
    assert r1 == store.queue("ana", "random", seed=1) and r1 != r2 and sorted(r1[:-1]) == sorted(q[:-1])
    store.grade("c010", "bo", "A")
    store.grade("c010", "cy", "N")  # spread 1.5: first to resolve
    store.grade("c005", "bo", "B")
    store.grade("c005", "cy", "C")  # spread 0.5
    store.grade("c003", "bo", "B")  # one grade: no spread
    assert store.queue("ana", "disagreement")[:3] == ["c010", "c005", "c002"]
    assert store.progress() == {"ana": 1, "bo": 3, "cy": 2, "total": 20}


def test_client_token_makes_retries_idempotent(store):
    first = store.grade("c000", "ana", "A", client_token="t-1")
    assert store.grade("c000", "ana", "A", client_token="t-1") == first
    assert len(store.history()) == 1
    with pytest.raises(UsageError, match="already used"):
        store.grade("c001", "ana", "B", client_token="t-1")
    assert store.undo("ana", client_token="u-1") == "c000"
    assert store.undo("ana", client_token="u-1") == "c000"  # the retry retracts nothing more
    assert len(store.history()) == 2


def test_writers_in_threads_lose_and_duplicate_nothing(store):
    errors = []

    def work(k):
        try:
            for i in range(20):
                for _ in range(2):  # each post sent twice, as a client retrying after a timeout
                    store.grade(f"c{i:03d}", f"g{k}", "ABCN"[i % 4], client_token=f"{k}-{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.history()) == 6 * 20
    assert store.progress() == {f"g{k}": 20 for k in range(6)} | {"total": 20}


WRITER = """
import sys
from darkhaloscope.grade.store import open_store
s = open_store(sys.argv[1], create=False)
k, n = sys.argv[2], int(sys.argv[3])
for i in range(n):
    for _ in range(2):
        gid = s.grade(f"c{i % 20:03d}", f"p{k}", "ABCN"[i % 4], client_token=f"{k}-{i}")
    print(gid, flush=True)
"""


def test_writers_in_processes_and_a_killed_writer_lose_no_acknowledged_grade(store):
    db = str(store.path)
    env = os.environ | {"PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db, str(k), "40"], stdout=subprocess.PIPE, text=True,
                              env=env) for k in range(3)]
    victim = subprocess.Popen([sys.executable, "-c", WRITER, db, "v", "100000"], stdout=subprocess.PIPE, text=True,
                              env=env)
    acked = [int(victim.stdout.readline()) for _ in range(30)]  # each line printed after its COMMIT returned
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in procs:
        assert p.wait(timeout=60) == 0
    store.close()
    with open_store(db, create=False) as s:
        hist = s.history()
        ids = {h["id"] for h in hist}
        assert set(acked) <= ids
        assert sum(h["grader"] == f"p{k}" for h in hist for k in range(3)) == 3 * 40
        tokens = [h["client_token"] for h in hist]
        assert len(tokens) == len(set(tokens))


def test_cli_add_and_progress(tmp_path, capsys):
    from darkhaloscope.cli import main

    scores = write_scores(tmp_path / "s.parquet", 12)
    db = tmp_path / "g.sqlite"
    assert main(["grade", "add", str(scores), "--db", str(db), "--top", "10"]) == 0
    assert "10 candidate(s) added" in capsys.readouterr().out
    with open_store(db, create=False) as s:
        s.grade("c000", "ana", "A")
    assert main(["grade", "progress", "--db", str(db)]) == 0
    assert "ana" in capsys.readouterr().out
    assert main(["grade", "progress", "--db", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no such grades database" in err
    (tmp_path / "bad.sqlite").write_bytes(b"x" * 4096)
    assert main(["grade", "add", str(scores), "--db", str(tmp_path / "bad.sqlite")]) == 1
