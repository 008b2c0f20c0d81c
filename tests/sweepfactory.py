"""A sweep-like Tractor FITS catalog with random values, for the `dhs catalog` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_sweep(path: Path, n: int, seed: int, ra0: float = 150.0, dec0: float = 2.0) -> Path:
    """A sweep-like FITS table with every Tractor column `dhs catalog` uses (values drawn at random)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    cols = [fits.Column("RA", "D", array=ra0 + rng.uniform(0, 2, n)),
            fits.Column("DEC", "D", array=dec0 + rng.uniform(0, 2, n)),
            fits.Column("TYPE", "3A", array=rng.choice(["DEV", "EXP", "REX", "SER", "PSF"], n)),
            fits.Column("NOBS_Z", "I", array=rng.integers(1, 14, n)),
            fits.Column("FLUX_G", "E", array=rng.lognormal(0.5, 1, n)),
            fits.Column("FLUX_R", "E", array=rng.lognormal(1.2, 1, n)),
            fits.Column("SERSIC", "E", array=rng.uniform(0.5, 6, n)),
            fits.Column("SHAPE_R", "E", array=rng.exponential(0.8, n)),
            fits.Column("SHAPE_E1", "E", array=rng.normal(0, 0.2, n)),
            fits.Column("SHAPE_E2", "E", array=rng.normal(0, 0.2, n))]
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return path
