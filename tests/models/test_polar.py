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


def test_polar_fourier_adds_turn_invariant_harmonics_to_the_same_mean():
    torch.manual_seed(0)
    x = torch.randn(2, 3, S, S)
    x[..., 0, :] = 0
    x[..., :, 0] = 0
    four, plain = create_model("polar_fourier").eval(), create_model("polar_cnn").eval()
    plain.backbone.load_state_dict(four.backbone.state_dict())  # same convolutions
    with torch.no_grad():
        fa, fb = four.backbone(x), four.backbone(_turn(x))
        f0 = plain.backbone(x)
    assert fa.shape == (2, 96 * 5 * 8)
    assert torch.allclose(fa, fb, atol=1e-4 * fa.abs().max().item())  # |c_m| ignore the turn's phase shift
    m0 = fa.view(2, 96, 5, 8)[:, :, 0]  # channel-major: (F, 1 + M, radius bins); m = 0 is the mean over angle
    assert torch.allclose(m0.reshape(2, -1), f0, atol=1e-5)
    assert fa.view(2, 96, 5, 8)[:, :, 1:].abs().sum() > 0  # a random image has angular structure


def test_a_lopsided_image_has_odd_harmonics_a_symmetric_one_even_ones():
    from darkhaloscope.models.polar import PolarCNN
    net = PolarCNN(harmonics=4).eval()
    for blk in net.blocks:  # identity-like convolutions: each map is the (non-negative) image, smoothed
        torch.nn.init.zeros_(blk.conv.weight)
        blk.conv.weight.data[:, :, 1, 1] = 1.0
    spot = lambda dx: np.exp(-0.5 * ((dx[0]) ** 2 + dx[1] ** 2) / 2.0)  # noqa: E731
    one = _image(lambda x, y: spot((x - 10, y)))
    two = _image(lambda x, y: spot((x - 10, y)) + spot((x + 10, y)))
    with torch.no_grad():
        a1 = net(one.expand(1, 3, S, S)).view(96, 5, 8)[0]
        a2 = net(two.expand(1, 3, S, S)).view(96, 5, 8)[0]
    r = int(a1[0].argmax())  # the radius bin of the spots
    assert a1[1, r] > 0.3 * a1[0, r]  # one spot: strong m = 1
    assert a2[1, r] < 0.05 * a2[0, r] and a2[2, r] > 0.3 * a2[0, r]  # a pair half a turn apart: no m = 1, strong m = 2


def test_quarter_turns_about_the_host_leave_polar_fourier_unchanged():
    """The training augmentation turns about the host pixel, the pole of the polar grid: a quarter turn is then an
    exact shift in angle and polar_fourier's output does not move. About the array centre (the augmentation
    before session 6) the host left the pole by 1 px and the output moved."""
    from darkhaloscope.models.preprocess import dihedral

    torch.manual_seed(0)
    model = create_model("polar_fourier").eval()
    host_and_arc = _image(lambda x, y: np.exp(-0.5 * (x * x + y * y) / 4) + np.exp(-0.5 * ((x - 7) ** 2 + (y - 2) ** 2)))
    x = host_and_arc.expand(2, 3, S, S).contiguous()
    with torch.no_grad():
        ref = model.backbone(x)

        def moved(y):
            return float((model.backbone(y) - ref).abs().max() / ref.abs().max())
        for e in (1, 2, 3):
            turn = torch.full((2,), e)
            assert moved(dihedral(x, turn)) < 1e-5
            assert moved(dihedral(x, turn, centre="array")) > 1e-2
