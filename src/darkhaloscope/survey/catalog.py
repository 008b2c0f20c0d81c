"""`dhs catalog`: one target list of known lenses (positives) and DR10 Tractor galaxies (negatives).

    from darkhaloscope.survey.catalog import build_catalog
    m = build_catalog("targets.parquet", positives=["lenscat"], negatives=["sweeps/*.fits"], seed=1)

Two streaming passes over the negative files, one file in memory at a time:
1. count the usable rows of each file per (split, stratum, pool): rows within `exclude_radius_arcsec` of any
   known lens or candidate (all of lenscat and of the user lists, before filters) are dropped; the split is
   a seeded hash of the row's HEALPix pixel; the stratum is (nobs_z bin, TYPE); the pool is `confuser` for
   rows meeting a hard-confuser criterion, else `random`;
2. each split gets `neg_per_pos` x its positives, `confuser_frac` of them from the confuser pool, both pools
   allocated over strata in proportion to their counts (largest remainder), then over files the same way;
   a file keeps, per group, its quota of rows with the smallest seeded hash of (file, row).
So the result is exact and deterministic for a seed, and `--shard K/N` (pass 2 on files i % N == K; pass 1 on
all, for the global counts) gives shards whose rows together equal the unsharded list; positives go in shard 0.
"""

from __future__ import annotations

import glob
import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.config import parse_shard, run_info
from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_text
from darkhaloscope.survey.config import CatalogConfig, parse_fractions
from darkhaloscope.survey.positives import LENSCAT, Positives, dedupe_positions, filter_positives, load_known
from darkhaloscope.survey.sky import SkyMatcher, healpix_index, seed_filling_splits, split_of_pixels, unit_hash
from darkhaloscope.survey.tables import read_table
from darkhaloscope.survey.tractor import read_features

POOLS = ("positive", "random", "confuser")
OUTPUT_COLUMNS = ("target_id", "name", "ra", "dec", "label", "pool", "grade", "source_catalog", "healpix", "split")
POSITIVE_COLUMNS = ("lens_type", "zlens", "ref")  # the positives' own columns: a catalog's are kept as cat_<name>


def expand_files(patterns: Sequence[str]) -> list[str]:
    """Files named or matched by glob patterns, sorted and de-duplicated; DataError for a pattern matching none."""
    files: set[str] = set()
    for p in patterns:
        hits = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
        if not hits:
            raise DataError(f"--negatives {p!r} matches no file")
        for h in hits:
            if not Path(h).is_file():
                raise MissingInputError(f"{h}: no such file (a Tractor catalog: sweep FITS or parquet)")
            files.add(h)
    return sorted(files)


def allocate(total: int, counts: np.ndarray) -> np.ndarray:
    """Split `total` (<= counts.sum()) over groups in proportion to `counts`: largest remainder, ties by index."""
    counts = np.asarray(counts, dtype=np.int64)
    s = int(counts.sum())
    if total <= 0 or s == 0:
        return np.zeros(len(counts), dtype=np.int64)
    exact = total * counts / s
    out = np.floor(exact).astype(np.int64)
    rest = total - int(out.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - out)))
    out[order[:rest]] += 1
    return np.minimum(out, counts)


