"""Helpers of the web-app tests: a tier of real stamps, a scores file pointing at them as `dhs score` writes
it (one hostile id and metadata string), and a grades database made from both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tierfactory import make_tier

from darkhaloscope.score.scoresfile import METADATA_KEY
from darkhaloscope.score.sources import open_source

EVIL = "<img src=x onerror=alert(1)>&amp;\"'"


def scored_tier(root: Path, rows_per_split: int = 10) -> tuple[Path, Path]:
    """(tier, scores file): every stamp of a 3-split tier, score falling with the row order; the best
    candidate's id and one metadata string are hostile HTML."""
    tier = make_tier(root / "tier", rows_per_split=rows_per_split, files_per_split=1, row_group_size=8)
    rows = [(f, int(r)) for b in open_source(str(tier)).batches() for f, r in zip(b.source_file, b.source_row)]
    n = len(rows)
    logit = np.linspace(3, -3, n)
    ids = [f"cand-{k:03d}" for k in range(n)]
    ids[0] = EVIL
    t = pa.table({"score": 1 / (1 + np.exp(-logit)), "logit": logit, "label": pa.array([None] * n, pa.int8()),
                  "row_id": ids, "source_file": [r[0] for r in rows], "source_row": [r[1] for r in rows],
                  "brickname": [EVIL if k == 1 else f"brick{k % 3}" for k in range(n)],
                  "psf_fwhm_used_r": np.full(n, 1.25)})
    t = t.replace_schema_metadata({METADATA_KEY: json.dumps({"data": str(tier)}).encode()})
    pq.write_table(t, root / "scores.parquet")
    return tier, root / "scores.parquet"


def grades_db(root: Path, rows_per_split: int = 10):
    """(store, scores file, tier): a new grades database holding every scored stamp."""
    from darkhaloscope.grade.store import open_store

    tier, scores = scored_tier(root, rows_per_split)
    store = open_store(root / "grades.sqlite", create=True)
    store.add_candidates(scores)
    return store, scores, tier
