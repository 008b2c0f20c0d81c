"""polar_cnn: the (radius, angle) resampling is centred on the host pixel, turns an arc into a row, and the
features do not change when the stamp turns about the centre."""

import math

import numpy as np
import pytest
import torch

from darkhaloscope.errors import UsageError
from darkhaloscope.models import create_model
from darkhaloscope.models.polar import N_ANGLES, N_RADII, polar_grid, to_polar

S = 64
C = S // 2  # the host's pixel, the pole


def _image(fn) -> torch.Tensor:
    """(1, 1, S, S) image fn(dx, dy) of the offsets from the pole pixel."""
    y, x = np.mgrid[0:S, 0:S] - C
    return torch.from_numpy(fn(x.astype(float), y.astype(float))).float()[None, None]


def _turn(x: torch.Tensor) -> torch.Tensor:
    """Turn by 90 degrees about the pole pixel: new(dx, dy) = old(dy, -dx), pixels the turn brings in from
    outside the stamp are 0."""
    y, x_ = np.mgrid[0:S, 0:S] - C
    sy, sx = C - x_, C + y  # source pixel of each output pixel
    ok = (sy >= 0) & (sy < S) & (sx >= 0) & (sx < S)
    out = torch.zeros_like(x)
    out[..., torch.from_numpy(ok)] = x[..., sy[ok], sx[ok]]
    return out


def test_grid_is_centred_on_the_host_pixel():
    g = polar_grid()
    assert g.shape == (N_RADII, N_ANGLES, 2)
    # bilinear sampling is exact for linear images: x and y offsets from the pole read back as r cos a, r sin a
    r = (torch.arange(N_RADII) + 0.5)[:, None]
    a = torch.arange(N_ANGLES) * (2 * math.pi / N_ANGLES)
    for fn, want in ((lambda x, y: x, r * torch.cos(a)), (lambda x, y: y, r * torch.sin(a))):
        assert torch.allclose(to_polar(_image(fn), g)[0, 0], want, atol=1e-4)


def test_an_arc_becomes_a_row_and_a_ring_a_full_row():
    arc = _image(lambda x, y: np.exp(-0.5 * (np.hypot(x, y) - 10.5) ** 2) * (np.abs(np.arctan2(y, x)) < 0.6))
    p = to_polar(arc, polar_grid())[0, 0]
    assert int(p.sum(1).argmax()) == 10  # row r = 10.5 px
    cols = p[10] > 0.5
    assert 8 <= int(cols.sum()) <= 14 and bool(cols[0]) and not bool(cols[N_ANGLES // 2])  # ~1.2 rad around angle 0
    ring = to_polar(_image(lambda x, y: np.exp(-0.5 * (np.hypot(x, y) - 6.5) ** 2)), polar_grid())[0, 0]
    assert ring[6].std() < 0.05 * ring[6].mean() and ring[6].mean() > 5 * ring[12].mean()  # one flat row


def test_a_quarter_turn_about_the_centre_is_a_shift_in_angle_and_leaves_the_features():
    torch.manual_seed(0)
    x = torch.randn(2, 3, S, S)
    x[..., 0, :] = 0  # the row and column the turn cannot map inside the stamp
    x[..., :, 0] = 0
    turned = _turn(x)
    g = polar_grid()
    a, b = to_polar(x, g), to_polar(turned, g)
    assert torch.allclose(torch.roll(a, N_ANGLES // 4, dims=-1)[..., :20, :], b[..., :20, :], atol=1e-4)
    model = create_model("polar_cnn").eval()
    with torch.no_grad():
        fa, fb = model.backbone(x), model.backbone(turned)
    assert torch.allclose(fa, fb, atol=1e-4 * fa.abs().max().item())


def test_refuses_a_pooling_it_cannot_take_and_takes_coords():
    with pytest.raises(UsageError, match="no Cartesian feature map"):
        create_model("polar_cnn", pooling="radial")
    assert create_model("polar_cnn", coords="r")(torch.randn(2, 3, S, S)).shape == (2,)
    assert math.isclose(create_model("polar_cnn").backbone.num_features, 96 * 8)
