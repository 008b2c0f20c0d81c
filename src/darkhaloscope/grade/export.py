"""`dhs grade export`: the graded table, one row per candidate (written atomically).

Columns: `candidate_id` (and `name`, the same id: what `dhs catalog --positives` reads), `ra`, `dec` (null when
the scored data had none), `grade` (the consensus letter A/B/C/N, null when nobody graded it), `grade_mean`
(A=3 .. N=0), `n_A`, `n_B`, `n_C`, `n_N`, `n_S` (skips), `n_graders`, `graders`, `tag` (the majority tag),
`tags` ("ring:2,spiral:1"), `score`, `rank`, `split`, `checkpoint_hash`, `data`, `source_file`, `source_row`
(where the stamp is) and the columns the scores file carried: ids (stamp_id, host_id, objid, brickname), label
and logit (the model's, as `dhs evaluate --known-lenses` compares it).
The parquet key-value metadata `darkhaloscope.graded` marks the file as a graded export, so `dhs catalog
--positives graded.parquet --grades A,B` and `dhs evaluate --known-lenses graded.parquet` know to read it.

    dhs grade export --db grades.sqlite --out graded.parquet
"""

from __future__ import annotations

import json
from pathlib import Path

from darkhaloscope.grade.consensus import LETTERS, consensus
from darkhaloscope.grade.store import GradeStore, now_utc
from darkhaloscope.stamps.schema import GRADED_METADATA_KEY, ID_COLUMNS, LABEL_COLUMN

CARRIED = tuple(c for c in ID_COLUMNS if c not in ("row_id", "ra", "dec")) + (LABEL_COLUMN, "logit")  # from metadata


def graded_rows(store: GradeStore) -> list[dict]:
    """One dict per candidate (best score first) with its consensus; the export's rows."""
    cons = consensus(store.latest_grades())
    cands = store.candidates()
    carried = [c for c in CARRIED if any(c in k["metadata"] for k in cands)]
    rows = []
    for k in cands:
        c = cons.get(k["candidate_id"])
        row = {"candidate_id": k["candidate_id"], "name": k["candidate_id"], "ra": k["ra"], "dec": k["dec"],
               "grade": c.grade if c else None, "grade_mean": c.mean if c else None}
        row |= {f"n_{g}": c.counts[g] if c else 0 for g in LETTERS}
        row |= {"n_S": c.skips if c else 0, "n_graders": c.n if c else 0,
                "graders": ",".join(c.graders) if c else "", "tag": c.tag if c else None,
                "tags": ",".join(f"{t}:{n}" for t, n in sorted(c.tags.items())) if c else "",
                "score": k["score"], "rank": k["rank"], "split": k["split"], "checkpoint_hash": k["checkpoint_hash"],
                "data": k["data"], "source_file": k["source_file"], "source_row": k["source_row"]}
        row |= {col: k["metadata"].get(col) for col in carried}
        rows.append(row)
    return rows


def export_graded(store: GradeStore, out: str | Path, argv: list[str] | None = None) -> dict:
    """Write the graded table to `out` (parquet, atomically); returns counts per consensus letter."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from darkhaloscope.config import run_info
    from darkhaloscope.fileio import atomic_path

    rows = graded_rows(store)
    strings = ("candidate_id", "name", "grade", "graders", "tag", "tags", "split", "checkpoint_hash", "data",
               "source_file")
    types = {c: pa.string() for c in strings} | {c: pa.float64() for c in ("ra", "dec", "grade_mean", "score")} | \
        {c: pa.int32() for c in ("rank", "n_A", "n_B", "n_C", "n_N", "n_S", "n_graders")} | {"source_row": pa.int64()}
    names = list(rows[0]) if rows else list(types)
    arrays = {n: pa.array([r[n] for r in rows], types.get(n)) if n in types else _carried(pa, [r[n] for r in rows])
              for n in names}
    counts = {g: sum(r["grade"] == g for r in rows) for g in LETTERS} | {"ungraded": sum(r["grade"] is None for r in rows)}
    meta = {"db": str(store.path), "exported_utc": now_utc(), "candidates": len(rows), "counts": counts,
            "progress": store.progress(), "run": run_info(argv)}
    table = pa.table(arrays).replace_schema_metadata({GRADED_METADATA_KEY: json.dumps(meta).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return counts


def _carried(pa, values: list):
    """A carried column: integers stay integers, numbers floats, anything else becomes text."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())
