"""Helpers of the grade tests: a scores file as `dhs score` writes it (ids, scores, stamp locators, ra/dec)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_scores(path: Path, n: int = 20, *, seed: int = 0, ids: list | None = None, data: str = "tier",
                 drop: tuple[str, ...] = ()) -> Path:
    """n rows with distinct logits (row i has the (i+1)-th best score when shuffled back), ids `c000`..."""
    rng = np.random.default_rng(seed)
    logits = np.linspace(4.0, -4.0, n)
    perm = rng.permutation(n)
    cols = {"score": 1 / (1 + np.exp(-logits[perm])), "logit": logits[perm],
            "label": pa.array([None] * n, pa.int8()),
            "row_id": ids if ids is not None else [f"c{i:03d}" for i in perm],
            "source_file": [f"region_split=test/part-{i % 2}.parquet" for i in perm],
            "source_row": [int(i) for i in perm], "region_split": ["test"] * n,
            "ra": 150.5 + perm / 100, "dec": 2.5 + perm / 100, "img_mean": rng.normal(size=n),
            "brickname": [f"1500p0{i % 3}" for i in perm]}
    table = pa.table({k: v for k, v in cols.items() if k not in drop})
    meta = {b"darkhaloscope.scores": json.dumps({"data": data, "checkpoint": "run/best.pt", "epoch": 1}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path
