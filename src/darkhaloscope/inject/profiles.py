"""Batched lensing and light profiles in torch, in lenstronomy's conventions (float32, any device).

- `lens_tensors(lenses)`: SIE + external shear parameters of a batch, converted once in float64 exactly as
  lenstronomy's `SIE` (the NIE with s_scale 1e-10: product-averaged Einstein radius -> major-axis b,
  q from e1/e2 clipped at |e| 0.9999, q >= 1 treated as 0.99999999) and `SHEAR` (gamma1, gamma2) do.
- `ray_shoot(x, y, lens)`: source-plane positions of image-plane points, beta = theta - alpha_SIE - alpha_shear
  (Keeton & Kochanek 1998 deflection of the NIE, as lenstronomy's `NIEMajorAxis.derivatives`).
- `sersic_tensors` / `sersic_sb`: elliptical Sersic surface brightness (lenstronomy `SERSIC_ELLIPSE`:
  product-average radius, b_n = 1.9992 n - 0.3271, R and R_sersic floored at 1e-4, zero beyond 1000
  R_sersic), with the amplitude that gives a requested total flux.
- `gaussian_sb`: circular Gaussian knots of given total flux.

Every function takes parameters of shape (B, 1) (or (B, K, 1) for several components per stamp) and points
of shape (B, P); nothing loops over stamps. Checked against lenstronomy in tests/inject/test_profiles.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

S_SCALE = 1e-10  # lenstronomy SIE's core (NIE with this smoothing)
Q_MAX = 0.99999999  # lenstronomy NIEMajorAxis: q >= 1 is replaced by this
SERSIC_FLOOR = 1e-4  # lenstronomy SersicUtil smoothing: R and R_sersic floored here
MAX_R_FRAC = 1000.0  # lenstronomy: surface brightness is zero beyond this many R_sersic


@dataclass
class LensTensors:
    """(B, 1) SIE + shear parameters in the form the deflection needs (float32, on the device)."""

    b: torch.Tensor  # major-axis critical radius, arcsec
    s: torch.Tensor  # core, arcsec (s_scale / sqrt(q))
    q: torch.Tensor
    sq: torch.Tensor  # sqrt(1 - q^2), computed in float64
    cos_phi: torch.Tensor
    sin_phi: torch.Tensor
    g1: torch.Tensor
    g2: torch.Tensor
    cx: torch.Tensor  # lens centre, arcsec
    cy: torch.Tensor


def _col(values, device, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).reshape(-1, 1).to(device=device, dtype=dtype)


def lens_tensors(lenses, device) -> LensTensors:
    """Batch of `sim.inject.LensParams` -> LensTensors (conversions in float64, as lenstronomy does them)."""
    d = torch.float64
    theta_e = torch.tensor([lens.theta_e_arcsec for lens in lenses], dtype=d)
    q_in = torch.tensor([lens.q for lens in lenses], dtype=d)
    phi_in = torch.tensor([lens.phi_rad for lens in lenses], dtype=d)
    e1 = (1 - q_in) / (1 + q_in) * torch.cos(2 * phi_in)  # param_util.phi_q2_ellipticity
    e2 = (1 - q_in) / (1 + q_in) * torch.sin(2 * phi_in)
    phi = torch.atan2(e2, e1) / 2  # param_util.ellipticity2phi_q
    c = torch.clamp(torch.sqrt(e1 ** 2 + e2 ** 2), max=0.9999)
    q = (1 - c) / (1 + c)
    b = theta_e / torch.sqrt((1 + q ** 2) / (2 * q)) * torch.sqrt((1 + q ** 2) / 2)
    s = S_SCALE / torch.sqrt(q)
    q = torch.clamp(q, max=Q_MAX)
    gamma = torch.tensor([lens.shear_gamma for lens in lenses], dtype=d)
    gphi = torch.tensor([lens.shear_phi_rad for lens in lenses], dtype=d)
    cx = torch.tensor([lens.center_x_arcsec for lens in lenses], dtype=d)
    cy = torch.tensor([lens.center_y_arcsec for lens in lenses], dtype=d)
    return LensTensors(*(_col(v, device) for v in (b, s, q, torch.sqrt(1 - q ** 2), torch.cos(phi), torch.sin(phi),
                                                   gamma * torch.cos(2 * gphi), gamma * torch.sin(2 * gphi), cx, cy)))


def take(t, idx: torch.Tensor):
    """The same dataclass of tensors with rows `idx` (for the ragged, supersampled pixels)."""
    return type(t)(**{k: v[idx] for k, v in t.__dict__.items()})


def ray_shoot(x: torch.Tensor, y: torch.Tensor, lens: LensTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-plane (x, y) arcsec of image-plane points (B, P) through SIE + shear (B, 1)."""
    dx, dy = x - lens.cx, y - lens.cy
    xr = dx * lens.cos_phi + dy * lens.sin_phi  # util.rotate(x, y, phi)
    yr = -dx * lens.sin_phi + dy * lens.cos_phi
    psi = torch.sqrt(lens.q ** 2 * (lens.s ** 2 + xr ** 2) + yr ** 2)
    fx = lens.b / lens.sq * torch.atan(lens.sq * xr / (psi + lens.s))
    fy = lens.b / lens.sq * torch.atanh(lens.sq * yr / (psi + lens.q ** 2 * lens.s))
    ax = fx * lens.cos_phi - fy * lens.sin_phi  # rotate back by -phi
    ay = fx * lens.sin_phi + fy * lens.cos_phi
    ax = ax + lens.g1 * dx + lens.g2 * dy  # external shear (ra_0, dec_0 = lens centre)
    ay = ay + lens.g2 * dx - lens.g1 * dy
    return x - ax, y - ay


