"""Host-light augmentation: the smooth host light scaled per stamp, arcs and noise as they are."""

import numpy as np
import pytest
import torch

from darkhaloscope.errors import UsageError
from darkhaloscope.models.hostaug import rescale_host_light
from darkhaloscope.models.preprocess import PreprocessConfig, prepare_batch
from darkhaloscope.stamps.hostlight import host_models

SIGMA = torch.tensor([0.002, 0.003, 0.008]).reshape(1, 3, 1, 1)


def _stamps(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    c = torch.arange(64.0) - 32
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    host = torch.tensor([0.02, 0.05, 0.08])[:, None, None] * torch.exp(-0.5 * r2 / 3.0**2)
    return host + torch.randn(n, 3, 64, 64, generator=g) * SIGMA


def test_only_the_smooth_host_model_is_scaled_by_the_drawn_factor():
    x = _stamps()
    sigma = SIGMA.expand(len(x), 3, 1, 1)
    out, u = rescale_host_light(x, sigma, 1.5, torch.Generator().manual_seed(0))
    assert u.shape == (6,) and (u.abs() <= 1.5).all() and u.std() > 0.1
    model = torch.from_numpy(host_models(x.numpy(), sigma.reshape(6, 3).numpy())[0])
    factor = (10 ** (-0.4 * u) - 1).reshape(6, 1, 1, 1)
    assert torch.allclose(out - x, factor * model, atol=1e-6)  # the noise (and any arc) untouched
    centre = out[:, 1, 32, 32] / x[:, 1, 32, 32]
    assert np.allclose(centre, 10 ** (-0.4 * u.numpy()), rtol=0.1)  # the host's core follows the factor


def test_draws_repeat_with_the_generator_and_evaluation_is_untouched():
    x = _stamps(4)
    cfg = PreprocessConfig(host_scale_mag=1.5)
    a = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(3))
    b = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(prepare_batch(x, cfg, train=False), prepare_batch(x, PreprocessConfig(), train=False))
    plain = prepare_batch(x, PreprocessConfig(), train=True, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a, plain)


@pytest.mark.parametrize("mag", [-0.5, 3.5])
def test_out_of_range_is_a_usage_error(mag):
    with pytest.raises(UsageError, match="host_scale_mag"):
        PreprocessConfig(host_scale_mag=mag).validate()
