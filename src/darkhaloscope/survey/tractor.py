"""DR10 Tractor catalogs as negatives for `dhs catalog`: per-row stratum and hard-confuser flag of one file.

    feats = read_features("sweep-000m005-010p000.fits", cfg, notes)  # ra, dec, stratum, confuser, ...

Columns used when present (any case): RA, DEC (required), TYPE, NOBS_Z (stratum = nobs_z bin x TYPE),
FLUX_G, FLUX_R (nanomaggies), SERSIC, SHAPE_R (arcsec), SHAPE_E1, SHAPE_E2 (confuser criteria). A missing
column drops what needs it and adds one line to `notes` (printed once by the command). A numeric column held
as text ("3") is read as numbers with a note; one that is not numbers is one DataError naming file, column and
row. RA is wrapped into [0, 360); rows with |DEC| > 90 are flagged `bad_position` (never drawn), both counted
in a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from darkhaloscope.errors import DataError
from darkhaloscope.stamps.schema import ZEROPOINT_AB
from darkhaloscope.survey.config import CatalogConfig
from darkhaloscope.survey.tables import column_names, find_column, read_table

WANTED = ("RA", "DEC", "TYPE", "NOBS_Z", "FLUX_G", "FLUX_R", "SERSIC", "SHAPE_R", "SHAPE_E1", "SHAPE_E2")
NON_GALAXY_TYPES = ("PSF", "DUP")  # Tractor point sources / Gaia duplicates: never confusers


@dataclass
class Features:
    ra: np.ndarray
    dec: np.ndarray
    stratum: np.ndarray  # object: 'nobs_z<3|DEV', ... ('all' when neither column exists)
    confuser: np.ndarray  # bool: meets at least one hard-confuser criterion
    bad_position: np.ndarray  # bool: |DEC| > 90 (their DEC is set to 0 here so pixels can be computed)


def _mag(flux: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, ZEROPOINT_AB - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.inf)


def nobs_bin_labels(edges: tuple[int, ...]) -> list[str]:
    e = list(edges)
    return [f"nobs_z<{e[0]}"] + [f"nobs_z{a}-{b - 1}" for a, b in zip(e[:-1], e[1:])] + [f"nobs_z>={e[-1]}"]


def read_features(path: str, cfg: CatalogConfig, notes: set[str]) -> Features:
    names = column_names(path)
    col = {w: find_column(names, w, path, required=w in ("RA", "DEC")) for w in WANTED}
    t = read_table(path, [c for c in col.values() if c is not None])
    n = t.num_rows

    def num(w):
        return numeric_column(t[col[w]], f"{path}: column {col[w]}", notes)

    ra, dec = num("RA"), num("DEC")
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path} row {i}: RA/DEC not finite; fix the catalog or drop the row")
    outside = (ra < 0) | (ra >= 360)
    if outside.any():
        ra = np.mod(ra, 360.0)
        notes.add(f"{path}: {int(outside.sum())} RA value(s) outside [0, 360) wrapped into it")
    bad_position = np.abs(dec) > 90
    if bad_position.any():
        dec = np.where(bad_position, 0.0, dec)
        notes.add(f"{path}: {int(bad_position.sum())} row(s) with |DEC| > 90 dropped (not a sky position)")
    codes = np.zeros(n, np.int64)  # stratum of each row as an integer, labelled once per distinct value
    labels = np.asarray(["all"], dtype=object)
    if col["NOBS_Z"] is not None:
        labels = np.asarray(nobs_bin_labels(cfg.nobs_z_edges), dtype=object)
        codes = np.searchsorted(np.asarray(cfg.nobs_z_edges), num("NOBS_Z"), side="right")
    else:
        notes.add("negatives have no NOBS_Z column: strata by TYPE only (a DR10 sweep file has NOBS_Z)")
    types = None
    if col["TYPE"] is not None:
        raw = t[col["TYPE"]]
        if pa.types.is_binary(raw.type) or pa.types.is_fixed_size_binary(raw.type):
            raw = raw.cast(pa.string())
        types = np.asarray(pc.utf8_trim_whitespace(raw.cast(pa.string())).to_numpy(zero_copy_only=False), dtype=object)
        type_names, type_codes = np.unique(types.astype(str), return_inverse=True)
        both = np.asarray([f"{a}|{b}" for a in labels for b in type_names], dtype=object)
        labels, codes = (both, codes * len(type_names) + type_codes) if col["NOBS_Z"] is not None else \
            (type_names.astype(object), type_codes)
    else:
        notes.add("negatives have no TYPE column: no stratification by Tractor morphology")
    stratum = labels[codes]
    return Features(ra, dec, stratum, _confusers(col, num, types, n, cfg, notes), bad_position)


def numeric_column(values: pa.ChunkedArray | pa.Array, what: str, notes: set[str]) -> np.ndarray:
    """float64 values of a column; text holding numbers is converted (with a note), other text is a DataError
    naming the first bad row; nulls become NaN."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            or pa.types.is_binary(values.type)):
        try:
            return np.asarray(values.to_numpy(zero_copy_only=False), dtype=float)
        except (TypeError, ValueError, pa.ArrowException):
            raise DataError(f"{what} is {values.type}, not numbers; fix the catalog") from None
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    try:
        out = np.asarray(pc.cast(pc.if_else(pc.equal(text, ""), None, text), pa.float64())
                         .to_numpy(zero_copy_only=False), dtype=float)
        notes.add(f"{what} holds numbers as text: read as numbers")
        return out
    except pa.ArrowInvalid:
        pass  # find the first value that is not a number, for the message
    out = np.full(len(text), np.nan)
    for i, v in enumerate(text.to_pylist()):
        if v is None or v == "":
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise DataError(f"{what} row {i}: {v[:20]!r} is not a number (a DR10 sweep holds numbers there); fix "
                            "or drop the column") from None
    notes.add(f"{what} holds numbers as text: read as numbers")
    return out


def _confusers(col, num, types, n: int, cfg: CatalogConfig, notes: set[str]) -> np.ndarray:
    galaxy = np.ones(n, bool) if types is None else ~np.isin(types, NON_GALAXY_TYPES)
    mag_r = _mag(num("FLUX_R")) if col["FLUX_R"] is not None else None
    out = np.zeros(n, dtype=bool)
    missing = []
    if col["SERSIC"] is not None and mag_r is not None:
        out |= (num("SERSIC") >= cfg.confuser_sersic_min) & (mag_r < cfg.confuser_sersic_mag_r)
    else:
        missing.append("ring-like (needs SERSIC, FLUX_R)")
    if col["SHAPE_E1"] is not None and col["SHAPE_E2"] is not None:
        out |= np.hypot(num("SHAPE_E1"), num("SHAPE_E2")) >= cfg.confuser_ellipticity_min
    else:
        missing.append("edge-on (needs SHAPE_E1, SHAPE_E2)")
    if col["FLUX_G"] is not None and mag_r is not None:
        out |= (_mag(num("FLUX_G")) - mag_r < cfg.confuser_blue_g_r) & (mag_r < cfg.confuser_blue_mag_r)
    else:
        missing.append("blue (needs FLUX_G, FLUX_R)")
    if col["SHAPE_R"] is not None:
        out |= num("SHAPE_R") >= cfg.confuser_shape_r_arcsec
    else:
        missing.append("large (needs SHAPE_R)")
    if missing:
        notes.add(f"negatives lack columns for confuser criteria {'; '.join(missing)}: those criteria are skipped "
                  "(a DR10 sweep file has them all)")
    return out & galaxy
