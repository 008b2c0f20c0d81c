"""How a stamp becomes network input: the torch-free settings (`PreprocessConfig`) of the one transform.

The tensor ops live in `darkhaloscope.models.preprocess.prepare_batch` (torch); the settings live here so
that `TrainConfig` (and `dhs train --help`) import no torch. Exercised by `dhs train --preprocess.norm=stamp`.
"""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError

# 'annulus': statistics from an outer ring (default); 'stamp': whole stamp (leaks arc flux); 'none': cast only
NORM_CHOICES = ("annulus", "stamp", "none")


@dataclass
class PreprocessConfig:
    norm: str = "annulus"  # 'annulus' (default: stats from an outer ring), 'stamp' (whole stamp: leaks arc flux), 'none'
    per_band: bool = True  # median/MAD per band (True) or pooled over the 3 bands of a stamp (False)
    annulus_r_in_px: float = 20.0  # inner radius of the statistics ring, pixels from the stamp centre (5.2")
    annulus_r_out_px: float = 32.0  # outer radius (exclusive), pixels; 32 px = the stamp edge for 64x64
    clip_sigma: float = 10.0  # clip normalised pixels to [-clip, clip] (MAD-sigma units); 0 = no clip

    def validate(self) -> None:
        if self.norm not in NORM_CHOICES:
            raise UsageError(f"preprocess norm '{self.norm}' is unknown; choose one of {', '.join(NORM_CHOICES)}")
        if self.norm == "annulus" and not 0 <= self.annulus_r_in_px < self.annulus_r_out_px:
            raise UsageError(f"annulus radii must satisfy 0 <= r_in < r_out (px); got r_in={self.annulus_r_in_px}, "
                             f"r_out={self.annulus_r_out_px}")
        if self.clip_sigma < 0:
            raise UsageError(f"clip_sigma must be >= 0 (0 = no clip); got {self.clip_sigma}")
