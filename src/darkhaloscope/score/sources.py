"""What `dhs score` reads: a tier (any layout `open_tier` accepts) or a folder of npz / FITS cutouts,
streamed in bounded-memory batches with every metadata column, plus random access to single stamps
(`fetch`) for galleries and probes.

Rows are addressed by (`source_file`, `source_row`): the file relative to the data root and the row
inside it (0 for one-stamp files). Sharding (`--shard K/N`, torchrun ranks) splits the units of work
(row groups, or files of a cutout folder) round-robin, so N machines cover the data exactly once.
Exercise: `dhs score --checkpoint CKPT --data DATA --out scores.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from darkhaloscope.errors import DataError, StampDecodeError
from darkhaloscope.stamps.batch import decode_tier_batch, labels_of
from darkhaloscope.stamps.codec import MAX_CUTOUT_BYTES, decode_batch, npz_scalar
from darkhaloscope.stamps.fs import S3Options, is_s3
from darkhaloscope.stamps.pack import check_packed_complete
from darkhaloscope.stamps.schema import (CTRL_STAMP_COLUMN, MAX_DECODED_PIXELS, NPZ_GRADE_KEY, PACKED_STAMP_COLUMN, SPLIT_COLUMN,
                                         STAMP_COLUMN, STAMP_SIZE)
from darkhaloscope.stamps.tier import Tier, TierBatch, cutout_files, is_local_tier, open_tier
from darkhaloscope.survey.fitsimage import FitsFormatError, read_fits_cube

STAMP_COLUMNS = (STAMP_COLUMN, CTRL_STAMP_COLUMN, PACKED_STAMP_COLUMN)
CUTOUT_SUFFIXES = (".npz", ".fits", ".fits.gz", ".fit", ".fits.fz", ".fz")
MAX_CUTOUT_FILE_BYTES = MAX_CUTOUT_BYTES + (1 << 20)  # an npz cutout file: its array plus 1 MB of members / zip
GRADE_COLUMN = "grade"  # a cutout folder's per-file grade; the column `dhs evaluate --known-lenses` groups by


@dataclass
class SourceBatch:
    images: np.ndarray  # (N, 3, 64, 64) float32 nanomaggies (zeros where not valid)
    valid: np.ndarray  # (N,) bool: decoded and finite
    errors: dict[int, str]  # row in batch -> why it failed
    labels: np.ndarray | None  # (N,) int8, None when the data carry no label
    meta: pa.Table  # every non-stamp column of these rows (may have no columns)
    source_file: list[str]
    source_row: np.ndarray  # (N,) int64



class TierSource:
    """A Phase 4c / packed tier: one unit of work per row group."""

    def __init__(self, uri: str, s3: S3Options | None = None, split: str | None = None,
                 cutout_ok_only: bool = False, shard: tuple[int, int] = (0, 1)):
        self.tier: Tier = open_tier(uri, s3)
        check_packed_complete(self.tier)  # a pack killed half-way is refused, not scored as if whole
        self.split, self.cutout_ok_only = split, cutout_ok_only
        self.meta_columns = [c for c in self.tier.columns if c not in STAMP_COLUMNS]
        units = [(f, rg) for f in self.tier.files_for(split) for rg in range(f.num_row_groups)]
        self.units = units[shard[0]::shard[1]]
        self.num_rows = sum(f.row_group_rows[rg] for f, rg in self.units)
        self.has_ctrl = CTRL_STAMP_COLUMN in self.tier.columns

    def batches(self, threads: int = 1) -> Iterator[SourceBatch]:
        stamp = PACKED_STAMP_COLUMN if self.tier.is_packed else STAMP_COLUMN
        for f, rg in self.units:
            cols = [stamp] + [c for c in self.meta_columns if c in f.columns]
            b = self.tier.read_row_group(f, rg, cols, split=self.split, cutout_ok_only=self.cutout_ok_only)
            sb = decode_tier_batch(b, on_error="mask", threads=threads)
            meta = b.table.drop_columns([stamp])
            if SPLIT_COLUMN not in meta.column_names and f.split is not None:
                meta = meta.append_column(SPLIT_COLUMN, pa.array([f.split] * meta.num_rows, pa.string()))
            yield SourceBatch(sb.images, sb.valid, sb.errors, labels_of(b.table), meta,
                              [f.relpath] * meta.num_rows, np.asarray(b.row_index, np.int64))

    def fetch(self, source_file: list[str], source_row: list[int], column: str | None = None) -> np.ndarray:
        """Stamps of the given (file, row) pairs, in order; `column` = ctrl_stamp_npz for paired controls."""
        by_rel = {f.relpath: f for f in self.tier.files}
        col = column or (PACKED_STAMP_COLUMN if self.tier.is_packed else STAMP_COLUMN)
        out = np.zeros((len(source_file), 3, STAMP_SIZE, STAMP_SIZE), np.float32)
        wanted: dict[str, list[tuple[int, int]]] = {}
        for i, (rel, row) in enumerate(zip(source_file, source_row)):
            if rel not in by_rel:
                raise DataError(f"{rel}: not a file of {self.tier.uri}; was the scores file made from this data?")
            wanted.setdefault(rel, []).append((i, int(row)))
        for rel, items in wanted.items():
            f = by_rel[rel]
            pf = self.tier.open_parquet(f)
            starts = np.cumsum([0] + f.row_group_rows)
            for rg in np.unique([np.searchsorted(starts, r, side="right") - 1 for _, r in items]):
                b = self.tier.read_row_group(f, int(rg), [col], pf=pf)
                local = {int(r): j for j, r in enumerate(b.row_index)}
                take = [(i, local[r]) for i, r in items if r in local]
                if col == CTRL_STAMP_COLUMN:
                    blobs = pa.array([b.table[col][j].as_py() for _, j in take], pa.binary())
                    res = decode_batch(blobs, where=[f"{rel} row {r}" for _, r in take], on_error="mask")
                    imgs = res.images
                else:  # decode only the wanted rows (one stamp of a 128-row group for `dhs grade serve`)
                    rows = [j for _, j in take]
                    sub = TierBatch(b.file, b.row_group, b.table.take(rows), np.asarray(b.row_index)[rows])
                    imgs = decode_tier_batch(sub, on_error="mask").images
                for (i, _), img in zip(take, imgs):
                    out[i] = img
        return out


def centre_crop(img: np.ndarray, where: str) -> np.ndarray:
    """(3, H, W) or (H, W, 3) -> (3, 64, 64) float32, centre-cropped."""
    if img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
        raise StampDecodeError(f"expected a (3, H, W) or (H, W, 3) g/r/z cube, got shape {img.shape}", where)
    if img.shape[0] != 3:
        img = np.moveaxis(img, -1, 0)
    h, w = img.shape[1:]
    if h < STAMP_SIZE or w < STAMP_SIZE:
        raise StampDecodeError(f"cutout is {h}x{w} pixels, smaller than {STAMP_SIZE}x{STAMP_SIZE}", where)
    y0, x0 = (h - STAMP_SIZE) // 2, (w - STAMP_SIZE) // 2
    return np.ascontiguousarray(img[:, y0:y0 + STAMP_SIZE, x0:x0 + STAMP_SIZE], dtype=np.float32)


def read_fits_file(path: Path) -> tuple[np.ndarray, dict]:
    """The first 3-D image of a .fits / .fit / .fits.gz / .fits.fz file and its header, streamed header first (gzip only as
    far as the declared, bounded size: `survey.fitsimage.read_fits_cube`). FitsFormatError for any fault."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            return read_fits_cube(gzip.GzipFile(fileobj=f) if gz else f)
    except (OSError, EOFError, zlib.error) as e:  # a corrupt or truncated gzip stream
        raise FitsFormatError(f"not a readable FITS file ({type(e).__name__}: {str(e)[:80]})") from None


