"""Depth augmentation (models.depth via prepare_batch): the noise grows by 10^(0.4 u), u ~ U(0, M); off by default."""

from __future__ import annotations

import numpy as np
import torch

from darkhaloscope.models.depth import shallower
from darkhaloscope.models.preprocess import prepare_batch, robust_stats
from darkhaloscope.stamps.normalise import PreprocessConfig


def _stamps(n=64, sigma=0.003, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 3, 64, 64), generator=g) * sigma


def test_shallower_raises_the_noise_by_the_drawn_magnitudes():
    x = _stamps()
    sigma = robust_stats(x, None, True)[1]
    y, u = shallower(x, sigma, 1.5, torch.Generator().manual_seed(1))
    assert float(u.min()) >= 0 and float(u.max()) <= 1.5 and float(u.max()) > 1.0  # U(0, 1.5) over 64 stamps
    got = robust_stats(y, None, True)[1].squeeze() / sigma.squeeze()  # (64, 3) measured noise ratio
    want = (10.0 ** (0.4 * u))[:, None].expand_as(got)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0.06)  # ~4000 px per band: MAD to ~2%
    # 1.5 mag shallower = 10^0.6 = 3.98x the noise: the PS1 stamps' 3-4x
    assert abs(10 ** (0.4 * 1.5) - 3.98) < 0.01


def test_prepare_batch_depth_jitter_is_training_only_and_off_by_default():
    x = _stamps(8)
    cfg = PreprocessConfig()
    assert cfg.depth_jitter_mag == 0
    a = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(3))
    b = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    on = PreprocessConfig(depth_jitter_mag=1.5)
    c = prepare_batch(x, on, train=True, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a, c)
    # the normalisation runs after: each band's annulus MAD is still ~1 (noise-normalised)
    _, scale = robust_stats(c, None, True)
    np.testing.assert_allclose(scale.squeeze().numpy(), 1.0, rtol=0.1)
    assert torch.equal(prepare_batch(x, on, train=False), prepare_batch(x, cfg, train=False))  # evaluation: untouched
