"""`dhs merge-scores`: the scores files of a sharded `dhs score` (`--shard K/N` on N machines) as one file.

    dhs merge-scores --out scores.parquet scores/part-*.parquet
    dhs evaluate scores.parquet --out report

The parts must be one scoring, split: refused (one error line, nothing written) unless every part is a scores
file with the same provenance (data, checkpoint(s), split, model, epoch, calibration, committee: every key but
the shard's own `shard`, `run` and `duplicates_merged`), the same columns, and the shards are 0..N-1 of one N,
each once. Rows are streamed one row group at a time (memory stays small) into one file written whole (temp
file, then rename); its provenance is the parts' with `shard` [0, 1] and `merged_from` (each part's file name,
shard and run record). Exercised by tests/score/test_merge.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.score.scoresfile import open_scores_file, read_provenance
from darkhaloscope.score.writer import row_groups, write_scores

PER_SHARD_KEYS = ("shard", "run", "duplicates_merged")  # provenance a shard records for itself


@dataclass
class MergeSummary:
    out: Path
    parts: int
    shards: int
    rows: int
    failed: int  # rows whose stamp did not decode when scored (score left empty)


def _shard(info: dict, path: Path) -> tuple[int, int]:
    s = info.get("shard")
    if not (isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) for v in s) and 0 <= s[0] < s[1]):
        raise DataError(f"{path}: its provenance records no valid shard ({s!r}); merge the files `dhs score "
                        "--shard K/N` wrote")
    return s[0], s[1]


def _check_same(info: dict, first: dict, path: Path, first_path: Path) -> None:
    for key in sorted(set(info) | set(first)):
        if key not in PER_SHARD_KEYS and info.get(key) != first.get(key):
            raise DataError(f"{path}: {key} is {str(info.get(key))[:200]!r} but {str(first.get(key))[:200]!r} in "
                            f"{first_path}; these are parts of different scorings: merge the parts of one "
                            "`dhs score --shard K/N` run")


def _check_shards(shards: dict[Path, tuple[int, int]]) -> int:
    """N, once every shard 0..N-1 of one N is present exactly once."""
    ns = {n for _, n in shards.values()}
    if len(ns) > 1:
        raise DataError(f"the parts were cut into different numbers of shards ({', '.join(map(str, sorted(ns)))}); "
                        "merge the parts of one `dhs score --shard K/N` run")
    n = ns.pop()
    seen: dict[int, Path] = {}
    for path, (k, _) in shards.items():
        if k in seen:
            raise DataError(f"{path}: shard {k}/{n} again (also {seen[k]}); give each shard's file once")
        seen[k] = path
    missing = [k for k in range(n) if k not in seen]
    if missing:
        listed = ", ".join(f"{k}/{n}" for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"shard(s) {listed} missing ({len(missing)} of {n}); run `dhs score --shard K/{n}` for them "
                        "(or add their files) and merge again")
    return n


def merge_scores(parts: list[str | Path], out: str | Path) -> MergeSummary:
    """Check the parts (module docstring), then write them as one scores file `out`."""
    paths, out = [Path(p) for p in parts], Path(out)
    if not paths:
        raise UsageError("no parts given; name the scores files of every shard, e.g. scores/part-*.parquet")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; name the scores file to write, e.g. {out / 'scores.parquet'}")
    if out.resolve() in {p.resolve() for p in paths}:
        raise UsageError(f"--out {out} is one of the parts; write the merged file under another name")
    files = {p: open_scores_file(p) for p in dict.fromkeys(paths)}
    if len(files) < len(paths):
        raise UsageError("a part is named twice; give each shard's file once")
    infos = {p: read_provenance(f.schema_arrow, p) for p, f in files.items()}
    (p0, first), f0 = next(iter(infos.items())), files[paths[0]]
    if not first:
        raise DataError(f"{p0}: no `dhs score` provenance in its metadata; merge scores files `dhs score` wrote")
    names0 = set(f0.schema_arrow.names)
    for p, info in infos.items():
        _check_same(info, first, p, p0)
        names = set(files[p].schema_arrow.names)
        if names != names0:
            diff = sorted(names ^ names0)[:8]
            raise DataError(f"{p}: its columns differ from {p0}'s ({', '.join(diff)}); merge the parts of one "
                            "`dhs score --shard K/N` run")
    n = _check_shards({p: _shard(info, p) for p, info in infos.items()})

    base = {k: v for k, v in first.items() if k not in PER_SHARD_KEYS}
    merged_from = [{"file": p.name, "shard": info.get("shard"), "run": info.get("run")} for p, info in infos.items()]
    rows, failed = write_scores(row_groups(files.values()), out, base | {"shard": [0, 1], "merged_from": merged_from})
    return MergeSummary(out, len(files), n, rows, failed)

