"""The sampled pass of `dhs audit`: decode stamps and look at pixels.

By default a seeded random set of whole row groups, stratified by split, adding up to about
`sample_rows` usable rows (cutout_ok=1); `--full` decodes every usable row. Each decoded row is checked
for decode failure, unknown npz layout, missing band, wrong shape, NaN/Inf and all-zero bands; valid
rows give a pixel hash (duplicate stamps across splits) and image statistics (shortcut probe); injection
rows with a `ctrl_stamp_npz` give the paired-control check, and then the paired-host probe's material: image
statistics, g band included, of the plain controls (no `confuser_kind`) and of the injections' own hosts
(their `ctrl_stamp_npz`). Memory: one row group at a time, plus
8 bytes of hash per row and the image statistics of at most `probe_max_rows` rows. Exercised by `dhs audit DATA [--full]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.audit.stats import image_features
from darkhaloscope.errors import DHSError
from darkhaloscope.stamps.batch import decode_tier_batch, labels_of, stamp_column
from darkhaloscope.stamps.codec import decode_batch
from darkhaloscope.stamps.robust import median_sigma
from darkhaloscope.stamps.schema import (BANDS, CONFUSER_COLUMN, CTRL_STAMP_COLUMN, LABEL_COLUMN, LABEL_SOURCE_COLUMN, SPLIT_COLUMN,
                                          masked_pixels, pixel_radius)
from darkhaloscope.stamps.tier import Tier, TierBatch

# How a decode error message maps to a problem kind (first match wins; the codec's wording).
ERROR_KINDS: tuple[tuple[str, str], ...] = (
    ("unknown npz layout", "unknown_layout"),
    ("missing band", "missing_band"),
    ("has shape", "wrong_shape"),
    ("NaN/Inf", "nan_inf"),
    ("stamp is null", "null_stamp"),
    ("", "decode_failure"),
)
MAX_EXAMPLES = 5  # offending row ids kept per problem kind
HOST_PROBE_BANDS = BANDS  # the paired-host probe compares hosts with hosts: g is host light there too
ARC_FLUX_COLUMN = "arc_flux_r_nmgy"  # injected r-band flux inside the stamp: checks paired flux (units bug)
PAIRED_COUNTS = ("checked", "violations", "far_nonzero", "negative", "flux_not_positive", "flux_mismatch",
                 "max_far_median_sigma")


def error_kind(message: str) -> str:
    return next(kind for needle, kind in ERROR_KINDS if needle in message)


@dataclass
class PixelSample:
    full: bool  # every usable row was decoded
    rows_decoded: int = 0
    row_groups: int = 0
    problems: dict[str, int] = field(default_factory=dict)  # kind -> rows
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> first 'file row i: reason'
    features: list[np.ndarray] = field(default_factory=list)  # (n, F) image statistics of valid rows (capped)
    labels: list[np.ndarray] = field(default_factory=list)  # matching labels
    hashes: list[np.ndarray] = field(default_factory=list)  # int64 pixel hashes of valid rows
    hash_splits: list[np.ndarray] = field(default_factory=list)
    hash_file: list[np.ndarray] = field(default_factory=list)  # index in tier.files of each hashed row
    hash_row: list[np.ndarray] = field(default_factory=list)  # its row index inside that file
    paired: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PAIRED_COUNTS, 0))
    paired_examples: list[str] = field(default_factory=list)
    host_features: list[np.ndarray] = field(default_factory=list)  # (n, F) host statistics (HOST_PROBE_BANDS)
    host_labels: list[np.ndarray] = field(default_factory=list)  # 0: a plain control, 1: an injection's host

    def add_problem(self, kind: str, where: str, reason: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(f"{where}: {reason}")

    def stacked(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.empty((0,))


def choose_row_groups(tier: Tier, sample_rows: int, min_per_split: int, seed: int, full: bool):
    """(file, row group) pairs to decode: all with `full`, else a seeded sample stratified by split."""
    pairs = [(f, rg) for f in tier.files for rg in range(f.num_row_groups)]
    if full:
        return pairs
    rng = np.random.default_rng(seed)
    total = max(1, tier.num_rows)
    chosen = []
    for split in sorted({f.split or "" for f in tier.files}):
        pool = [p for p in pairs if (p[0].split or "") == split]
        rows_split = sum(p[0].row_group_rows[p[1]] for p in pool)
        quota = max(min_per_split, int(round(sample_rows * rows_split / total)))
        got = 0
        for i in rng.permutation(len(pool)):
            if got >= quota:
                break
            chosen.append(pool[i])
            got += pool[i][0].row_group_rows[pool[i][1]]
    order = {id(f): k for k, f in enumerate(tier.files)}
    return sorted(chosen, key=lambda p: (order[id(p[0])], p[1]))


def sample_pixels(tier: Tier, cfg: AuditConfig, *, full: bool = False,
                  progress: Callable[[int], None] | None = None,
                  total_hint: Callable[[int], None] | None = None) -> PixelSample:
    """Decode the chosen row groups (usable rows only) and collect the pixel checks' raw material."""
    cols = tier.columns
    stamp = stamp_column(cols)
    wanted = [stamp] + [c for c in (LABEL_COLUMN, LABEL_SOURCE_COLUMN, CTRL_STAMP_COLUMN, ARC_FLUX_COLUMN,
                                     CONFUSER_COLUMN) if c in cols]
    if not tier.split_from_partition and SPLIT_COLUMN in cols:
        wanted.append(SPLIT_COLUMN)
    if LABEL_COLUMN in wanted and LABEL_SOURCE_COLUMN in wanted:
        wanted.remove(LABEL_SOURCE_COLUMN)
    chosen = choose_row_groups(tier, cfg.sample_rows, cfg.min_sample_rows_per_split, cfg.seed, full)
    if total_hint:
        total_hint(len(chosen))
    expected = sum(f.row_group_rows[rg] for f, rg in chosen)
    keep_p = min(1.0, cfg.probe_max_rows / max(1, expected))
    rng = np.random.default_rng(cfg.seed)
    out = PixelSample(full=full)
    pf_cache: dict[str, object] = {}
    file_index = {id(f): k for k, f in enumerate(tier.files)}
    for f, rg in chosen:
        present = [c for c in wanted if c in f.columns or c == SPLIT_COLUMN and f.split is not None]
        if stamp not in f.columns:
            out.add_problem("missing_column", f.relpath, f"no '{stamp}' column")
            continue
        try:
            if f.path not in pf_cache:
                pf_cache.clear()
                pf_cache[f.path] = tier.open_parquet(f)
            batch = tier.read_row_group(f, rg, present, cutout_ok_only=True, pf=pf_cache[f.path])
        except DHSError as e:  # a corrupt row group: a finding, and the audit goes on
            out.add_problem("unreadable", f"{f.relpath} row group {rg}",
                            str(e).split(f"row group {rg}: ", 1)[-1].split(";")[0])
            continue
        _one_batch(out, batch, file_index[id(f)], rng, keep_p, cfg)
        out.row_groups += 1
        if progress:
            progress(1)
    return out


