"""Audit check 4: split integrity. Exercised by `dhs audit DATA`.

- host ids (`schema.HOST_ID_COLUMNS`): read for EVERY row by the cheap pass; a host in two splits is an
  error (the val/test metrics would be measured on galaxies seen in training).
- identical stamps (hash of the decoded float32 pixels): only among the rows the pixel pass decoded (a
  sample by default, every usable row with --full).
- split fractions: reported; an evaluation split larger than train, or a small train split, is warned about.
"""

from __future__ import annotations

import numpy as np

from darkhaloscope.audit.registry import AuditContext, first_examples, register_check
from darkhaloscope.common.report import Finding
from darkhaloscope.stamps.counts import duplicate_ids
from darkhaloscope.stamps.schema import STAMP_ID_COLUMN


def split_codes(splits: np.ndarray) -> np.ndarray:
    """Object array of split names -> int64 codes (fast when runs of one name dominate, as they do)."""
    codes = np.empty(len(splits), np.int64)
    table: dict[str, int] = {}
    change = np.flatnonzero(splits[1:] != splits[:-1]) + 1 if len(splits) else np.empty(0, np.int64)
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(splits)]]).astype(np.int64)
    for s0, e0 in zip(starts, ends):
        codes[s0:e0] = table.setdefault(splits[s0], len(table))
    return codes


def cross_split(keys: np.ndarray, splits: np.ndarray) -> tuple[np.ndarray, int]:
    """(indices of the rows whose key occurs in more than one split, number of such keys)."""
    if len(keys) == 0:
        return np.empty(0, np.int64), 0
    codes = split_codes(splits)
    order = np.lexsort((codes, keys))
    k, c = keys[order], codes[order]
    first = np.concatenate([[True], k[1:] != k[:-1]])
    group_code = c[np.maximum.accumulate(np.where(first, np.arange(len(k)), 0))]
    shared = np.unique(k[c != group_code])
    return np.flatnonzero(np.isin(keys, shared)), len(shared)


def duplicates_within(keys: np.ndarray, splits: np.ndarray) -> int:
    """Rows that repeat the key of an earlier row of the same split."""
    if len(keys) == 0:
        return 0
    codes = split_codes(splits)
    order = np.lexsort((codes, keys))
    k, c = keys[order], codes[order]
    return int(((k[1:] == k[:-1]) & (c[1:] == c[:-1])).sum())


def _examples(idx: np.ndarray, keys: np.ndarray, splits: np.ndarray, where_of) -> list[str]:
    """For the first shared key: 'split: where' of each of its rows (up to 4)."""
    if len(idx) == 0:
        return []
    k = keys[idx[0]]
    rows = idx[keys[idx] == k][:4]
    return [f"{splits[i]}: {where_of(i)}" for i in rows]


def _host_findings(ctx: AuditContext) -> list[Finding]:
    out = []
    by_col: dict[str, list] = {}
    for fs in ctx.scan.files:
        for col, parts in fs.hosts.items():
            for h, s, r in parts:
                by_col.setdefault(col, []).append((h, s, r, fs.relpath))
    ids = by_col.pop(STAMP_ID_COLUMN, None)
    if ids is not None and len(np.unique(np.concatenate([p[0] for p in ids]))) < sum(len(p[0]) for p in ids):
        msg = duplicate_ids(ctx.tier)  # exact ids and places, read again only when hashes repeat
        if msg:
            out.append(Finding("split", "error", msg, {"column": STAMP_ID_COLUMN}))
    for col, parts in by_col.items():
        keys = np.concatenate([p[0] for p in parts])
        splits = np.concatenate([p[1] for p in parts])
        idx, n_shared = cross_split(keys, splits)
        if n_shared:
            owner = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
            rows = np.concatenate([p[2] for p in parts])
            ex = _examples(idx, keys, splits, lambda i: f"{parts[owner[i]][3]} row {rows[i]}")
            out.append(Finding("split", "error", f"{n_shared} {col}(s) appear in more than one split "
                               f"({len(idx)} rows), e.g. {first_examples(ex, 4)}; assign each host to one split "
                               "(split by host / sky region), or val/test metrics are measured on training galaxies",
                               {"column": col, "shared_ids": n_shared, "rows": int(len(idx)), "examples": ex}))
        else:
            out.append(Finding("split", "info", f"{col}: {len(np.unique(keys))} distinct id(s), none in two splits "
                               "(every row checked)", {"column": col}))
    return out


def _stamp_findings(ctx: AuditContext) -> list[Finding]:
    px = ctx.pixels
    if px is None or not px.hashes:
        return []
    keys, splits = px.stacked("hashes"), px.stacked("hash_splits")
    files, rows = px.stacked("hash_file"), px.stacked("hash_row")
    idx, n_shared = cross_split(keys, splits)
    everything = px.full or px.rows_decoded >= sum(ctx.scan.usable().values())
    scope = "every usable row" if everything else f"{len(keys)} sampled row(s) (--full checks every row)"
    out = []
    if n_shared:
        ex = _examples(idx, keys, splits, lambda i: f"{ctx.tier.files[files[i]].relpath} row {rows[i]}")
        out.append(Finding("split", "error", f"{n_shared} identical stamp(s) appear in more than one split, e.g. "
                           f"{first_examples(ex, 4)}; remove the copies (among {scope})",
                           {"shared_stamps": n_shared, "rows": int(len(idx)), "examples": ex}))
    dup = duplicates_within(keys, splits)
    if dup > 0:
        out.append(Finding("split", "warning", f"{dup} stamp(s) are exact copies of another stamp of the same split "
                           f"(among {scope}); de-duplicate, copies over-weight those hosts", {"duplicates": dup}))
    if not out:
        out.append(Finding("split", "info", f"no identical stamps across splits among {scope}", {"rows": len(keys)}))
    return out


def _fraction_findings(ctx: AuditContext) -> list[Finding]:
    cfg, rows = ctx.config, ctx.scan.usable()
    total = sum(rows.values())
    if not total:
        return []
    fr = {s: n / total for s, n in rows.items()}
    out = [Finding("split", "info", "split fractions (usable rows): " + ", ".join(f"{s} {f:.1%}" for s, f in fr.items()),
                   {"fractions": fr, "rows": rows})]
    train = rows.get("train", 0)
    for s in ("val", "test"):
        if rows.get(s, 0) and train and rows[s] / train > cfg.max_eval_to_train_ratio:
            out.append(Finding("split", "warning", f"split '{s}' ({rows[s]} rows) is larger than train ({train} rows) "
                               f"by {rows[s] / train:.2f}x (> {cfg.max_eval_to_train_ratio:g}); are the splits "
                               "inverted? check the region_split assignment", {"split": s, "ratio": rows[s] / train}))
    if train and fr["train"] < cfg.min_train_frac:
        out.append(Finding("split", "warning", f"train holds only {fr['train']:.1%} of usable rows (< "
                           f"{cfg.min_train_frac:.0%}); check the split fractions", {"train_frac": fr["train"]}))
    return out


@register_check("split")
def check_split(ctx: AuditContext) -> list[Finding]:
    return _host_findings(ctx) + _stamp_findings(ctx) + _fraction_findings(ctx)