def build_catalog(out: str, positives: Sequence[str] = (LENSCAT,), negatives: Sequence[str] = (), seed: int = 0,
                  cfg: CatalogConfig | None = None, grades: Sequence[str] = (), types: Sequence[str] = (),
                  shard: str | None = None, argv: list[str] | None = None, log=print) -> dict:
    cfg = cfg or CatalogConfig()
    cfg.validate()
    k_shard, n_shard = parse_shard(shard)
    if not str(out).endswith(".parquet"):
        raise UsageError(f"--out {out}: name a .parquet file, e.g. targets.parquet")
    fractions = parse_fractions(cfg.splits, "--splits")
    files = expand_files(negatives) if negatives else []
    if not files:
        raise UsageError("--negatives: give at least one DR10 Tractor catalog (sweep FITS or parquet; globs allowed)")
    pos_notes: set[str] = set()
    known = load_known(list(positives), pos_notes)
    exclusion = known
    if LENSCAT not in positives:
        try:
            exclusion = load_known([LENSCAT] + list(positives))
        except UsageError:
            log("note: lenscat is not installed: negatives are excluded only around your --positives lists")
    pos = filter_positives(known, grades, types)
    if len(pos) == 0:
        raise DataError(f"no positives: {', '.join(positives)} hold {len(known)} entries, none with grade in "
                        f"{list(grades) or 'any'} and type in {list(types) or 'any'}; relax --grades/--types")
    pos, merged = dedupe_positions(pos, cfg.dedupe_radius_arcsec)
    if merged:
        pos_notes.add(f"{merged} positive(s) within {cfg.dedupe_radius_arcsec:g}\" of an earlier one merged into it "
                      "(one lens listed twice: the first listed is kept)")
    for line in sorted(pos_notes):
        log(f"note: {line}")
    matcher = SkyMatcher(exclusion.ra, exclusion.dec)
    notes: set[str] = set()

    # pass 1: counts per file and group; the footprint (pixels holding negatives)
    file_counts: list[dict[tuple, int]] = []
    footprint: set[int] = set()
    excluded = 0
    for path in files:
        f = read_features(path, cfg, notes)
        drop = matcher.within(f.ra, f.dec, cfg.exclude_radius_arcsec) & ~f.bad_position
        excluded += int(drop.sum())
        drop |= f.bad_position
        pix = healpix_index(f.ra, f.dec, cfg.nside)
        footprint.update(np.unique(pix).tolist())
        split = split_of_pixels(pix, seed, fractions)
        file_counts.append(_group_counts(split[~drop], f.stratum[~drop], f.confuser[~drop]))
    for line in sorted(notes):
        log(f"note: {line}")

    pos_pix = healpix_index(pos.ra, pos.dec, cfg.nside)
    if cfg.positives_in_footprint:
        inside = np.isin(pos_pix, np.fromiter(footprint, np.int64, len(footprint)))
        if not inside.any():
            raise DataError(f"no positives in the footprint of the negatives: none of the {len(pos)} positives lies "
                            f"in a HEALPix pixel (nside {cfg.nside}) holding a row of {len(files)} negative file(s); "
                            "give catalogs covering the positives, or --positives-anywhere")
        pos, pos_pix = pos.select(inside), pos_pix[inside]
    pos_split = split_of_pixels(pos_pix, seed, fractions)
    empty = _split_without_positives(pos_split, pos_pix, seed, fractions, cfg.nside)
    if empty:  # said before the slow second pass (Ctrl-C and rerun), and kept in the manifest's notes
        log(f"warning: {empty}")
        notes.add(empty)

    quotas, shortfall = _quotas(file_counts, pos_split, cfg)
    my_files = [i for i in range(len(files)) if i % n_shard == k_shard]
    neg_tables = [_select(files[i], i, file_counts[i], quotas, matcher, cfg, seed, fractions) for i in my_files]
    mine = np.full(len(pos), k_shard == 0)  # positives go in shard 0; every shard has their columns
    parts = [_positive_table(pos.select(mine), pos_pix[mine], pos_split[mine])] + [t for t in neg_tables if t.num_rows]
    table = _finish(_concat(parts, log), k_shard)
    manifest = _manifest(table, cfg, seed, shard, files, positives, grades, types, excluded, shortfall,
                         notes | pos_notes, argv)
    manifest["positives_merged"] = merged
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, row_group_size=4096)
    atomic_write_text(manifest_path(out), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _concat(parts: list[pa.Table], log) -> pa.Table:
    """The tables, one below the other; a column typed differently in two catalogs becomes text (one note)."""
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set] = defaultdict(set)
    for t in parts:
        for f in t.schema:
            types[f.name].add(f.type)
    mixed = sorted(n for n, ts in types.items() if len(ts - {pa.null()}) > 1)
    log(f"note: column(s) {', '.join(mixed)} differ in type between the input catalogs: written as text")
    fixed = [t.cast(pa.schema([pa.field(f.name, pa.string()) if f.name in mixed else f for f in t.schema]))
             for t in parts]
    return pa.concat_tables(fixed, promote_options="permissive")


