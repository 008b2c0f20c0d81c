"""`polar_cnn`: the stamp resampled on (radius, angle) about the lens galaxy, convolved circularly in angle.

Lensing is a statement about geometry around the deflector: an arc is light at one radius (the Einstein radius)
stretched along the angle, with a counter-image half a turn away. On a (radius, angle) grid centred on the
stamp's centre pixel an arc becomes a horizontal streak at fixed radius, an Einstein ring a full row, a
spiral arm a diagonal line (its radius grows with angle), a companion a compact blob, a galaxy through the
centre two spots at opposite angles, a tidal tail a curve that leaves the rows. A small CNN tells those apart
far more easily than on the Cartesian stamp, where the same shapes appear at every orientation.

    (B, C, 64, 64) --bilinear grid_sample--> (B, C, N_RADII, N_ANGLES)   radii 0.5..23.5 px, 64 angles
    4 conv blocks (3x3; padding circular in angle, zeros in radius; angle halved by the first three)
    mean over angle (invariant to rotations about the centre)  -> (B, F, N_RADII)
    average in radius bins of RADIAL_POOL rows                 -> F x 8 features

`polar_fourier` keeps, beside that mean (the m = 0 term), the amplitudes |c_m| of the angular Fourier
harmonics m = 1..HARMONICS of the last map (8 angles): how the light is arranged around the centre, still
unchanged by a turn (a turn only shifts the phases). One image on one side is strong in m = 1; an image and
its counter-image half a turn away in even m; a full ring has none. The mean over angle cannot tell these
apart; on the confuser benchmark the harmonics raise lens vs look-alike AUROC from 0.85-0.89 to 0.925-0.926 (3 seeds,
benchmarks/RESULTS.md, section confusers, session 5) for 4% more parameters.

Built for 64x64 stamps (the pole is pixel size//2, as `schema.pixel_radius`); 0.08 M params, 0.044 GFLOPs
per stamp. Measured against the Cartesian small_cnn on the confuser benchmark: benchmarks/RESULTS.md,
section confusers (session 4). `--pooling` other than avg is refused for it (it pools over angle itself);
`--coords` planes are resampled like the bands.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from darkhaloscope.models.registry import register_model
from darkhaloscope.stamps.schema import STAMP_SIZE

N_RADII = 24  # radius samples, 1 px apart from 0.5 px: out to 23.5 px = 6.2" (Einstein radii <= 3" = 11.5 px)
N_ANGLES = 64  # angle samples (5.6 degrees; 2.3 px apart at 23.5 px, well inside the ~5 px PSF)
RADIAL_POOL = 3  # radius rows averaged per feature bin: 8 bins of 3 px
HARMONICS = 4  # polar_fourier: angular harmonics m = 1..4 kept (the last map has 8 angles: m <= 4 is all of them)


def polar_grid(size: int = STAMP_SIZE, n_radii: int = N_RADII, n_angles: int = N_ANGLES) -> torch.Tensor:
    """(n_radii, n_angles, 2) sampling points for `F.grid_sample(align_corners=False)`: x, y normalised to
    [-1, 1], about the centre of pixel size//2."""
    r = torch.arange(n_radii, dtype=torch.float64) + 0.5
    a = torch.arange(n_angles, dtype=torch.float64) * (2 * math.pi / n_angles)
    rr, aa = torch.meshgrid(r, a, indexing="ij")
    x, y = size // 2 + rr * torch.cos(aa), size // 2 + rr * torch.sin(aa)  # pixel index coordinates
    return torch.stack([(2 * x + 1) / size - 1, (2 * y + 1) / size - 1], dim=-1).float()


def to_polar(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) -> (B, C, radii, angles), bilinear."""
    g = grid.to(device=x.device, dtype=x.dtype)[None].expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=False)


class PolarBlock(nn.Module):
    """3x3 conv (circular padding along angle, zeros along radius), batch norm, ReLU, optional angle halving."""

    def __init__(self, c_in: int, c_out: int, halve_angle: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 1, (1, 0), bias=False)  # zeros in radius by the conv itself
        self.bn = nn.BatchNorm2d(c_out)
        self.halve_angle = halve_angle

    def forward(self, x):
        # one wrap-around copy in angle; the radius zeros come from the conv's own padding: the same sums as
        # padding both ways by F.pad (bit-identical outputs), ~7% less CPU per training step (fewer copies/fills)
        x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        return F.avg_pool2d(x, (1, 2)) if self.halve_angle else x


class PolarCNN(nn.Module):
    """`harmonics` 0: the mean over angle per channel and radius bin; M > 0: also |c_m| for m = 1..M."""

    def __init__(self, in_chans: int = 3, width: int = 16, harmonics: int = 0):
        super().__init__()
        w = (width, 2 * width, 4 * width, 6 * width)
        self.register_buffer("grid", polar_grid(), persistent=False)
        self.blocks = nn.Sequential(PolarBlock(in_chans, w[0], True), PolarBlock(w[0], w[1], True),
                                    PolarBlock(w[1], w[2], True), PolarBlock(w[2], w[3], False))
        if not 0 <= harmonics <= N_ANGLES // 16:
            raise ValueError(f"harmonics={harmonics}: the last map has {N_ANGLES // 8} angles, so 0..{N_ANGLES // 16}")
        self.harmonics = harmonics
        self.num_features = w[3] * (1 + harmonics) * (N_RADII // RADIAL_POOL)

    def forward(self, x):
        f = self.blocks(to_polar(x, self.grid))  # (B, F, radii, angles)
        if self.harmonics:
            # |c_m| = |sum_a f(a) e^(-2 pi i m a / A)| / A; m = 0 is the mean (f >= 0 after the ReLU)
            amp = torch.fft.rfft(f.float(), dim=-1)[..., : self.harmonics + 1].abs().to(f.dtype) / f.shape[-1]
            b, c, r, m = amp.shape
            f = amp.permute(0, 1, 3, 2).reshape(b, c * m, r)  # (B, F x (1 + M), radii), channel-major
        else:
            f = f.mean(dim=-1)  # (B, F, radii): the mean over angle
        return F.avg_pool1d(f, RADIAL_POOL).flatten(1)


@register_model(pools_itself=True)
def polar_cnn(in_chans: int = 3, width: int = 16) -> nn.Module:
    """Small CNN on the stamp resampled to (radius, angle) about the centre, circular in angle (0.08 M params)."""
    return PolarCNN(in_chans, width)


@register_model(pools_itself=True)
def polar_fourier(in_chans: int = 3, width: int = 16) -> nn.Module:
    """polar_cnn + amplitudes of the angular harmonics m = 1..4 (turn-invariant arrangement; 0.08 M params)."""
    return PolarCNN(in_chans, width, HARMONICS)
