"""Known lenses and candidates: the `lenscat` package's catalog and user lists, for `dhs catalog`.

    pos = load_positives(["lenscat", "my_lenses.csv"], grades=("confident",), types=("galaxy",))
    pos.ra, pos.dec, pos.name, pos.grade, pos.source, pos.extra   # extra: other columns (lens_type, zlens, ...)

A `dhs grade export` table is a list too: its graded candidates, the consensus letter (A/B/C/N) as the grade
(`--grades A,B`: the graded lenses). `load_known` returns every entry before the grade/type filters: the
exclusion list around which no negative may be drawn. RA is wrapped into [0, 360) (counted in a note); a
|DEC| > 90 refuses the list. `dedupe_positions` merges entries closer than a radius (one lens in two lists, or
listed twice). lenscat's catalog is the CSV that the package ships (read directly: importing
lenscat pulls in ligo.skymap and takes seconds); no network is used.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.stamps.schema import GRADED_GRADE_COLUMN, GRADED_METADATA_KEY
from darkhaloscope.survey.tables import find_column, read_table

LENSCAT = "lenscat"


@dataclass
class Positives:
    ra: np.ndarray  # degrees, ICRS
    dec: np.ndarray  # degrees, ICRS
    name: np.ndarray  # object
    grade: np.ndarray  # object: lenscat 'confident' / 'probable', or a user list's grade
    source: np.ndarray  # object: 'lenscat' or the user file's name
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # lens_type, zlens, ref (object arrays)

    def __len__(self) -> int:
        return len(self.ra)

    def select(self, keep: np.ndarray) -> "Positives":
        return Positives(self.ra[keep], self.dec[keep], self.name[keep], self.grade[keep], self.source[keep],
                         {k: v[keep] for k, v in self.extra.items()})


def lenscat_csv() -> Path:
    """Path of the catalog CSV shipped by the installed lenscat package (UsageError if not installed)."""
    spec = importlib.util.find_spec("lenscat")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("--positives lenscat: the lenscat package is not installed; `pip install "
                         "'darkhaloscope[survey]'` (or `pip install lenscat`) "
                         "or pass your own list with --positives FILE (CSV/FITS/parquet with name, ra, dec, grade)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "catalog.csv"
    if not path.is_file():
        raise DataError(f"{path}: the lenscat package has no catalog CSV there; reinstall lenscat")
    return path


def _wrap_ra(ra: np.ndarray, source: str, notes: set[str]) -> np.ndarray:
    outside = (ra < 0) | (ra >= 360)
    if outside.any():
        notes.add(f"{source}: {int(outside.sum())} RA value(s) outside [0, 360) wrapped into it")
        return np.mod(ra, 360.0)
    return ra


def _load_one(source: str, notes: set[str]) -> Positives:
    if source == LENSCAT:
        path = lenscat_csv()
        t = read_table(path)
        cols = {c.split(" [")[0].lower(): c for c in t.column_names}  # 'RA [deg]' -> 'ra'
        if "ra" not in cols or "dec" not in cols:
            raise DataError(f"{path}: lenscat catalog without RA/DEC columns (columns: {', '.join(t.column_names)})")
        get = lambda k: np.asarray(t[cols[k]].to_pylist(), dtype=object) if k in cols else np.full(t.num_rows, None)  # noqa: E731
        extra = {"lens_type": get("type"), "zlens": get("zlens"), "ref": get("ref")}
        return Positives(_wrap_ra(np.asarray(get("ra"), float), source, notes), np.asarray(get("dec"), float),
                         get("name"), get("grading"),
                         np.full(t.num_rows, LENSCAT, dtype=object), extra)
    t = read_table(source)
    if GRADED_METADATA_KEY in (t.schema.metadata or {}):
        t = _graded(t, source)
    names = t.column_names
    ra, dec = find_column(names, "ra", source), find_column(names, "dec", source)
    opt = {k: find_column(names, k, source, required=False) for k in ("name", "grade", "type")}
    n = t.num_rows

    def obj(c):
        return np.asarray([None if v is None else str(v) for v in t[c].to_pylist()], dtype=object) if c \
            else np.full(n, None, dtype=object)

    try:
        ra_v = np.asarray(t[ra].to_numpy(zero_copy_only=False), dtype=float)
        dec_v = np.asarray(t[dec].to_numpy(zero_copy_only=False), dtype=float)
    except (TypeError, ValueError, Exception) as e:  # noqa: B014 (arrow raises its own types)
        raise DataError(f"{source}: RA/DEC are not numbers ({e})".splitlines()[0]) from None
    bad = ~(np.isfinite(ra_v) & np.isfinite(dec_v) & (np.abs(dec_v) <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source} row {i}: RA/DEC ({ra_v[i]}, {dec_v[i]}) are not valid degrees; fix or drop the row")
    name = obj(opt["name"])
    if opt["name"] is None:
        name = np.asarray([f"{Path(source).stem}-{i}" for i in range(n)], dtype=object)
    extra = {"lens_type": obj(opt["type"]), "zlens": np.full(n, None, dtype=object),
             "ref": np.full(n, None, dtype=object)}
    return Positives(_wrap_ra(ra_v, source, notes), dec_v, name, obj(opt["grade"]),
                     np.full(n, Path(source).name, dtype=object), extra)


def _graded(t, source: str):
    """A `dhs grade export` table: its graded candidates (the consensus letter is the grade; ungraded ones are
    no entries); each needs the sky position the scored data carried."""
    import pyarrow.compute as pc

    t = t.filter(pc.is_valid(t[GRADED_GRADE_COLUMN]))
    ra, dec = (np.asarray(t[c].to_numpy(zero_copy_only=False), float) for c in ("ra", "dec"))
    missing = ~(np.isfinite(ra) & np.isfinite(dec))
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{source}: graded candidate {t['name'][i].as_py()!r} has no RA/DEC ({int(missing.sum())} of "
                        f"{t.num_rows} graded): the scored stamps carried no sky position, so they cannot be catalog "
                        "positives; grade candidates scored from cutouts with ra/dec (`dhs cutouts`)")
    return t


def load_known(sources: Sequence[str], notes: set[str] | None = None) -> Positives:
    """Every entry of every source (no filters), concatenated in the order given; RA wrapping noted in `notes`."""
    notes = set() if notes is None else notes
    parts = [_load_one(s, notes) for s in sources]
    keys = parts[0].extra.keys() if parts else ()
    cat = lambda a: np.concatenate(a) if a else np.array([], dtype=object)  # noqa: E731
    return Positives(cat([p.ra for p in parts]).astype(float), cat([p.dec for p in parts]).astype(float),
                     cat([p.name for p in parts]), cat([p.grade for p in parts]), cat([p.source for p in parts]),
                     {k: cat([p.extra[k] for p in parts]) for k in keys})


def filter_positives(known: Positives, grades: Sequence[str], types: Sequence[str]) -> Positives:
    """Keep entries whose grade is in `grades` and type in `types` (case-insensitive; empty = all)."""
    keep = np.ones(len(known), dtype=bool)
    for values, wanted in ((known.grade, grades), (known.extra["lens_type"], types)):
        if wanted:
            w = {g.lower() for g in wanted}
            keep &= np.asarray([v is not None and str(v).lower() in w for v in values], dtype=bool)
    return known.select(keep)


def dedupe_positions(pos: Positives, radius_arcsec: float) -> tuple[Positives, int]:
    """`pos` without entries closer than `radius_arcsec` to an earlier kept one, and how many were merged."""
    from darkhaloscope.survey.sky import near_duplicates

    dup = near_duplicates(pos.ra, pos.dec, radius_arcsec) >= 0
    return pos.select(~dup), int(dup.sum())