def _group_counts(split: np.ndarray, stratum: np.ndarray, confuser: np.ndarray) -> dict[tuple, int]:
    """{(split, stratum, confuser): rows}, counted with numpy (sweep files hold millions of rows)."""
    if not len(split):
        return {}
    s_names, s_idx = np.unique(split.astype(str), return_inverse=True)
    t_names, t_idx = np.unique(stratum.astype(str), return_inverse=True)
    code = (s_idx * len(t_names) + t_idx) * 2 + confuser.astype(np.int64)
    values, counts = np.unique(code, return_counts=True)
    return {(str(s_names[v // 2 // len(t_names)]), str(t_names[v // 2 % len(t_names)]), bool(v % 2)): int(c)
            for v, c in zip(values, counts)}


def manifest_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name[: -len(".parquet")] + ".manifest.json")


def _split_without_positives(pos_split: np.ndarray, pos_pix: np.ndarray, seed: int, fractions: dict,
                             nside: int) -> str | None:
    """What to say when a split of `fractions` gets no positive (None when every split has one): a list
    meant for training and evaluation cannot be trained on (no val lenses) or judged (no test lenses), and
    `dhs cutouts` would fetch for minutes before the audit said NO-GO. A seed that fills every split is named."""
    have = {s: int((pos_split == s).sum()) for s in fractions}
    empty = [s for s, n in have.items() if n == 0]
    if not empty:
        return None
    alt = seed_filling_splits(pos_pix, seed, fractions)
    fix = f"use --seed {alt} (it puts positives in every split), " if alt is not None else ""
    counts = ", ".join(f"{s} {n}" for s, n in have.items())
    return (f"split {' and '.join(empty)} gets no positives: the {len(pos_pix)} positives lie in "
            f"{len(np.unique(pos_pix))} HEALPix pixel(s) (nside {nside}) and seed {seed} gives {counts}, so it "
            f"cannot train (no val lenses) or be judged (no test lenses); {fix}name fewer splits "
            "(--splits train=0.8,test=0.2), or give more positives")


def _quotas(file_counts: list[dict], pos_split: np.ndarray, cfg: CatalogConfig):
    """Per-file quota per group {(file, split, stratum, confuser): n} and per-split shortfall of negatives."""
    totals: dict[tuple, int] = defaultdict(int)
    for c in file_counts:
        for key, n in c.items():
            totals[key] += n
    quotas: dict[tuple, int] = {}
    shortfall: dict[str, int] = {}
    for s in sorted(set(pos_split.tolist())):
        want = int(round(cfg.neg_per_pos * int((pos_split == s).sum())))
        groups = {pool: sorted(k for k in totals if k[0] == s and k[2] == pool) for pool in (False, True)}
        avail = {pool: sum(totals[k] for k in groups[pool]) for pool in (False, True)}
        n_conf = min(int(round(cfg.confuser_frac * want)), avail[True])
        n_rand = min(want - n_conf, avail[False])
        n_conf = min(want - n_rand, avail[True])  # a short random pool is topped up with confusers
        shortfall[s] = want - n_rand - n_conf
        for pool, n_pool in ((False, n_rand), (True, n_conf)):
            per_group = allocate(n_pool, np.array([totals[k] for k in groups[pool]]))
            for key, q in zip(groups[pool], per_group):
                per_file = allocate(int(q), np.array([c.get(key, 0) for c in file_counts]))
                for i in np.flatnonzero(per_file):
                    quotas[(int(i),) + key] = int(per_file[i])
    return quotas, shortfall


def _select(path: str, file_idx: int, counts: dict, quotas: dict, matcher: SkyMatcher, cfg: CatalogConfig,
            seed: int, fractions: dict) -> pa.Table:
    """Pass 2 on one file: the rows of each group with the smallest seeded hash, up to the file's quota."""
    f = read_features(path, cfg, set())
    drop = matcher.within(f.ra, f.dec, cfg.exclude_radius_arcsec) | f.bad_position
    pix = healpix_index(f.ra, f.dec, cfg.nside)
    split = split_of_pixels(pix, seed, fractions)
    key = unit_hash(seed, file_idx, np.arange(len(f.ra)))
    chosen = []
    for (s, stratum, conf) in counts:
        q = quotas.get((file_idx, s, stratum, conf), 0)
        if q:
            rows = np.flatnonzero(~drop & (split == s) & (f.stratum == stratum) & (f.confuser == conf))
            chosen.append(rows[np.argsort(key[rows], kind="stable")[:q]])
    idx = np.sort(np.concatenate(chosen)) if chosen else np.array([], np.int64)
    cat = read_table(path)
    cat = cat.take(pa.array(idx, pa.int64()))
    cols = {}
    for name in cat.column_names:
        low = name.lower()
        if low in ("ra", "dec"):
            continue
        cols[low if low not in OUTPUT_COLUMNS + POSITIVE_COLUMNS else f"cat_{low}"] = cat[name]
    n = len(idx)
    base = {"name": pa.array([f"{Path(path).stem}:{i}" for i in idx], pa.string()),
            "ra": pa.array(f.ra[idx]), "dec": pa.array(f.dec[idx]), "label": pa.array(np.zeros(n, np.int8)),
            "pool": pa.array(np.where(f.confuser[idx], "confuser", "random").astype(str).tolist(), pa.string()),
            "grade": pa.nulls(n, pa.string()), "source_catalog": pa.array([Path(path).name] * n, pa.string()),
            "healpix": pa.array(pix[idx]), "split": pa.array(split[idx].astype(str).tolist(), pa.string())}
    return pa.table({**base, **cols})


def _positive_table(pos: Positives, pix: np.ndarray, split: np.ndarray) -> pa.Table:
    n = len(pos)
    s = lambda a: pa.array([None if v is None else str(v) for v in a], pa.string())  # noqa: E731
    return pa.table({"name": s(pos.name), "ra": pa.array(pos.ra, pa.float64()), "dec": pa.array(pos.dec, pa.float64()),
                     "label": pa.array(np.ones(n, np.int8)), "pool": pa.array(["positive"] * n, pa.string()),
                     "grade": s(pos.grade), "source_catalog": s(pos.source), "healpix": pa.array(pix, pa.int64()),
                     "split": pa.array(split.astype(str).tolist(), pa.string()),
                     **{k: s(v) for k, v in pos.extra.items()}})


def _finish(table: pa.Table, k_shard: int) -> pa.Table:
    """Rows ordered by (split, healpix, ra, dec, name): sky-local chunks for `dhs cutouts`; ids by that order."""
    table = table.sort_by([("split", "ascending"), ("healpix", "ascending"), ("ra", "ascending"),
                           ("dec", "ascending"), ("name", "ascending")])
    ids = pa.array([f"s{k_shard}-{i:08d}" for i in range(table.num_rows)], pa.string())
    rest = [c for c in table.column_names if c not in OUTPUT_COLUMNS]
    return table.append_column("target_id", ids).select(list(OUTPUT_COLUMNS) + rest)


def _manifest(table, cfg, seed, shard, files, positives, grades, types, excluded, shortfall, notes, argv) -> dict:
    from dataclasses import asdict

    counts: dict[str, dict[str, int]] = {}
    for s, pool in zip(table["split"].to_pylist(), table["pool"].to_pylist()):
        counts.setdefault(s, {p: 0 for p in POOLS})[pool] += 1
    info = run_info(argv)
    return {"rows": table.num_rows, "counts": counts, "excluded_near_known_lenses": excluded,
            "negative_shortfall": {s: n for s, n in shortfall.items() if n}, "notes": sorted(notes),
            "seed": seed, "shard": shard or "0/1", "negative_files": files, "positives": list(positives),
            "grades": list(grades), "types": list(types), "config": json.loads(json.dumps(asdict(cfg))),
            "version": info["version"], "git_commit": info["git_commit"], "command": info["command"]}
