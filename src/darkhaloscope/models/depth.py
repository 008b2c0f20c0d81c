"""Depth augmentation: each training stamp made shallower by a random amount before it is normalised.

DR10 is not one depth (about a magnitude between regions) and real lenses come from shallower surveys too
(Pan-STARRS1: 3-4x DR10's pixel noise). With `PreprocessConfig.depth_jitter_mag` = M > 0, `prepare_batch(...,
train=True)` draws u ~ U(0, M) magnitudes per stamp and adds Gaussian sky noise so that the stamp's noise
grows from sigma to sigma x 10^(0.4 u) (the noise of a 5-sigma depth u mag shallower): sigma_add =
sigma x sqrt(10^(0.8 u) - 1), sigma the stamp's own robust noise per band in the normalisation annulus, with
the lag-1 pixel correlation the simulation gives sky noise (`sim.observing.correlated_noise`, here in torch).
The normalisation is unchanged (it runs after, on the noisier stamp); evaluation stamps are never touched.
Draws come from the loop's augmentation generator (a resumed run draws the same). Exercise:
`dhs train --data TIER --out RUN --preprocess.depth_jitter_mag=1.5`; tests/models/test_depth.py.
"""

from __future__ import annotations

import math

import torch

from darkhaloscope.sim.observing import _kernel_weight

DEPTH_LAG1 = (0.23, 0.31)  # lag-1 correlation (x, y) of the added noise: SimConfig.noise_corr_lag1's default


def correlated_noise_torch(shape: tuple[int, ...], lag1, generator: torch.Generator | None,
                           device: torch.device) -> torch.Tensor:
    """(B, C, H, W) unit-variance Gaussian noise with lag-1 correlations `lag1` = (x, y) (separable [a, 1, a])."""
    ax, ay = _kernel_weight(float(lag1[0])), _kernel_weight(float(lag1[1]))
    gdev = generator.device if generator is not None else torch.device("cpu")
    b, c, h, w = shape
    z = torch.randn((b, c, h + 2, w + 2), generator=generator, device=gdev).to(device)
    z = z[:, :, 1:-1, :] + ay * (z[:, :, :-2, :] + z[:, :, 2:, :])
    z = z[:, :, :, 1:-1] + ax * (z[:, :, :, :-2] + z[:, :, :, 2:])
    return z / math.sqrt((1.0 + 2.0 * ax * ax) * (1.0 + 2.0 * ay * ay))


def shallower(x: torch.Tensor, sigma: torch.Tensor, max_mag: float, generator: torch.Generator | None,
              lag1=DEPTH_LAG1) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with added noise, u in mag per stamp): `sigma` (B, C, 1, 1) the stamps' own noise."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand((x.shape[0],), generator=generator, device=gdev).to(x.device) * max_mag
    factor = torch.sqrt(torch.clamp(10.0 ** (0.8 * u) - 1.0, min=0.0)).view(-1, 1, 1, 1)
    noise = correlated_noise_torch(tuple(x.shape), lag1, generator, x.device)
    return x.to(torch.float32) + noise * sigma * factor, u
