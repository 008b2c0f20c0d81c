"""float16 conversion of nanomaggy stamps with a dynamic-range report (used by `dhs pack`).

float16 holds |x| <= 65504 with 11 significant bits (relative error <= 2**-11 ~ 4.9e-4) down to
6.1e-5; below that values are subnormal (absolute step 6e-8 nanomaggies) and under 3e-8 they
become 0. Legacy Surveys sky noise is ~2e-3 (g) to ~8e-3 (z) nanomaggies per pixel, so rounding
stays ~1000x below the noise; only values above 65504 nanomaggies (brighter than 10.5 AB mag in ONE
pixel: in practice stamps that are not in nanomaggies) are a real loss. Those are refused unless
the caller asks to clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from darkhaloscope.errors import DataError
from darkhaloscope.stamps.schema import BANDS

FLOAT16_MAX = 65504.0  # largest finite float16
FLOAT16_MIN_NORMAL = 2.0 ** -14  # ~6.1e-5: below this float16 is subnormal (fixed 6e-8 steps)
FLOAT16_UNDERFLOW = 2.0 ** -25  # ~3e-8: nonzero values below this round to 0


@dataclass
class BandRange:
    """Accumulated float16 conversion figures of one band (nanomaggies)."""

    pixels: int = 0
    clipped: int = 0  # |x| > 65504, set to +-65504 (only with clip=True)
    subnormal: int = 0  # 0 < |x| < 6.1e-5: stored with absolute precision 6e-8
    underflow: int = 0  # 0 < |x| < 3e-8: stored as 0
    max_abs_nmgy: float = 0.0
    max_abs_err_nmgy: float = 0.0  # over unclipped pixels
    max_rel_err: float = 0.0  # over pixels with |x| >= 6.1e-5 (normal float16 range), unclipped

    def merge(self, o: "BandRange") -> None:
        self.pixels += o.pixels
        self.clipped += o.clipped
        self.subnormal += o.subnormal
        self.underflow += o.underflow
        self.max_abs_nmgy = max(self.max_abs_nmgy, o.max_abs_nmgy)
        self.max_abs_err_nmgy = max(self.max_abs_err_nmgy, o.max_abs_err_nmgy)
        self.max_rel_err = max(self.max_rel_err, o.max_rel_err)

    def to_dict(self) -> dict:
        frac = (lambda k: k / self.pixels) if self.pixels else (lambda k: 0.0)
        return {"pixels": self.pixels, "clipped_frac": frac(self.clipped), "subnormal_frac": frac(self.subnormal),
                "underflow_frac": frac(self.underflow), "max_abs_nmgy": self.max_abs_nmgy,
                "max_abs_err_nmgy": self.max_abs_err_nmgy, "max_rel_err": self.max_rel_err}


@dataclass
class RangeReport:
    """Per-band float16 conversion figures of a whole pack run."""

    bands: dict[str, BandRange] = field(default_factory=lambda: {b: BandRange() for b in BANDS})
    first_clipped: str | None = None  # "file row i band b value v" of the first clipped pixel

    def merge(self, o: "RangeReport") -> None:
        for b, r in o.bands.items():
            self.bands.setdefault(b, BandRange()).merge(r)
        self.first_clipped = self.first_clipped or o.first_clipped

    @property
    def clipped(self) -> int:
        return sum(r.clipped for r in self.bands.values())

    def to_dict(self) -> dict:
        return {"bands": {b: r.to_dict() for b, r in self.bands.items()}, "clipped_pixels": self.clipped,
                "first_clipped": self.first_clipped}


def to_float16(images: np.ndarray, report: RangeReport, *, clip: bool = False,
               where: Callable[[int], str] = lambda i: f"row {i}", bands: Sequence[str] = BANDS) -> np.ndarray:
    """(N, C, H, W) float32 nanomaggies -> C-contiguous float16, accumulating `report`.

    Raises DataError naming the first row with |x| > 65504 unless `clip`, which clips and counts."""
    absx = np.abs(images)
    over = absx > FLOAT16_MAX
    if over.any():
        i, c = (int(v) for v in np.argwhere(over.any(axis=(2, 3)))[0])
        value = float(images[i, c][over[i, c]][0])
        first = f"{where(i)} band {bands[c]} value {value:.4g} nmgy"
        if not clip:
            raise DataError(f"{first}: exceeds the float16 maximum 65504 (a pixel brighter than AB 10.5: are the "
                            "stamps in nanomaggies?); fix the units, or pass --clip to clip such pixels "
                            "(counted in the pack report)")
        report.first_clipped = report.first_clipped or first
        images = np.clip(images, -FLOAT16_MAX, FLOAT16_MAX)
    f16 = np.ascontiguousarray(images, dtype=np.float16)
    err = np.abs(f16.astype(np.float32) - images)
    err[over] = 0.0
    normal = absx >= FLOAT16_MIN_NORMAL
    for c, b in enumerate(bands):
        r = BandRange(pixels=int(absx[:, c].size), clipped=int(over[:, c].sum()))
        if r.pixels:
            nz_small = (absx[:, c] > 0) & ~normal[:, c]
            r.subnormal = int(nz_small.sum())
            r.underflow = int((nz_small & (absx[:, c] < FLOAT16_UNDERFLOW)).sum())
            r.max_abs_nmgy = float(absx[:, c].max())
            r.max_abs_err_nmgy = float(err[:, c].max())
            rel = err[:, c][normal[:, c]] / absx[:, c][normal[:, c]]
            r.max_rel_err = float(rel.max()) if rel.size else 0.0
        report.bands.setdefault(b, BandRange()).merge(r)
    return f16
