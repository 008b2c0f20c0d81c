"""Host-light augmentation: each training stamp's smooth host light scaled by a random factor.

The host-light probe of `dhs evaluate` (evaluate.hostscale) showed the demo's finder tuned to its training's
host brightness both ways: a host made 2x brighter lifts plain galaxies over the 1% threshold 4x as often and
loses a tenth of the lenses. A wider host prior in the simulation did not cure it (other stamps, other noise).
With `PreprocessConfig.host_scale_mag` = M > 0, `prepare_batch(..., train=True)` draws u ~ U(-M, M) magnitudes
per stamp and adds (10^(-0.4 u) - 1) x the stamp's smooth elliptical host model (`stamps.hostlight`, fitted on
the CPU, ~1 ms per stamp): the same arc, noise and structure seen on a host up to M mag brighter or fainter, for
lenses and controls alike, so host brightness alone carries no evidence. Draws come from the loop's augmentation
generator (a resumed run draws the same); evaluation stamps are never touched. Exercise:
`dhs train --data TIER --out RUN --preprocess.host_scale_mag=1.5`; tests/models/test_hostaug.py.
"""

from __future__ import annotations

import torch

from darkhaloscope.stamps.hostlight import host_models


def host_light_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) float32 smooth elliptical host models of stamps `x` (stamps.hostlight, numpy on the CPU), on x's
    device; `sigma` (B, C, 1, 1): each band's sky noise, which weighs the bands in the host's shape."""
    b, c = x.shape[:2]
    model = host_models(x.detach().to("cpu", torch.float32).numpy(), sigma.reshape(b, c).cpu().numpy())[0]
    return torch.from_numpy(model).to(x.device)


def rescale_host_light(x: torch.Tensor, sigma: torch.Tensor, max_mag: float,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with each host's smooth light x 10^(-0.4 u), u in mag per stamp, u ~ U(-max_mag, max_mag)); `sigma`
    (B, C, 1, 1): each band's sky noise, which weighs the bands in the host's fitted shape."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = (torch.rand(x.shape[0], generator=generator, device=gdev) * 2 - 1).to(x.device) * max_mag
    factor = torch.pow(10.0, -0.4 * u) - 1.0
    return x.to(torch.float32) + factor.reshape(-1, 1, 1, 1) * host_light_model(x, sigma), u
