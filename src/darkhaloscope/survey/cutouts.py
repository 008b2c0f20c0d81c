"""`dhs cutouts`: Legacy Surveys cutouts of a target list, written as a Phase 4c tier.

    from darkhaloscope.survey.cutouts import build_cutout_tier
    m = build_cutout_tier(["targets.parquet"], "tiers/real", CutoutConfig(concurrency=8))

Rows are grouped by the target's split and cut into chunks of `rows_per_file`; chunk k of split s is the file
`OUT/region_split=<s>/part-<k>.parquet`, written atomically, with a fingerprint of its targets and settings in
its parquet metadata. A rerun (after a kill -9, or to add retries of failed fetches) skips every chunk whose
file has the same fingerprint and no transient failure, and refetches nothing that is in the cache
(`OUT/_cache` by default), so it ends with the same bytes an uninterrupted run writes.

Each row: `stamp_id` (the target_id), `stamp_npz` (image_g/r/z float32 nanomaggies; null when the cutout is
unusable), `is_control` (1 - label), `cutout_ok`, `cutout_reason` ('' when ok), `nan_frac`, `psfsize_<band>`
when the service's header gives it, `cutout_url` (secret-looking query parameters such as `token=` shown as
`***`), and every target column but `label` and `region_split` (the split is where the row is placed).
A run in which no cutout is usable writes its files and manifest, then fails: exit 4 when every failure is one
a later retry may fix (429, 5xx, network, timeouts), else exit 1.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from darkhaloscope.common.progress import Progress
from darkhaloscope.errors import DataError, EnvironmentFault, UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_text
from darkhaloscope.redaction import redact
from darkhaloscope.stamps.codec import encode_stamp
from darkhaloscope.stamps.provenance import SURVEY_KIND
from darkhaloscope.stamps.schema import CUTOUT_OK_COLUMN, LABEL_SOURCE_COLUMN, SPLITS, STAMP_COLUMN
from darkhaloscope.survey.config import CutoutConfig
from darkhaloscope.survey.fetch import CutoutClient, FetchResult
from darkhaloscope.survey.fitsimage import read_fits_image, validate_cutout
from darkhaloscope.survey.tables import find_column, read_table

PARTITION_COLUMN = "region_split"  # the tier's split folder; a target list's own column of that name is dropped
TRANSIENT_REASON = re.compile(r"^(HTTP (408|429|5\d\d)\b|network error|timed out)")  # a retry later may fix it
FINGERPRINT_KEY = b"dhs_cutouts_chunk"
TRANSIENT_KEY = b"dhs_cutouts_transient_failures"


def load_targets(paths: Sequence[str]) -> pa.Table:
    """The target lists, concatenated; DataError naming the file and row for missing or bad ra/dec/label/split."""
    tables = []
    for p in paths:
        t = read_table(p)
        cols = {k: find_column(t.column_names, k, p, required=k in ("ra", "dec")) for k in ("ra", "dec", "label", "split")}
        for k in ("label", "split"):
            if cols[k] is None:
                raise DataError(f"{p}: no {k} column; make the target list with `dhs catalog` (label 1 lens / 0 "
                                "negative, split train/val/test)")
        rename = {c: k for k, c in cols.items()}
        t = t.rename_columns([rename.get(c, c) for c in t.column_names])
        try:
            ra, dec = (np.asarray(t[k].to_numpy(zero_copy_only=False), float) for k in ("ra", "dec"))
        except (TypeError, ValueError, pa.ArrowException):
            raise DataError(f"{p}: ra/dec are not numbers (degrees expected)") from None
        label = np.asarray(t["label"].to_pylist(), dtype=object)
        split = np.asarray(t["split"].to_pylist(), dtype=object)
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)) | ~np.isin(label, [0, 1]) \
            | ~np.isin(split, list(SPLITS))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{p} row {i}: ra/dec ({ra[i]}, {dec[i]}), label {label[i]!r}, split {split[i]!r}: "
                            f"expected degrees, label 0 or 1 and a split of {', '.join(SPLITS)}")
        tables.append(t)
    if not tables or sum(t.num_rows for t in tables) == 0:
        raise DataError(f"{', '.join(paths)}: no targets")
    t = pa.concat_tables(tables, promote_options="permissive")
    if "target_id" not in t.column_names:
        t = t.append_column("target_id", pa.array([f"t{i:08d}" for i in range(t.num_rows)], pa.string()))
    ids = t["target_id"].cast(pa.string())
    if pc.count_distinct(ids).as_py() != t.num_rows:
        dup = pc.value_counts(ids).filter(pc.greater(pc.struct_field(pc.value_counts(ids), "counts"), 1))
        raise DataError(f"{', '.join(paths)}: target_id {dup[0]['values'].as_py()!r} appears more than once; ids must "
                        "be unique (catalog shards get ids s<K>-...; give each list once)")
    return t


def plan_chunks(targets: pa.Table, rows_per_file: int) -> list[tuple[str, int, np.ndarray]]:
    """(split, k, row indices) of every tier file, splits in SPLITS order, rows in target order."""
    split = np.asarray(targets["split"].to_pylist(), dtype=object)
    out = []
    for s in SPLITS:
        rows = np.flatnonzero(split == s)
        for k, start in enumerate(range(0, len(rows), rows_per_file)):
            out.append((s, k, rows[start:start + rows_per_file]))
    return out


def _fingerprint(targets: pa.Table, rows: np.ndarray, cfg: CutoutConfig) -> str:
    h = hashlib.sha256()
    sink = pa.BufferOutputStream()
    part = targets.take(pa.array(rows, pa.int64()))
    with pa.ipc.new_stream(sink, part.schema) as w:
        w.write_table(part)
    h.update(sink.getvalue().to_pybytes())
    # max_reply_mb: a chunk with replies refused as too large is rebuilt when the bound changes (from the cache,
    # but for those replies, which were never cached)
    h.update(json.dumps([cfg.url(0, 0), cfg.max_nan_frac, cfg.compress, cfg.max_reply_mb], sort_keys=True).encode())
    return h.hexdigest()


def _chunk_done(path: Path, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    return meta.get(FINGERPRINT_KEY) == fingerprint.encode() and meta.get(TRANSIENT_KEY) == b"0"


def build_cutout_tier(targets_paths: Sequence[str], out: str, cfg: CutoutConfig | None = None,
                      cache_dir: str | None = None, progress: bool = False, argv: list[str] | None = None) -> dict:
    cfg = cfg or CutoutConfig()
    cfg.validate()
    targets = load_targets(targets_paths)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    _check_ours(root)
    chunks = plan_chunks(targets, cfg.rows_per_file)
    client = CutoutClient(cfg, cache_dir or root / "_cache")
    ra = np.asarray(targets["ra"].to_numpy(zero_copy_only=False), float)
    dec = np.asarray(targets["dec"].to_numpy(zero_copy_only=False), float)
    urls = [cfg.url(a, d) for a, d in zip(ra, dec)]
    todo = []
    for s, k, rows in chunks:
        fp = _fingerprint(targets, rows, cfg)
        path = root / f"region_split={s}" / f"part-{k:05d}.parquet"
        if not _chunk_done(path, fp):
            todo.append((path, rows, fp))
    if todo:
        _preflight(client, urls[todo[0][1][0]], cfg)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(cfg.concurrency) as ex, \
            Progress(sum(len(r) for _, r, _ in todo), "cutouts", unit="cutouts", enabled=progress) as bar:
        pending = [ex.map(client.fetch, [urls[i] for i in todo[0][1]])] if todo else []
        for j, (path, rows, fp) in enumerate(todo):
            if j + 1 < len(todo):  # keep the next chunk's requests in flight while this one is written
                pending.append(ex.map(client.fetch, [urls[i] for i in todo[j + 1][1]]))
            results = []
            for r in pending.pop(0):
                results.append(r)
                bar.advance(1)
            _write_chunk(path, targets, rows, [redact(urls[i]) for i in rows], results, fp, cfg)
    elapsed = time.perf_counter() - t0
    for old in root.glob("region_split=*/part-*.parquet"):
        if old not in {root / f"region_split={s}" / f"part-{k:05d}.parquet" for s, k, _ in chunks}:
            old.unlink()  # left by an earlier build of a longer target list
    manifest = _manifest(root, chunks, targets_paths, cfg, argv)
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    _fail_if_none_usable(root, manifest)
    return {**manifest, "elapsed_s": elapsed, "fetch": dict(client.stats), "chunks_written": len(todo)}


def _fail_if_none_usable(root: Path, manifest: dict) -> None:
    """A tier without one usable cutout is a failed run (its files stay: a rerun retries what may recover)."""
    counts = manifest["counts"].values()
    total = sum(c["lenses"] + c["controls"] for c in counts)
    if total == 0 or sum(c["lenses_ok"] + c["controls_ok"] for c in counts) > 0:
        return
    reasons = manifest["failure_reasons"]
    top = "; ".join(f"{n} x {why}" for why, n in list(reasons.items())[:3])
    if all(TRANSIENT_REASON.match(why) for why in reasons):
        raise EnvironmentFault(f"{root}: none of the {total} cutouts could be fetched ({top}); the service is "
                               "refusing or failing: wait and run the same command again (failed fetches are "
                               "retried, cached replies kept)")
    raise DataError(f"{root}: none of the {total} cutouts is usable ({top}); check the targets (inside the "
                    "survey footprint?) and --service-url / --layer (manifest.json lists every reason)")


def _check_ours(root: Path) -> None:
    """Refuse an --out that holds parquet files `dhs cutouts` did not write: a rerun replaces and prunes files."""
    if not root.is_dir():
        return
    for p in sorted(root.rglob("*.parquet")):
        if any(part.startswith((".", "_")) for part in p.relative_to(root).parts):
            continue
        try:
            ours = FINGERPRINT_KEY in (pq.read_schema(p).metadata or {})
        except (OSError, pa.ArrowInvalid):
            ours = False
        if not ours:
            raise UsageError(f"--out {root}: {p.relative_to(root)} was not written by `dhs cutouts` (a rerun "
                             "replaces and prunes the tier's files); choose another --out")


def _preflight(client: CutoutClient, url: str, cfg: CutoutConfig) -> None:
    """One request before anything is written: an unreachable service is one error line, not N failed rows."""
    res = client.fetch(url, max_tries=2)
    if res.body is None and res.reason.startswith("network error"):
        raise EnvironmentFault(f"cannot reach the cutout service at {redact(cfg.service_url)} ({res.reason}); check "
                               "--service-url and the network")


def _write_chunk(path: Path, targets: pa.Table, rows: np.ndarray, urls: list[str], results: list[FetchResult],
                 fingerprint: str, cfg: CutoutConfig) -> None:
    bands = tuple(cfg.bands)
    n = len(rows)
    stamps: list[bytes | None] = [None] * n
    ok = np.zeros(n, np.int32)
    reasons = [""] * n
    nan_frac = np.full(n, np.nan)
    psf: dict[str, list] = {f"psfsize_{b}": [None] * n for b in bands}
    transient = 0
    for i, res in enumerate(results):
        if res.body is None:
            reasons[i] = res.reason
            transient += not res.permanent
            continue
        cube, header = read_fits_image(res.body)
        image, reason, extras = validate_cutout(cube, header, bands, cfg.size, cfg.max_nan_frac)
        nan_frac[i] = extras.get("nan_frac", np.nan)
        for b in bands:
            psf[f"psfsize_{b}"][i] = extras.get(f"psfsize_{b}")
        if image is None:
            reasons[i] = reason
            continue
        stamps[i] = encode_stamp(image, bands=bands, compress=cfg.compress)
        ok[i] = 1
    part = targets.take(pa.array(rows, pa.int64()))
    label = np.asarray(part["label"].to_numpy(zero_copy_only=False), np.int32)
    cols = {"stamp_id": part["target_id"], STAMP_COLUMN: pa.array(stamps, pa.binary()),
            LABEL_SOURCE_COLUMN: pa.array(1 - label, pa.int32()), CUTOUT_OK_COLUMN: pa.array(ok, pa.int32()),
            "cutout_reason": pa.array(reasons, pa.string()), "nan_frac": pa.array(nan_frac, pa.float64()),
            **{k: pa.array(v, pa.float64()) for k, v in psf.items() if any(x is not None for x in v)},
            "cutout_url": pa.array(urls, pa.string())}
    for c in part.column_names:
        if c not in cols and c not in ("label", "target_id", PARTITION_COLUMN):
            cols[c] = part[c]
    table = pa.table(cols).replace_schema_metadata({FINGERPRINT_KEY: fingerprint.encode(),
                                                    TRANSIENT_KEY: str(transient).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=128, compression="zstd")


def designed_ratio(targets_paths: Sequence[str]) -> float | None:
    """Negatives per lens the target lists were built with (`dhs catalog --neg-per-pos`, read from each
    list's .manifest.json); None when a list has no manifest or the lists disagree."""
    from darkhaloscope.survey.catalog import manifest_path

    ratios = set()
    for p in targets_paths:
        if not str(p).endswith(".parquet"):
            return None  # a list made by hand (CSV, FITS): no catalog manifest
        try:
            ratios.add(float(json.loads(manifest_path(p).read_text())["config"]["neg_per_pos"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return ratios.pop() if len(ratios) == 1 else None


def _manifest(root: Path, chunks, targets_paths, cfg: CutoutConfig, argv) -> dict:
    """Counts per split (lenses / controls, usable or not) and failure reasons, read back from the files."""
    from dataclasses import asdict

    from darkhaloscope.config import run_info

    counts: dict[str, dict[str, int]] = {}
    reasons: Counter = Counter()
    files = []
    for s, k, _ in chunks:
        rel = f"region_split={s}/part-{k:05d}.parquet"
        t = pq.read_table(root / rel, columns=[LABEL_SOURCE_COLUMN, CUTOUT_OK_COLUMN, "cutout_reason"])
        files.append(rel)
        c = counts.setdefault(s, {"lenses": 0, "controls": 0, "lenses_ok": 0, "controls_ok": 0, "failed": 0})
        for ctrl, ok, why in zip(*(t[x].to_pylist() for x in t.column_names)):
            kind = "controls" if ctrl else "lenses"
            c[kind] += 1
            c[f"{kind}_ok"] += ok
            if not ok:
                c["failed"] += 1
                reasons[re.sub(r"\d+(\.\d+)?%", "N%", why.split(" after ")[0])] += 1  # '37% non-finite': one kind
    info = run_info(argv)
    config = {**asdict(cfg), "service_url": redact(cfg.service_url)}
    return {"tier_kind": SURVEY_KIND, "neg_per_pos": designed_ratio(targets_paths),
            "counts": counts, "failure_reasons": dict(reasons.most_common()), "files": files,
            "targets": [str(p) for p in targets_paths], "config": json.loads(json.dumps(config)),
            "version": info["version"], "git_commit": info["git_commit"], "command": info["command"]}