def read_cutout(path: Path) -> np.ndarray:
    """One npz (codec layouts) or FITS (3-band cube in the primary or first image HDU) cutout."""
    return read_graded_cutout(path)[0]


def _degrees(*values) -> float | None:
    for v in values:
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v):
            return float(v)
    return None


def read_graded_cutout(path: Path) -> tuple[np.ndarray, str | None, tuple[float | None, float | None]]:
    """`read_cutout`, the candidate's grade (an npz's `meta_tier` member: the DR10 lens candidates carry
    'A'/'B'/'C' there; None for FITS or an npz without one) and its sky position (ra, dec) in degrees where
    the file gives one (npz `ra` / `dec` members, FITS `RA` / `DEC` or `CRVAL1` / `CRVAL2` cards), else None."""
    where = str(path)
    if path.suffix == ".npz":
        size = path.stat().st_size
        if size > MAX_CUTOUT_FILE_BYTES:
            raise StampDecodeError(f"npz file of {size:,} bytes is larger than any cutout within the "
                                   f"{MAX_DECODED_PIXELS:,}-pixel bound (MAX_DECODED_PIXELS); refused unread", where)
        blob = path.read_bytes()
        res = decode_batch(pa.array([blob], pa.binary()), where=[where], on_error="raise")
        grade = npz_scalar(blob, NPZ_GRADE_KEY)
        pos = tuple(_degrees(npz_scalar(blob, k), npz_scalar(blob, f"meta_{k}")) for k in ("ra", "dec"))  # or meta_ra
        return res.images[0], grade if isinstance(grade, str) else None, pos
    try:
        data, header = read_fits_file(path)
    except FitsFormatError as e:
        raise StampDecodeError(str(e), where) from None
    img = centre_crop(np.asarray(data, dtype=np.float32), where)
    if not np.isfinite(img).all():
        raise StampDecodeError("NaN/Inf pixels in the central 64x64", where)
    radec = str(header.get("CTYPE1", "")).upper().startswith("RA")
    return img, None, (_degrees(header.get("RA"), header.get("CRVAL1") if radec else None),
                       _degrees(header.get("DEC"), header.get("CRVAL2") if radec else None))


