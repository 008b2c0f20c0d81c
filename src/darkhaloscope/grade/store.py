"""The grades database: one SQLite file (WAL, `synchronous=FULL`) that several graders write at once and that
loses no acknowledged grade when the process is killed.

Tables: `candidates` (one row per stamp to grade: id, score, rank, checkpoint hash, split, metadata JSON and
where its pixels are: data + source_file + source_row, as the scores file recorded them) and `grades` (one row
per key press: a regrade is a new row, the latest per grader wins; an undo is a row that `retracts` an earlier
one; nothing is ever deleted). `meta` names the application; `PRAGMA user_version` is the schema version and
MIGRATIONS are applied in order when an older database is opened.

    store = open_store("grades.sqlite", create=True)
    store.add_candidates("scores.parquet", top=500)          # grade.ingest reads the scores file
    store.grade(store.queue("ana")[0], "ana", "A")

Exercised by `dhs grade serve / export / report` and tests/grade/test_store.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from darkhaloscope.errors import DataError, EnvironmentFault, MissingInputError, UsageError

GRADES = ("A", "B", "C", "N", "S")  # A sure lens, B probable, C possible, N not a lens, S skipped (no opinion)
TAGS = ("ring", "spiral", "companion", "merger", "artefact", "other")  # what a non-lens (or doubtful one) is
ORDERS = ("score", "disagreement", "random")
GRADE_VALUE = {"A": 3, "B": 2, "C": 1, "N": 0}  # the SuGOHI / HOLISMOKES scale; S carries no value
APPLICATION = "darkhaloscope.grade"
BUSY_TIMEOUT_MS = 15_000  # a writer waits this long for another writer's transaction before failing
GRADER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")  # graders name themselves (shown in pages and reports);
# matched whole with fullmatch: "$" also matches before a final newline
RESERVED_GRADERS = ("total",)  # progress() uses it as a key

MIGRATIONS: tuple[str, ...] = (
    # v1: candidates, grades (a regrade is a new row; an undo retracts a row), meta
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE candidates (
        candidate_id TEXT PRIMARY KEY, score REAL, rank INTEGER, checkpoint_hash TEXT, split TEXT,
        metadata TEXT NOT NULL DEFAULT '{}', data TEXT, source_file TEXT, source_row INTEGER,
        scores_file TEXT, added_utc TEXT NOT NULL);
    CREATE TABLE grades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        candidate_id TEXT NOT NULL REFERENCES candidates(candidate_id),
        grader TEXT NOT NULL,
        grade TEXT CHECK (grade IN ('A', 'B', 'C', 'N', 'S')),
        tag TEXT CHECK (tag IS NULL OR tag IN ('ring', 'spiral', 'companion', 'merger', 'artefact', 'other')),
        time_utc TEXT NOT NULL, score REAL, checkpoint_hash TEXT,
        client_token TEXT UNIQUE,
        retracts INTEGER REFERENCES grades(id),
        CHECK ((grade IS NULL) = (retracts IS NOT NULL)));
    CREATE INDEX grades_by_grader ON grades(grader, id);
    CREATE INDEX grades_by_candidate ON grades(candidate_id, grader, id);
    CREATE UNIQUE INDEX grades_retracted ON grades(retracts) WHERE retracts IS NOT NULL;
    """,
    # v2: sky position as columns (export and cross-matches read them), lifted from the metadata JSON
    """
    ALTER TABLE candidates ADD COLUMN ra REAL;
    ALTER TABLE candidates ADD COLUMN dec REAL;
    UPDATE candidates SET ra = json_extract(metadata, '$.ra'), dec = json_extract(metadata, '$.dec');
    CREATE INDEX candidates_by_score ON candidates(score DESC, candidate_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# rows of `grades` that count: not a retraction and not retracted
EFFECTIVE = ("SELECT * FROM grades g WHERE g.retracts IS NULL "
             "AND NOT EXISTS (SELECT 1 FROM grades r WHERE r.retracts = g.id)")
# the latest effective row per (candidate, grader)
LATEST = (f"SELECT e.* FROM ({EFFECTIVE}) e JOIN (SELECT candidate_id, grader, MAX(id) AS id FROM ({EFFECTIVE}) "
          "GROUP BY candidate_id, grader) m ON e.id = m.id")
GRADE_COLUMNS = ("id", "candidate_id", "grader", "grade", "tag", "time_utc", "score", "checkpoint_hash")
CANDIDATE_COLUMNS = ("candidate_id", "score", "rank", "checkpoint_hash", "split", "metadata", "data", "source_file",
                     "source_row", "scores_file", "added_utc", "ra", "dec")


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def open_store(path: str | os.PathLike, *, create: bool, read_only: bool = False) -> "GradeStore":
    """Open (or with `create`, make) the grades database at `path`, migrated to SCHEMA_VERSION. One-line
    DHSErrors: missing (create=False), not a database, not a grades database, newer schema, read-only folder.
    `read_only` (export, report, progress): a database in a read-only folder (an archive, a shared copy) is
    read as it is, unless its -wal file still holds grades not yet in the database file (then refused)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give the grades database file, e.g. --db {path / 'grades.sqlite'}")
    if not path.exists():
        if not create:
            raise MissingInputError(f"{path}: no such grades database; make one with "
                                    f"`dhs grade serve SCORES --db {path}` (it adds the scored candidates)")
        if not path.parent.is_dir():
            raise MissingInputError(f"{path.parent}: no such folder for the grades database; create it first")
    folder = path.parent
    writable = os.access(folder, os.W_OK | os.X_OK) and (not path.exists() or os.access(path, os.R_OK | os.W_OK))
    if not writable and not (read_only and path.exists() and os.access(path, os.R_OK)):
        raise EnvironmentFault(f"{path}: cannot write there (read-only folder or file; SQLite in WAL mode writes "
                               "its -wal and -shm files beside it); copy the database to a writable folder")
    wal = path.with_name(path.name + "-wal")
    if not writable and wal.exists() and wal.stat().st_size > 0:
        raise EnvironmentFault(f"{path}: read-only, and its -wal file holds grades not yet in the database file; "
                               f"copy {path.name} and {wal.name} to a writable folder and read them there")
    store = GradeStore(path, read_only=not writable)
    store._check_and_migrate(create)
    if read_only:  # the readers (export, report, progress) first check what they will read
        store.check_contents()
    return store


