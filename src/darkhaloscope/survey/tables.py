"""Reading target and catalog tables (CSV, FITS binary tables, parquet) with one error style.

    table = read_table("lenses.csv", columns=None)          # pyarrow.Table, column names as in the file
    col = find_column(table.column_names, "ra", "lenses.csv")  # case-insensitive lookup, DataError if absent

Used by `dhs catalog` (positives, Tractor negatives) and `dhs cutouts` (the target list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from darkhaloscope.errors import DataError, MissingInputError

TABLE_SUFFIXES = (".csv", ".fits", ".fit", ".fits.gz", ".parquet", ".pq")


def table_kind(path: str | Path) -> str:
    name = str(path).lower()
    for suffix, kind in ((".csv", "csv"), (".parquet", "parquet"), (".pq", "parquet"), (".fits", "fits"),
                         (".fit", "fits"), (".fits.gz", "fits")):
        if name.endswith(suffix):
            return kind
    raise DataError(f"{path}: unknown table format; expected one of {', '.join(TABLE_SUFFIXES)}")


def find_column(names: Sequence[str], want: str, where: str, required: bool = True) -> str | None:
    """The column of `names` equal to `want` ignoring case; DataError naming `where` if required and absent."""
    lower = {n.lower(): n for n in names}
    hit = lower.get(want.lower())
    if hit is None and required:
        raise DataError(f"{where}: no {want.upper()} column (columns: {', '.join(list(names)[:12])}"
                        f"{' ...' if len(names) > 12 else ''}); a target table needs RA and DEC in degrees")
    return hit


def column_names(path: str | Path) -> list[str]:
    """Column names without reading the data (parquet footer / FITS header / CSV first line)."""
    kind = table_kind(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        if kind == "fits":
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdul:
                return list(_table_hdu(hdul, path).columns.names)
        return read_table(path).column_names
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: unreadable {kind} table ({type(e).__name__}: {e})".splitlines()[0]) from None


def _table_hdu(hdul, path):
    for hdu in hdul:
        if hdu.is_image is False and getattr(hdu, "columns", None) is not None:
            return hdu
    raise DataError(f"{path}: no binary table HDU (a Tractor sweep or catalog FITS file has one in HDU 1)")


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read `columns` (exact names; None = all scalar columns) of a CSV / FITS / parquet table."""
    kind = table_kind(path)
    if not Path(path).is_file():
        raise MissingInputError(f"{path}: no such file")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=list(columns) if columns is not None else None)
        if kind == "csv":
            import pyarrow.csv as pacsv

            t = pacsv.read_csv(path)
            return t.select(list(columns)) if columns is not None else t
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            data = _table_hdu(hdul, path).data
            names = columns if columns is not None else [n for n in data.columns.names
                                                           if data[n].ndim == 1]
            return pa.table({n: _fits_column(data[n]) for n in names})
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: unreadable {kind} table ({type(e).__name__}: {e})".splitlines()[0]) from None


def _fits_column(values: np.ndarray) -> pa.Array:
    arr = np.asarray(values)
    if arr.dtype.kind in "SU":
        return pa.array(np.char.strip(arr.astype(str)))
    return pa.array(arr.astype(arr.dtype.newbyteorder("=")))