def identical_files(files: list[Path]) -> dict[Path, Path]:
    """{file: the earlier file holding the same bytes}: one cutout saved under several names. Only files
    sharing a size are hashed (sha256, read in 1 MiB chunks), so a folder of distinct files costs one stat each."""
    import hashlib
    from collections import defaultdict

    by_size: dict[int, list[Path]] = defaultdict(list)
    for p in files:
        by_size[p.stat().st_size].append(p)
    same: dict[Path, Path] = {}
    for group in (g for g in by_size.values() if len(g) > 1):
        first: dict[str, Path] = {}
        for p in group:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            if digest in first:
                same[p] = first[digest]
            else:
                first[digest] = p
    return same


class CutoutFolderSource:
    """A local folder of single-stamp cutout files (*.npz, *.fits[.gz]); labels unknown, metadata columns
    `file`, `grade` (an npz's `meta_tier`, null when absent: `dhs evaluate --known-lenses` recall per
    grade) and `ra` / `dec` (degrees, where the file gives them). A file holding the same bytes as an earlier
    one (one cutout saved under several names) is read once: `duplicates` maps each such name to the kept
    one and `note` says how many were merged. Listed as tiers
    are (`stamps.tier.cutout_files`): symlinks inside the folder are not followed, so a link out of it is
    never read and a second name for a file is not scored twice."""

    def __init__(self, folder: str, shard: tuple[int, int] = (0, 1), batch_rows: int = 256):
        self.root = Path(folder)
        files = cutout_files(self.root, CUTOUT_SUFFIXES)
        self.names = {p.relative_to(self.root).as_posix() for p in files}  # every file listed, all shards
        if not files:
            raise DataError(f"{folder}: no parquet tier and no *.npz / *.fits cutouts inside; point --data at a "
                            "tier or a folder of cutouts")
        same = identical_files(files)
        self.duplicates = {p.relative_to(self.root).as_posix(): q.relative_to(self.root).as_posix()
                           for p, q in same.items()}
        self.note = None if not same else (
            f"{len(same)} cutout file(s) of {folder} hold the same bytes as another and were merged into it "
            f"(first: {next(iter(self.duplicates))} = {next(iter(self.duplicates.values()))})")
        files = [p for p in files if p not in same]
        self.files = files[shard[0]::shard[1]]
        self.num_rows, self.batch_rows, self.has_ctrl = len(self.files), batch_rows, False
        self.fetch_errors: dict[str, str] = {}  # file -> why `fetch` gave zeros for it

    def batches(self, threads: int = 1) -> Iterator[SourceBatch]:
        for start in range(0, len(self.files), self.batch_rows):
            chunk = self.files[start:start + self.batch_rows]
            images = np.zeros((len(chunk), 3, STAMP_SIZE, STAMP_SIZE), np.float32)
            valid = np.ones(len(chunk), bool)
            errors: dict[int, str] = {}
            grades: list[str | None] = [None] * len(chunk)
            pos: list[tuple[float | None, float | None]] = [(None, None)] * len(chunk)
            for i, p in enumerate(chunk):
                try:
                    images[i], grades[i], pos[i] = read_graded_cutout(p)
                except StampDecodeError as e:
                    valid[i], errors[i] = False, str(e)
            rel = [p.relative_to(self.root).as_posix() for p in chunk]
            meta = pa.table({"file": rel, GRADE_COLUMN: pa.array(grades, pa.string()),
                             "ra": pa.array([a for a, _ in pos], pa.float64()),
                             "dec": pa.array([d for _, d in pos], pa.float64())})
            yield SourceBatch(images, valid, errors, None, meta, rel, np.zeros(len(chunk), np.int64))

    def fetch(self, source_file: list[str], source_row: list[int], column: str | None = None) -> np.ndarray:
        """Stamps of files named relative to the folder (from a scores file: data, so they must stay inside).
        A file that does not decode gives zeros, as a bad tier row does, and its reason in `fetch_errors`."""
        root = self.root.resolve()
        paths = [(self.root / f).resolve() for f in source_file]
        bad = next((f for f, p in zip(source_file, paths) if not p.is_relative_to(root)), None)
        if bad is not None:
            raise DataError(f"source_file {bad!r} leaves the cutout folder {self.root}; refusing to read it")
        bad = next((f for f in source_file if Path(f).as_posix() not in self.names), None)
        if bad is not None:
            raise DataError(f"source_file {bad!r} is not a cutout file of {self.root} (symlinks are not followed); "
                            "was the scores file made from this folder?")
        out = np.zeros((len(paths), 3, STAMP_SIZE, STAMP_SIZE), np.float32)
        for i, (f, p) in enumerate(zip(source_file, paths)):
            try:
                out[i] = read_cutout(p)
            except StampDecodeError as e:
                self.fetch_errors[Path(f).as_posix()] = str(e)
        return out


