"""How a stamp becomes network input: the torch-free settings (`PreprocessConfig`) of the one transform.

The tensor ops live in `darkhaloscope.models.preprocess.prepare_batch` (torch); the settings live here so
that `TrainConfig` (and `dhs train --help`) import no torch. Exercised by `dhs train --preprocess.norm=stamp`,
`--preprocess.host_light=subtract`.
"""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError

# 'annulus': statistics from an outer ring (default); 'stamp': whole stamp (leaks arc flux); 'none': cast only
NORM_CHOICES = ("annulus", "stamp", "none")
# 'keep': the stamp as it is (default); 'subtract': the stamp minus a smooth elliptical model of its host (stamps.hostlight)
HOST_LIGHT_CHOICES = ("keep", "subtract")
# How normalised pixels above clip_sigma are kept: 'clip' (default): flat at +-clip_sigma; 'asinh':
# clip_sigma x asinh(z / clip_sigma), linear below clip_sigma and logarithmic above, so an arc on a bright host's
# wing keeps a contrast that the clip flattens
STRETCH_CHOICES = ("clip", "asinh")

# Position planes a model may append to the 3 bands (`TrainConfig.coords`, built in `models.coords`): each
# pixel's offset from the stamp centre (where the lens galaxy sits) in units of COORD_SCALE_PX pixels.
COORD_PLANES: dict[str, tuple[str, ...]] = {"none": (), "r": ("r",), "xyr": ("x", "y", "r")}
COORD_SCALE_PX = 16.0  # 16 px = 4.2": the planes span ~0-2.8 over a 64x64 stamp, like normalised pixels


# How a backbone's last feature map becomes the features the logit is read from (`TrainConfig.pooling`, built
# in `models.pooling`): avg = global average (translation invariant: where a feature lies is lost); radial =
# averages in rings about the stamp centre; grid = global average + a coarse grid of a few reduced channels.
POOLINGS = ("avg", "radial", "grid")


def check_pooling(name: str) -> str:
    if name not in POOLINGS:
        raise UsageError(f"pooling={name!r}: choose one of {', '.join(POOLINGS)} (avg: global average; radial: "
                         "averages in rings about the stamp centre; grid: + a coarse grid of positions)")
    return name


def check_coords(name: str) -> tuple[str, ...]:
    """The planes of `coords` setting `name`; UsageError naming the choices."""
    if name not in COORD_PLANES:
        raise UsageError(f"coords={name!r}: choose one of {', '.join(COORD_PLANES)} (position planes appended to "
                         "the bands: none, the radius r, or x, y and r)")
    return COORD_PLANES[name]


@dataclass
class PreprocessConfig:
    norm: str = "annulus"  # 'annulus' (default: stats from an outer ring), 'stamp' (whole stamp: leaks arc flux), 'none'
    per_band: bool = True  # median/MAD per band (True) or pooled over the 3 bands of a stamp (False)
    annulus_r_in_px: float = 20.0  # inner radius of the statistics ring, pixels from the stamp centre (5.2")
    annulus_r_out_px: float = 32.0  # outer radius (exclusive), pixels; 32 px = the stamp edge for 64x64
    clip_sigma: float = 10.0  # clip normalised pixels to [-clip, clip] (MAD-sigma units); 0 = no clip
    stretch: str = "clip"  # 'clip' (flat beyond clip_sigma) | 'asinh' (clip_sigma x asinh(z / clip_sigma): no
    #   plateau, so structure on bright hosts keeps a contrast)
    depth_jitter_mag: float = 0.0  # training only: each stamp made shallower by U(0, this) mag of sky noise
    #   (models.depth; 1.5: DR10's depth down to 1.5 mag shallower); 0 = off
    host_scale_mag: float = 0.0  # training only: each stamp's smooth host light made U(-this, this) mag brighter
    #   or fainter (models.hostaug; 1.5: x 0.25-4), arcs and noise unchanged; 0 = off
    host_light: str = "keep"  # 'keep' | 'subtract': train and score on the stamp minus a smooth elliptical model
    #   of its host's light, fitted per stamp (stamps.hostlight, ~1 ms each), before the normalisation

    def validate(self) -> None:
        if self.norm not in NORM_CHOICES:
            raise UsageError(f"preprocess norm '{self.norm}' is unknown; choose one of {', '.join(NORM_CHOICES)}")
        if self.norm == "annulus" and not 0 <= self.annulus_r_in_px < self.annulus_r_out_px:
            raise UsageError(f"annulus radii must satisfy 0 <= r_in < r_out (px); got r_in={self.annulus_r_in_px}, "
                             f"r_out={self.annulus_r_out_px}")
        if self.host_light not in HOST_LIGHT_CHOICES:
            raise UsageError(f"preprocess host_light '{self.host_light}' is unknown; choose one of "
                             f"{', '.join(HOST_LIGHT_CHOICES)} (subtract: the host's smooth light removed)")
        if not 0 <= self.depth_jitter_mag <= 3:
            raise UsageError(f"depth_jitter_mag must be in [0, 3] mag (0 = off); got {self.depth_jitter_mag}")
        if self.stretch not in STRETCH_CHOICES:
            raise UsageError(f"preprocess stretch '{self.stretch}' is unknown; choose one of {', '.join(STRETCH_CHOICES)}"
                             " (asinh: logarithmic beyond clip_sigma instead of flat)")
        if not 0 <= self.host_scale_mag <= 3:
            raise UsageError(f"host_scale_mag must be in [0, 3] mag (0 = off); got {self.host_scale_mag}")
        if self.clip_sigma < 0:
            raise UsageError(f"clip_sigma must be >= 0 (0 = no clip); got {self.clip_sigma}")