def _one_batch(out: PixelSample, batch: TierBatch, k: int, rng, keep_p: float, cfg: AuditConfig) -> None:
    t = batch.table
    n = t.num_rows
    if n == 0:
        return
    try:
        labels = labels_of(t)
    except DHSError:  # a bad label is the balance check's finding, not this one's: decode without labels
        labels = None
        t = t.drop_columns([c for c in (LABEL_COLUMN, LABEL_SOURCE_COLUMN) if c in t.column_names])
        batch = TierBatch(batch.file, batch.row_group, t, batch.row_index)
    sb = decode_tier_batch(batch, on_error="mask", threads=cfg.decode_threads, check_finite=True)
    out.rows_decoded += n
    for i, reason in sorted(sb.errors.items()):
        out.add_problem(error_kind(reason), sb.where[i], reason)
    valid = sb.valid.copy()
    images = sb.images
    zero = (images.reshape(n, images.shape[1], -1) == 0).all(axis=2)  # (n, bands)
    for i in np.flatnonzero(valid & zero.any(axis=1)):
        bands = [b for b, z in zip(BANDS, zero[i]) if z]
        out.add_problem("all_zero_band", sb.where[i], f"band(s) {', '.join(bands)} all zero")
        valid[i] = False
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return
    splits = (np.asarray(t[SPLIT_COLUMN].cast(pa.string()).to_pylist(), dtype=object) if SPLIT_COLUMN in
              t.column_names else np.full(n, batch.file.split or "unsplit", dtype=object))
    out.hashes.append(np.array([int.from_bytes(hashlib.blake2b(images[i].tobytes(), digest_size=8).digest(),
                                               "little", signed=True) for i in idx], np.int64))
    out.hash_splits.append(splits[idx])
    out.hash_file.append(np.full(len(idx), k, np.int32))
    out.hash_row.append(batch.row_index[idx])
    if labels is not None:
        keep = idx[rng.random(len(idx)) < keep_p]
        out.features.append(image_features(images[keep], cfg.centre_radius_pix, cfg.background_radius_pix,
                                           cfg.probe_bands))
        out.labels.append(labels[keep])
        if CTRL_STAMP_COLUMN in t.column_names:
            arc_flux = (np.asarray(pc.cast(t[ARC_FLUX_COLUMN], pa.float64()).to_numpy(zero_copy_only=False))
                        if ARC_FLUX_COLUMN in t.column_names else None)
            hosts = _paired(out, t[CTRL_STAMP_COLUMN], images, labels, valid, sb.where, arc_flux, cfg)
            plain = keep[labels[keep] == 0]
            if CONFUSER_COLUMN in t.column_names:  # a confuser's light is not the host's: plain controls only
                plain = plain[np.asarray(pc.is_null(t[CONFUSER_COLUMN]).to_numpy(zero_copy_only=False), bool)[plain]]
            hosts = hosts[rng.random(len(hosts)) < keep_p]
            for imgs, lab in ((images[plain], 0), (hosts, 1)):
                if len(imgs):
                    out.host_features.append(image_features(imgs, cfg.centre_radius_pix, cfg.background_radius_pix,
                                                            HOST_PROBE_BANDS))
                    out.host_labels.append(np.full(len(imgs), lab, np.int8))


