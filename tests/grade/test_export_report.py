"""`dhs grade export` and `dhs grade report`: the graded table equals the grades typed, the report's numbers
and escaping, and the export read back as a positives list by `dhs catalog`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gradefactory import write_scores  # noqa: E402

from darkhaloscope.cli import main  # noqa: E402
from darkhaloscope.grade.store import open_store  # noqa: E402

HOSTILE = '<img src=x onerror=alert(1)>|*x*'


@pytest.fixture
def graded_db(tmp_path):
    """12 candidates (c000 best), one with a hostile id; three graders."""
    ids = [f"c{i:03d}" for i in range(12)]
    ids[3] = HOSTILE
    scores = write_scores(tmp_path / "s.parquet", 12, ids=None)
    t = pq.read_table(scores)
    rid = [ids[int(r[1:])] for r in t["row_id"].to_pylist()]
    pq.write_table(t.set_column(t.column_names.index("row_id"), "row_id", [rid]), scores)
    db = tmp_path / "g.sqlite"
    with open_store(db, create=True) as s:
        s.add_candidates(scores)
        plan = {"ana": "AABANNCN", "bo": "ABBANNNN", "cy": "A-CAN-NS"}
        for g, keys in plan.items():
            for i, k in enumerate(keys):
                if k != "-":
                    s.grade(ids[i], g, k, tag="spiral" if k == "N" and i == 4 else ("ring" if k == "N" else None))
        s.grade(ids[0], "cy", "N")  # a regrade then undone: the A stands
        s.undo("cy")
    return db, ids


def test_export_is_one_row_per_candidate_with_consensus(graded_db, tmp_path, capsys):
    db, ids = graded_db
    out = tmp_path / "graded.parquet"
    assert main(["grade", "export", "--db", str(db), "--out", str(out)]) == 0
    assert "graded.parquet" in capsys.readouterr().out
    t = pq.read_table(out)
    rows = {r["candidate_id"]: r for r in t.to_pylist()}
    assert len(rows) == 12 and t["candidate_id"].to_pylist()[0] == "c000"
    assert (rows["c000"]["grade"], rows["c000"]["n_A"], rows["c000"]["n_graders"]) == ("A", 3, 3)
    assert rows["c001"]["grade"] == "A" and rows["c001"]["grade_mean"] == 2.5  # A, B
    assert rows["c002"]["grade"] == "B" and rows["c002"]["grade_mean"] == pytest.approx(5 / 3)  # B, B, C
    assert rows[HOSTILE]["grade"] == "A" and rows[HOSTILE]["graders"] == "ana,bo,cy"
    assert (rows["c004"]["grade"], rows["c004"]["tag"], rows["c004"]["tags"]) == ("N", "spiral", "spiral:3")
    assert rows["c007"]["n_S"] == 1 and rows["c007"]["n_graders"] == 2
    assert rows["c010"]["grade"] is None and rows["c010"]["n_graders"] == 0
    assert rows["c005"]["ra"] == pytest.approx(150.55) and rows["c005"]["source_row"] == 5
    assert rows["c005"]["brickname"] == "1500p02" and rows["c005"]["data"] == "tier"
    meta = json.loads(t.schema.metadata[b"darkhaloscope.graded"])
    assert meta["counts"] == {"A": 3, "B": 1, "C": 0, "N": 4, "ungraded": 4}


def test_report_numbers_and_escaping(graded_db, tmp_path):
    db, _ = graded_db
    assert main(["grade", "report", "--db", str(db), "--out", str(tmp_path / "rep")]) == 0
    doc = json.loads((tmp_path / "rep" / "grade.json").read_text())
    assert doc["graded"] == 8 and doc["consensus_counts"] == {"A": 3, "B": 1, "C": 0, "N": 4}
    assert doc["progress"] == {"ana": 8, "bo": 8, "cy": 5}
    top = {r["top"]: r for r in doc["purity_at_top"]}
    assert (top[10]["graded"], top[10]["lenses"]) == (8, 4) and top[10]["purity"] == 0.5
    assert doc["false_positives_by_tag"][0] == {"tag": "ring", "n": 3, "share": 0.75, "median_score":
                                                pytest.approx(doc["false_positives_by_tag"][0]["median_score"])}
    assert -1 <= doc["fleiss_kappa"] <= 1
    html = (tmp_path / "rep" / "grade.html").read_text()
    md = (tmp_path / "rep" / "grade.md").read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert HOSTILE not in md and "Fleiss" in md
    assert (tmp_path / "rep" / "figures" / "purity.png").stat().st_size > 1000 and "data:image/png;base64" in html


def test_export_as_catalog_positives(graded_db, tmp_path, capsys):
    from sweepfactory import write_sweep

    db, _ = graded_db
    out = tmp_path / "graded.parquet"
    assert main(["grade", "export", "--db", str(db), "--out", str(out)]) == 0
    write_sweep(tmp_path / "sweep.fits", 2000, seed=1)
    targets = tmp_path / "targets.parquet"
    assert main(["catalog", "--out", str(targets), "--positives", str(out), "--grades", "A,B", "--negatives",
                 str(tmp_path / "sweep.fits"), "--neg-per-pos", "5", "--seed", "1"]) == 0
    t = pq.read_table(targets).to_pylist()
    assert sorted(r["name"] for r in t if r["label"] == 1) == sorted(["c000", "c001", "c002", HOSTILE])
    assert {r["grade"] for r in t if r["label"] == 1} == {"A", "B"}


def test_export_without_sky_positions_is_refused_as_positives(tmp_path):
    from darkhaloscope.errors import DataError
    from darkhaloscope.grade.export import export_graded
    from darkhaloscope.survey.positives import load_known

    with open_store(tmp_path / "g.sqlite", create=True) as s:
        s.add_candidates(write_scores(tmp_path / "s.parquet", 4, drop=("ra", "dec")))
        s.grade("c001", "ana", "A")
        export_graded(s, tmp_path / "e.parquet")
    with pytest.raises(DataError, match="graded candidate 'c001' has no RA/DEC"):
        load_known([str(tmp_path / "e.parquet")])


def test_a_refused_loop_output_writes_no_export(graded_db, tmp_path, capsys):
    """--lenses-folder that is a non-empty folder: refused before the export is written (it was written, then
    the command failed)."""
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("mine")
    out = tmp_path / "graded.parquet"
    db, _ = graded_db
    assert main(["grade", "export", "--db", str(db), "--out", str(out), "--lenses-folder", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lenses-folder") and "not an empty folder" in err
    assert not out.exists() and sorted(p.name for p in busy.iterdir()) == ["x.txt"]