def open_source(data: str, s3: S3Options | None = None, *, split: str | None = None, cutout_ok_only: bool = False,
                shard: tuple[int, int] = (0, 1)):
    """A TierSource for parquet data (local or s3://), else a CutoutFolderSource for a folder of cutouts."""
    if is_s3(data) or is_local_tier(data):
        return TierSource(data, s3, split, cutout_ok_only, shard)
    return CutoutFolderSource(data, shard)


SAME_LENS_ARCSEC = 1.0  # two known-lens cutouts centred closer than this are one lens (as `dhs catalog` merges)


def merged_duplicates(table: pa.Table, provenance: dict) -> tuple[np.ndarray, int, str | None]:
    """Rows of a scores table that repeat an earlier lens: (mask of the repeats, how many lenses were merged
    in all, one line saying so or None). Counts the files `dhs score` already merged for holding the same
    bytes (`duplicates_merged` in the provenance) and marks rows whose `ra` / `dec` lie within
    SAME_LENS_ARCSEC of an earlier row's, so one lens saved under several names counts once."""
    from darkhaloscope.survey.sky import near_duplicates

    by_bytes = len(provenance.get("duplicates_merged") or {})
    repeat = np.zeros(table.num_rows, bool)
    if "ra" in table.column_names and "dec" in table.column_names:
        ra, dec = (np.asarray(table[c].to_numpy(zero_copy_only=False), float) for c in ("ra", "dec"))
        repeat = near_duplicates(ra, dec, SAME_LENS_ARCSEC) >= 0
    n_sky = int(repeat.sum())
    if not by_bytes and not n_sky:
        return repeat, 0, None
    parts = ([f"{by_bytes} file(s) holding the same bytes as another"] if by_bytes else []) + \
        ([f"{n_sky} cutout(s) within {SAME_LENS_ARCSEC:g}\" of an earlier one"] if n_sky else [])
    return repeat, by_bytes + n_sky, f"Duplicates merged, each lens counted once: {' and '.join(parts)}."

