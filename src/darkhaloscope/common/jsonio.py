"""One JSON sanitiser, writer and jsonl reader for every file darkhaloscope writes or reads back
(audit.json, review.json, metrics.json, run logs, candidates.json).

Rule, the same everywhere: a number that is not finite (NaN, +inf, -inf) becomes `null` (JSON has no
NaN or infinity); numpy scalars and arrays become Python numbers and lists; tuples lists; paths strings.
Exercise: `dhs evaluate SCORES --out DIR` (metrics.json), `dhs train` (metrics.jsonl).
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePath
from typing import Any

from darkhaloscope.fileio import atomic_write_text


def json_safe(x: Any) -> Any:
    """`x` with every value JSON can hold: non-finite floats -> None, numpy -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, PurePath):
        return str(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy arrays and scalars
        x = x.tolist()
        if isinstance(x, list):
            return json_safe(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(x: Any, indent: int | None = 1) -> str:
    """Sanitised JSON text with a final newline (never NaN / Infinity tokens)."""
    return json.dumps(json_safe(x), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | Path, x: Any, indent: int | None = 1) -> Path:
    """Write sanitised JSON atomically (temp file + rename)."""
    atomic_write_text(path, dumps(x, indent))
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file; [] when it does not exist. A line cut by a kill -9 ends the read (the
    rows before it stand); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
