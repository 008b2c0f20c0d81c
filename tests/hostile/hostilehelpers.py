"""Helpers of the hostile-input suite: tiny tiers with one bad value in them, and `dhs` runs that must end
in one `error:` line (never a traceback) with the documented exit code (docs/reliability.md). A uniquely
named module: `from conftest import` is ambiguous when several test folders are collected together."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.cli import main
from tierfactory import make_tier

REPO = Path(__file__).resolve().parents[2]
TRAIN_FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=8", "--lr=3e-3", "--log_every_steps=1", "--progress=false", "--val_batch_size=32",
              "--epochs=1", "--torch_threads=1"]


def dhs(capsys, *args) -> tuple[int, str, str]:
    """Run `dhs args` in-process; a traceback would be an uncaught exception and fail the test. A failure
    must be exactly one `error:` line."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if rc not in (0, 3) or err.startswith("error:"):
        lines = [x for x in err.splitlines() if x.startswith("error:")]
        assert len(lines) == 1, err
    return rc, out, err


def dhs_subprocess(*args, env: dict | None = None, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run `python -m darkhaloscope ARGS` (a fresh process: kill tests, other environments)."""
    e = {**os.environ, **(env or {})}
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "darkhaloscope", *map(str, args)], capture_output=True, text=True,
                       env=e, timeout=timeout, cwd=cwd)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def files_under(root: Path) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file() or p.is_symlink()}


def flat_tier(root: Path, rows: int = 8, **kw) -> Path:
    """A flat tier (split as a column), 3 splits x `rows` rows, one file per split."""
    return make_tier(root, rows_per_split=rows, files_per_split=1, hive=False, **kw)


def rewrite_column(tier: Path, column: str, fn) -> None:
    """Replace `column` in every file of `tier` by fn(list of values, relpath) (values or a pyarrow array)."""
    for p in sorted(Path(tier).rglob("*.parquet")):
        t = pq.read_table(p)
        new = fn(t[column].to_pylist(), str(p.relative_to(tier)))
        arr = new if isinstance(new, (pa.Array, pa.ChunkedArray)) else pa.array(new)
        t = t.set_column(t.column_names.index(column), column, arr)
        pq.write_table(t, p)


def np_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