@dataclass
class SersicTensors:
    """(..., 1) elliptical Sersic parameters (float32, on the device)."""

    amp: torch.Tensor  # surface brightness at R_sersic, flux / arcsec^2 (0: an absent component)
    reff: torch.Tensor  # half-light radius, arcsec (floored)
    inv_n: torch.Tensor  # 1 / n_sersic
    bn: torch.Tensor
    a11: torch.Tensor  # (1 - e1) / norm: the product-average transform of lenstronomy
    a12: torch.Tensor  # -e2 / norm
    a22: torch.Tensor  # (1 + e1) / norm
    cx: torch.Tensor
    cy: torch.Tensor


def sersic_tensors(flux, reff, n, e1, e2, cx, cy, device, shape=(-1, 1)) -> SersicTensors:
    """Sersic parameters (sequences or arrays, any shape that reshapes to `shape`) whose total unlensed flux
    is `flux` (lenstronomy `total_flux`: amp R^2 2 pi n e^bn / bn^2n Gamma(2n))."""
    d = torch.float64
    flux, reff, n, e1, e2, cx, cy = (torch.as_tensor(v, dtype=d) for v in (flux, reff, n, e1, e2, cx, cy))
    bn = torch.clamp(1.9992 * n - 0.3271, min=1e-5)
    reff_f = torch.clamp(reff, min=SERSIC_FLOOR)
    unit = reff_f ** 2 * 2 * math.pi * n * torch.exp(bn - 2 * n * torch.log(bn) + torch.lgamma(2 * n))
    norm = torch.sqrt(torch.clamp(torch.abs(1 - e1 ** 2 - e2 ** 2), min=1e-6))
    vals = (flux / unit, reff_f, 1 / n, bn, (1 - e1) / norm, -e2 / norm, (1 + e1) / norm, cx, cy)
    return SersicTensors(*(v.reshape(shape).to(device=device, dtype=torch.float32) for v in vals))


def sersic_sb(x: torch.Tensor, y: torch.Tensor, p: SersicTensors) -> torch.Tensor:
    """Surface brightness (flux / arcsec^2) at points (B, P) (or (B, K, P) for K components)."""
    dx, dy = x - p.cx, y - p.cy
    xt = p.a11 * dx + p.a12 * dy
    yt = p.a12 * dx + p.a22 * dy
    frac = torch.clamp(torch.sqrt(xt * xt + yt * yt), min=SERSIC_FLOOR) / p.reff
    sb = p.amp * torch.exp(-p.bn * (frac ** p.inv_n - 1.0))
    return torch.where(frac <= MAX_R_FRAC, sb, torch.zeros((), dtype=sb.dtype, device=sb.device))


def gaussian_sb(x: torch.Tensor, y: torch.Tensor, flux: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor,
                sigma: torch.Tensor) -> torch.Tensor:
    """Surface brightness of circular Gaussians (B, K, 1) of total `flux`, summed over K, at points (B, P)."""
    s2 = sigma * sigma
    r2 = (x.unsqueeze(1) - kx) ** 2 + (y.unsqueeze(1) - ky) ** 2
    return (flux / (2 * math.pi * s2) * torch.exp(-0.5 * r2 / s2)).sum(dim=1)
