"""The torch profiles against lenstronomy (SIE + shear deflection, Sersic surface brightness) and against
the formulas (a round SIS ring at theta_E, Sersic total flux)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.single_plane import SinglePlane  # LensModel's one-plane engine, without astropy
from lenstronomy.LightModel.light_model import LightModel

from darkhaloscope.inject.arcs import render_lensed, source_batch
from darkhaloscope.inject.profiles import lens_tensors, ray_shoot, sersic_sb, sersic_tensors
from darkhaloscope.sim.inject import LensParams, SourceParams, lens_kwargs, sersic_kwargs
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC

LENSES = [LensParams(1.5, 0.7, 0.4, 0.05, 1.1), LensParams(0.8, 0.5, -1.2, 0.0, 0.0),
          LensParams(2.6, 1.0, 0.0, 0.09, 2.5), LensParams(1.2, 0.95, 2.9, 0.03, 0.2, 0.3, -0.2)]
POINTS = np.array([[0.0, 0.0], [0.3, -0.1], [1.5, 0.0], [-1.1, 2.2], [0.01, 4.0], [-3.3, -2.7], [7.9, 0.4]])


@pytest.mark.parametrize("lens", LENSES)
def test_sie_shear_ray_shooting_matches_lenstronomy(lens):
    ref_x, ref_y = SinglePlane(["SIE", "SHEAR"]).ray_shooting(POINTS[:, 0], POINTS[:, 1], lens_kwargs(lens))
    x = torch.tensor(POINTS[:, 0], dtype=torch.float32).reshape(1, -1)
    y = torch.tensor(POINTS[:, 1], dtype=torch.float32).reshape(1, -1)
    bx, by = ray_shoot(x, y, lens_tensors([lens], "cpu"))
    np.testing.assert_allclose(bx[0].numpy(), ref_x, atol=2e-6 * 8)
    np.testing.assert_allclose(by[0].numpy(), ref_y, atol=2e-6 * 8)


def test_sis_deflection_is_theta_e_everywhere():
    """A round SIS without shear deflects every ray by theta_E towards the centre (the formula)."""
    ang = np.linspace(0, 2 * math.pi, 9)[:-1]
    r = np.array([0.4, 1.5, 3.0])
    x = torch.tensor((r[:, None] * np.cos(ang)).ravel(), dtype=torch.float32).reshape(1, -1)
    y = torch.tensor((r[:, None] * np.sin(ang)).ravel(), dtype=torch.float32).reshape(1, -1)
    bx, by = ray_shoot(x, y, lens_tensors([LensParams(1.5, 1.0, 0.0, 0.0, 0.0)], "cpu"))
    alpha = torch.hypot(x - bx, y - by)
    np.testing.assert_allclose(alpha.numpy(), 1.5, rtol=1e-5)


@pytest.mark.parametrize("n, e1, e2, reff", [(1.0, 0.0, 0.0, 0.3), (2.5, 0.2, -0.1, 0.15), (4.0, -0.3, 0.25, 2.0)])
def test_sersic_surface_brightness_matches_lenstronomy(n, e1, e2, reff):
    kw = sersic_kwargs(3.0, reff, n, e1, e2, 0.2, -0.4)
    ref = LightModel(["SERSIC_ELLIPSE"]).surface_brightness(POINTS[:, 0], POINTS[:, 1], kw)
    p = sersic_tensors([3.0], [reff], [n], [e1], [e2], [0.2], [-0.4], "cpu")
    got = sersic_sb(torch.tensor(POINTS[:, 0], dtype=torch.float32).reshape(1, -1),
                    torch.tensor(POINTS[:, 1], dtype=torch.float32).reshape(1, -1), p)[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-7 * ref.max())


def test_sis_with_source_on_axis_gives_a_ring_at_theta_e():
    theta_e = 1.5
    lens = LensParams(theta_e, 1.0, 0.0, 0.0, 0.0)
    body, knots = render_lensed(lens_tensors([lens], "cpu"),
                                source_batch([(lens, [(SourceParams(0, 0, 0.04, 1.0, 0, 0), 1.0)], ())], "cpu"), ss=8)
    img = body[0].double().numpy()
    idx = (np.arange(64) - 32) * PIXEL_SCALE_ARCSEC
    r = np.hypot(idx[None, :], idx[:, None])
    assert float((img * r).sum() / img.sum()) == pytest.approx(theta_e, abs=0.03)
    assert abs(r.ravel()[img.argmax()] - theta_e) <= PIXEL_SCALE_ARCSEC / 2 * math.sqrt(2)
    assert float(knots.abs().max()) == 0.0


@pytest.mark.parametrize("beta, expected", [(0.45, 2 * 1.5 / 0.45), (3.0, 1.5)])
def test_lensed_flux_over_unlensed_flux_is_the_sis_magnification(beta, expected):
    lens = LensParams(1.5, 1.0, 0.0, 0.0, 0.0)
    body, _ = render_lensed(lens_tensors([lens], "cpu"),
                            source_batch([(lens, [(SourceParams(beta, 0, 0.04, 1.0, 0, 0), 1.0)], ())], "cpu"), ss=12)
    assert float(body.double().sum()) == pytest.approx(expected, rel=0.02)