class GradeStore:
    """The grades database. Each thread gets its own connection (the web app's worker threads, the tests'
    writers); each process opens its own store. Every write is one IMMEDIATE transaction."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only  # opened as an immutable file: no -wal/-shm written, every write refused
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._order_cache: dict[tuple, tuple[str, list[str]]] = {}  # (order, seed) -> (candidates_version, ids)

    # -- connections and transactions ------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                where = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1" if self.read_only else self.path
                conn = sqlite3.connect(where, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False, uri=self.read_only)
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = "wal" if self.read_only else conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if not self.read_only:
                    conn.execute("PRAGMA synchronous = FULL")  # a COMMIT returns after the WAL is fsynced
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as e:
                raise self._db_error(e) from None
            if str(mode).lower() != "wal":
                conn.close()
                raise EnvironmentFault(f"{self.path}: SQLite refused WAL mode (journal_mode={mode}); keep the "
                                       "database on a local disk, not a network share")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _db_error(self, e: sqlite3.Error) -> Exception:
        msg = str(e)
        if "not a database" in msg or "malformed" in msg:
            return DataError(f"{self.path}: not a readable SQLite database ({msg}); give the file `dhs grade "
                             "serve --db` made, or restore it from a copy")
        if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
            return EnvironmentFault(f"{self.path}: cannot write the grades database ({msg}); copy it to a "
                                    "writable folder")
        if "locked" in msg or "busy" in msg:
            return EnvironmentFault(f"{self.path}: the database stayed locked for {BUSY_TIMEOUT_MS / 1000:.0f} s "
                                    f"({msg}); another process holds a long transaction: retry")
        return DataError(f"{self.path}: SQLite error: {msg}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (writers queue on busy_timeout instead of failing on upgrade)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._db_error(e) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.IntegrityError):
                raise self._db_error(e) from None
            raise

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise self._db_error(e) from None

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> "GradeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def _check_and_migrate(self, create: bool) -> None:
        version = self.schema_version()
        tables = {r[0] for r in self._read("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > SCHEMA_VERSION:
            raise EnvironmentFault(f"{self.path}: grades database schema v{version} is newer than this darkhaloscope "
                                   f"reads (v{SCHEMA_VERSION}); upgrade darkhaloscope (pip install -U darkhaloscope)")
        if version == 0 and tables:
            raise DataError(f"{self.path}: a SQLite database but not a darkhaloscope grades database (tables: "
                            f"{', '.join(sorted(tables)[:6])}); give another --db path")
        if version == 0 and not create:
            raise DataError(f"{self.path}: an empty file, not a grades database; remove it, or give the file "
                            "`dhs grade serve --db` made")
        if version > 0 and self._meta("application") != APPLICATION:
            raise DataError(f"{self.path}: not a darkhaloscope grades database (no `application` in its meta "
                            "table); give another --db path")
        if self.read_only and version < SCHEMA_VERSION:
            raise EnvironmentFault(f"{self.path}: read-only, with grades database schema v{version} older than "
                                   f"this darkhaloscope's (v{SCHEMA_VERSION}); copy it to a writable folder "
                                   "(opening it there migrates it)")
        self.migrate(version)

    def check_contents(self) -> None:
        """DataError naming the first row a reader could not use: edited outside darkhaloscope (metadata not a JSON
        object, a score or source_row that is not a number, a grade or tag outside the keys despite the CHECKs,
        which `PRAGMA ignore_check_constraints` turns off, or a grader name this tool would refuse)."""
        keys, tags = ", ".join(f"'{g}'" for g in GRADES), ", ".join(f"'{t}'" for t in TAGS)
        probes = (
            ("candidate", "SELECT candidate_id FROM candidates WHERE json_valid(metadata) = 0 OR "
                          "json_type(metadata) != 'object' LIMIT 1", "metadata that is not a JSON object"),
            ("candidate", "SELECT candidate_id FROM candidates WHERE typeof(score) NOT IN ('real', 'integer', 'null') "
                          "OR typeof(source_row) NOT IN ('integer', 'null') OR typeof(rank) NOT IN ('integer', "
                          "'null') LIMIT 1", "a score, rank or source_row that is not a number"),
            ("grade row", f"SELECT id FROM grades WHERE (grade IS NOT NULL AND grade NOT IN ({keys})) OR "
                          f"(tag IS NOT NULL AND tag NOT IN ({tags})) OR typeof(score) NOT IN ('real', 'integer', "
                          "'null') LIMIT 1", "a grade, tag or score outside what `dhs grade` writes"),
        )
        for what, sql, why in probes:
            bad = self._read(sql)
            if bad:
                raise DataError(f"{self.path}: not a readable grades database: {what} {json.dumps(str(bad[0][0]))} "
                                f"has {why} (edited outside darkhaloscope?); restore it from a copy")
        for (name,) in self._read("SELECT DISTINCT grader FROM grades"):
            if not isinstance(name, str) or not GRADER_RE.fullmatch(name):
                raise DataError(f"{self.path}: not a readable grades database: grader {json.dumps(str(name))} is not a "
                                "name `dhs grade` accepts (edited outside darkhaloscope?); restore it from a copy")

    def migrate(self, version: int) -> None:
        """Apply MIGRATIONS[version:] in order, each with its user_version, in one transaction."""
        if version >= SCHEMA_VERSION:
            return
        with self._write() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have migrated
            for v in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[v].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {v + 1}")
            if current == 0:
                conn.execute("INSERT INTO meta VALUES ('application', ?), ('created_utc', ?)",
                             (APPLICATION, now_utc()))

    def _meta(self, key: str) -> str | None:
        try:
            rows = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        except sqlite3.OperationalError:
            return None
        return rows[0][0] if rows else None

    # -- candidates --------------------------------------------------------------------------------------
    def add_candidates(self, scores: str | os.PathLike, *, top: int | None = None, data: str | None = None) -> dict:
        """Add the `top` best-scored rows of a scores file (all when None); a candidate already here gets its
        new score, rank and source (its grades keep the score they were given at). {'added', 'updated'}."""
        from darkhaloscope.grade.ingest import read_candidates  # pyarrow: only when adding

        return self.put_candidates(read_candidates(scores, top=top, data=data))

    def put_candidates(self, rows: list[dict]) -> dict:
        """Insert or update candidate rows (dicts with CANDIDATE_COLUMNS keys; metadata a dict)."""
        stamp = now_utc()
        added = updated = 0
        with self._write() as conn:
            conn.execute("INSERT INTO meta VALUES ('candidates_version', '1') ON CONFLICT(key) DO UPDATE SET "
                         "value = CAST(value AS INTEGER) + 1")
            for r in rows:
                exists = conn.execute("SELECT 1 FROM candidates WHERE candidate_id = ?", (r["candidate_id"],)).fetchone()
                values = {c: r.get(c) for c in CANDIDATE_COLUMNS if c not in ("added_utc",)}
                values["metadata"] = json.dumps(r.get("metadata") or {}, sort_keys=True, allow_nan=False)
                if exists:
                    sets = ", ".join(f"{c} = :{c}" for c in values if c != "candidate_id")
                    conn.execute(f"UPDATE candidates SET {sets} WHERE candidate_id = :candidate_id", values)
                    updated += 1
                else:
                    cols = list(values) + ["added_utc"]
                    conn.execute(f"INSERT INTO candidates ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})",
                                 values | {"added_utc": stamp})
                    added += 1
        return {"added": added, "updated": updated}

    def candidate(self, candidate_id: str) -> dict:
        rows = self._read("SELECT * FROM candidates WHERE candidate_id = ?", (candidate_id,))
        if not rows:
            raise UsageError(f"no candidate {json.dumps(candidate_id)} in {self.path}")
        out = dict(rows[0])
        out["metadata"] = json.loads(out["metadata"] or "{}")
        return out

    def candidates(self) -> list[dict]:
        """Every candidate, best score first (metadata decoded)."""
        rows = self._read("SELECT * FROM candidates ORDER BY score DESC, candidate_id")
        return [dict(r) | {"metadata": json.loads(r["metadata"] or "{}")} for r in rows]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM candidates")[0][0])

    # -- grading -----------------------------------------------------------------------------------------
    def grade(self, candidate_id: str, grader: str, grade: str, tag: str | None = None,
              client_token: str | None = None) -> int:
        """Record one grade; returns its row id. A retry with the same `client_token` returns the first
        row's id and writes nothing (the same token for a different grade is refused)."""
        grader = check_grader(grader)
        grade = check_grade(grade)
        tag = check_tag(tag)
        token = check_token(client_token)
        expect = {"candidate_id": candidate_id, "grader": grader, "grade": grade, "tag": tag, "retracts": None}
        try:
            with self._write() as conn:
                if token is not None and (seen := self._replayed(conn, token, expect)) is not None:
                    return int(seen["id"])
                cand = conn.execute("SELECT score, checkpoint_hash FROM candidates WHERE candidate_id = ?",
                                    (candidate_id,)).fetchone()
                if cand is None:
                    raise UsageError(f"no candidate {json.dumps(candidate_id)} in {self.path}; grade one of its "
                                     "candidates")
                cur = conn.execute("INSERT INTO grades (candidate_id, grader, grade, tag, time_utc, score, "
                                   "checkpoint_hash, client_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   (candidate_id, grader, grade, tag, now_utc(), cand[0], cand[1], token))
                return int(cur.lastrowid)
        except sqlite3.IntegrityError:
            raise DataError(f"{self.path}: the database refused the grade ({grader} {grade} on "
                            f"{json.dumps(candidate_id)}): a constraint failed; nothing was written") from None

    def undo(self, grader: str, client_token: str | None = None) -> str | None:
        """Retract this grader's latest standing grade (a new row; nothing deleted); its candidate id, or None
        when nothing is left to undo. Repeated undos walk back through the grader's history."""
        grader = check_grader(grader)
        token = check_token(client_token)
        with self._write() as conn:
            if token is not None and (seen := self._replayed(conn, token, {"grader": grader, "grade": None})) is not None:
                return str(seen["candidate_id"])
            row = conn.execute(f"SELECT id, candidate_id FROM ({EFFECTIVE}) WHERE grader = ? ORDER BY id DESC "
                               "LIMIT 1", (grader,)).fetchone()
            if row is None:
                return None
            conn.execute("INSERT INTO grades (candidate_id, grader, grade, time_utc, client_token, retracts) "
                         "VALUES (?, ?, NULL, ?, ?, ?)", (row[1], grader, now_utc(), token, row[0]))
            return str(row[1])

    @staticmethod
    def _replayed(conn: sqlite3.Connection, token: str, expect: dict) -> sqlite3.Row | None:
        """The row an earlier request with `token` wrote (None: a new token); refused when it differs from
        `expect` in any of its keys (a retry must repeat the same action)."""
        r = conn.execute("SELECT * FROM grades WHERE client_token = ?", (token,)).fetchone()
        if r is None:
            return None
        if any(r[k] != v for k, v in expect.items()):
            raise UsageError(f"client token {json.dumps(token)} was already used for another grade "
                             f"({r['grader']} {r['grade'] or 'undo'} on {json.dumps(r['candidate_id'])}); "
                             "send a new token for a new grade")
        return r

    # -- reading grades ----------------------------------------------------------------------------------
    def latest_grades(self) -> list[dict]:
        """The standing grade of each (candidate, grader): latest effective row (skips included)."""
        cols = ", ".join(GRADE_COLUMNS)
        return [dict(r) for r in self._read(f"SELECT {cols} FROM ({LATEST}) ORDER BY candidate_id, grader")]

    def history(self, candidate_id: str | None = None) -> list[dict]:
        """Every row ever written (grades and retractions), oldest first."""
        where, params = ("WHERE candidate_id = ?", (candidate_id,)) if candidate_id is not None else ("", ())
        return [dict(r) for r in self._read(f"SELECT * FROM grades {where} ORDER BY id", params)]

    def progress(self) -> dict:
        """{grader: candidates with a standing A/B/C/N grade, 'total': candidates}."""
        rows = self._read(f"SELECT grader, COUNT(*) FROM ({LATEST}) WHERE grade != 'S' GROUP BY grader ORDER BY grader")
        return {r[0]: int(r[1]) for r in rows} | {"total": self.count()}

    def queue(self, grader: str, order: str = "score", seed: int = 0, limit: int | None = None) -> list[str]:
        """Candidate ids this grader has no standing A/B/C/N grade for, in `order`: by score (best first), by
        disagreement (spread of the other graders' grades, largest first, then score) or random (a fixed
        permutation from `seed`: an unbiased sample for purity). Skipped candidates come after the unseen.
        `limit`: only the first ones (the web app's next + prefetch)."""
        grader = check_grader(grader)
        if order not in ORDERS:
            raise UsageError(f"unknown queue order {order!r}; choose one of {', '.join(ORDERS)}")
        mine = {r[0]: r[1] for r in self._read(f"SELECT candidate_id, grade FROM ({EFFECTIVE}) WHERE grader = ? "
                                                "ORDER BY id", (grader,))}  # later rows win
        cands = self._ordered("random", int(seed)) if order == "random" else self._ordered("score", 0)
        if order == "disagreement":
            spread = self._spread(grader)
            cands = sorted(cands, key=lambda c: -spread.get(c, 0.0))  # stable: score order among equals
        todo = [c for c in cands if c not in mine]
        if limit is None or len(todo) < limit:
            todo += [c for c in cands if mine.get(c) == "S"]
        return todo if limit is None else todo[:int(limit)]

    def _ordered(self, order: str, seed: int) -> list[str]:
        """Every candidate id by score (best first) or in the seeded random order; cached until the candidates
        change (put_candidates bumps `candidates_version` in meta, also from another process)."""
        version = self._meta("candidates_version") or "0"
        hit = self._order_cache.get((order, seed))
        if hit and hit[0] == version:
            return hit[1]
        conn = self._conn()
        try:
            ids = [r[0] for r in conn.execute("SELECT candidate_id FROM candidates ORDER BY score DESC, candidate_id")
                   .fetchall()]
        except sqlite3.Error as e:
            raise self._db_error(e) from None
        if order == "random":
            ids.sort(key=lambda c: hashlib.blake2b(f"{seed}:{c}".encode(), digest_size=8).digest())
        self._order_cache[(order, seed)] = (version, ids)
        return ids

    def _spread(self, grader: str) -> dict[str, float]:
        """Standard deviation of the other graders' standing A/B/C/N grades per candidate (0 with one)."""
        latest: dict[tuple[str, str], str] = {}
        for r in self._conn().execute(f"SELECT candidate_id, grader, grade FROM ({EFFECTIVE}) WHERE grader != ? "
                                      "ORDER BY id", (grader,)).fetchall():
            latest[(r[0], r[1])] = r[2]  # later rows win
        values: dict[str, list[int]] = {}
        for (cid, _), g in latest.items():
            if g != "S":
                values.setdefault(cid, []).append(GRADE_VALUE[g])
        out = {}
        for cid, v in values.items():
            m = sum(v) / len(v)
            out[cid] = (sum((x - m) ** 2 for x in v) / len(v)) ** 0.5
        return out


def check_grader(name) -> str:
    if not isinstance(name, str) or not GRADER_RE.fullmatch(name) or name.lower() in RESERVED_GRADERS:
        raise UsageError(f"grader name {json.dumps(str(name))[:60]} is not allowed: 1-40 letters, digits, '.', '_' "
                         f"or '-', starting with a letter or digit (not {', '.join(RESERVED_GRADERS)})")
    return name


def check_grade(grade) -> str:
    g = grade.upper() if isinstance(grade, str) else grade
    if g not in GRADES:
        raise UsageError(f"unknown grade key {json.dumps(str(grade))[:30]}; grades are A (sure lens), B (probable), "
                         "C (possible), N (not a lens), S (skip)")
    return g


def check_tag(tag) -> str | None:
    if tag is None or tag == "":
        return None
    if tag not in TAGS:
        raise UsageError(f"unknown tag {json.dumps(str(tag))[:40]}; tags are {', '.join(TAGS)}")
    return tag


def check_token(token) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str) or not 1 <= len(token) <= 128:
        raise UsageError("client token must be a string of 1-128 characters")
    return token