def _paired(out: PixelSample, ctrl_col, images, labels, valid, where, arc_flux, cfg: AuditConfig) -> np.ndarray:
    """Injection - control: ~0 in the outer region, never clearly negative, flux matching arc_flux_r_nmgy.
    Returns the valid paired hosts (m, 3, S, S)."""
    blobs = ctrl_col.to_pylist()
    idx = [i for i in np.flatnonzero(valid & (labels == 1)) if blobs[i] is not None]
    if not idx:
        return images[:0]
    ctrl = decode_batch([blobs[i] for i in idx], where=[where[i] for i in idx], on_error="mask",
                        threads=cfg.decode_threads)
    for j, reason in ctrl.errors.items():
        out.add_problem("ctrl_" + error_kind(reason), where[idx[j]], f"{CTRL_STAMP_COLUMN}: {reason}")
    size = images.shape[-1]
    far = pixel_radius(size) >= cfg.paired_far_radius_pix
    diff = images[idx] - ctrl.images  # (m, 3, S, S)
    bg = masked_pixels(ctrl.images, far)
    sigma = np.maximum(median_sigma(bg, axis=2)[1], 1e-12)
    far_med = (np.median(np.abs(masked_pixels(diff, far)), axis=2) / sigma).max(axis=1)  # worst band, in sigma
    neg = (diff.reshape(len(idx), 3, -1).min(axis=2) / sigma).min(axis=1)  # most negative, in sigma
    flux_r = diff[:, BANDS.index("r")].sum(axis=(1, 2))
    p = out.paired
    for j in np.flatnonzero(ctrl.valid):
        p["checked"] += 1
        p["max_far_median_sigma"] = max(p["max_far_median_sigma"], float(far_med[j]))
        bad = []
        if far_med[j] > cfg.paired_far_tol_sigma:
            bad.append(("far_nonzero", f"median |injection - control| = {far_med[j]:.2f} sigma at r >= "
                        f"{cfg.paired_far_radius_pix:g} px"))
        if neg[j] < -cfg.paired_neg_tol_sigma:
            bad.append(("negative", f"injection - control reaches {neg[j]:.1f} sigma"))
        total = diff[j].sum()
        if total <= 0:
            bad.append(("flux_not_positive", f"arc flux {total:.3g} nmgy <= 0"))
        if arc_flux is not None and np.isfinite(arc_flux[idx[j]]) and arc_flux[idx[j]] > 0:
            ratio = flux_r[j] / arc_flux[idx[j]]
            if not 1 / cfg.paired_flux_ratio_tol <= ratio <= cfg.paired_flux_ratio_tol:
                bad.append(("flux_mismatch", f"r-band injection - control flux {flux_r[j]:.3g} nmgy is {ratio:.3g}x "
                            f"{ARC_FLUX_COLUMN} {arc_flux[idx[j]]:.3g}"))
        for kind, _ in bad:
            p[kind] += 1
        if bad:
            p["violations"] += 1
            if len(out.paired_examples) < MAX_EXAMPLES:
                out.paired_examples.append(f"{where[idx[j]]}: {'; '.join(m for _, m in bad)}")
    return ctrl.images[ctrl.valid]
