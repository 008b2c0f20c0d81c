"""Synthetic scores files with a known truth, for `dhs bench evaluate` and the tests.

Injections get theta_E, arc S/N, source magnitude/size; detection probability rises with arc S/N, so the
selection function has a known shape. Controls' scores rise with PSF FWHM (a host-dependent false-positive
rate to be found by the stratified FPR). Not physics: a fixture with the columns `dhs score` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.fileio import atomic_path


def synthetic_scores_table(n: int, *, lens_frac: float = 0.5, separation: float = 2.5, seed: int = 0,
                           splits: tuple[str, ...] = ("test",)) -> pa.Table:
    """`n` rows: score/logit/label/row_id/region_split + injection and observing metadata (float32)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < lens_frac).astype(np.int8)
    lens = label == 1
    n_lens = int(lens.sum())
    psf = rng.normal(1.25, 0.15, n).astype(np.float32)  # arcsec
    depth = rng.normal(23.4, 0.3, n).astype(np.float32)  # AB mag
    theta = np.full(n, np.nan, np.float32)
    snr = np.full(n, np.nan, np.float32)
    mag = np.full(n, np.nan, np.float32)
    reff = np.full(n, np.nan, np.float32)
    theta[lens] = rng.uniform(0.5, 3.0, n_lens)
    snr[lens] = 10 ** rng.uniform(0.5, 2.0, n_lens)
    mag[lens] = rng.uniform(21.5, 25.0, n_lens)
    reff[lens] = rng.uniform(0.1, 0.6, n_lens)
    logit = rng.normal(-3.0, 1.2, n) + 2.0 * (psf - 1.25)
    logit[lens] = rng.normal(separation * np.log10(snr[lens]) - 0.5 * separation, 1.0)
    logit = logit.astype(np.float32)
    score = sigmoid(logit).astype(np.float32)
    split = np.array(splits)[rng.integers(0, len(splits), n)]
    return pa.table({
        "score": score, "logit": logit, "label": label,
        "row_id": pa.array([f"part-{i // 100_000:05d}.parquet:{i % 100_000}" for i in range(n)]) if n <= 200_000
        else pa.array(np.char.add("row:", np.arange(n).astype(str))),
        "region_split": pa.array(split),
        "theta_e_arcsec": theta, "arc_snr": snr, "src_mag_r": mag, "src_reff_arcsec": reff,
        "psf_fwhm_used_r": psf, "psfdepth_r": depth,
    })


def write_synthetic_scores(path: str | Path, n: int, **kw) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(synthetic_scores_table(n, **kw), tmp)
    return path
