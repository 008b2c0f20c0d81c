"""Batched lensing and light profiles in torch, in lenstronomy's conventions (float32, any device).

- `lens_tensors(lenses)`: SIE + external shear parameters of a batch, converted once in float64 exactly as
  lenstronomy's `SIE` (the NIE with s_scale 1e-10: product-averaged Einstein radius -> major-axis b,
  q from e1/e2 clipped at |e| 0.9999, q >= 1 treated as 0.99999999) and `SHEAR` (gamma1, gamma2) do.
- `ray_shoot(x, y, lens)`: source-plane positions of image-plane points, beta = theta - alpha_SIE - alpha_shear
  (Keeton & Kochanek 1998 deflection of the NIE, as lenstronomy's `NIEMajorAxis.derivatives`).
- `sersic_tensors` / `sersic_sb`: elliptical Sersic surface brightness (lenstronomy `SERSIC_ELLIPSE`:
  product-average radius, b_n = 1.9992 n - 0.3271, R and R_sersic floored at 1e-4, zero beyond 1000
  R_sersic), with the amplitude that gives a requested total flux.

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
EXP_MIN = -87.0  # exponents clamped here (exp: 1.6e-38, the float32 normal floor): torch's CPU exp of a more
# negative float32 takes a slow path (~10-25 ns against ~1.5 ns), and far pixels' light is that of the far wings


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
    yr = dy * lens.cos_phi - dx * lens.sin_phi
    q2 = lens.q * lens.q
    psi = (xr * xr).mul_(q2).addcmul_(yr, yr).add_(q2 * lens.s * lens.s).sqrt_()  # sqrt(q^2 (s^2 + x^2) + y^2)
    k = lens.b / lens.sq
    fx = torch.atan(xr.mul_(lens.sq).div_(psi + lens.s)).mul_(k)
    fy = torch.atanh(yr.mul_(lens.sq).div_(psi.add_(q2 * lens.s))).mul_(k)
    # rotated back by -phi, plus the external shear (ra_0, dec_0 = lens centre): beta = theta - alpha
    bx = (x - fx * lens.cos_phi).addcmul_(fy, lens.sin_phi).sub_(lens.g1 * dx).sub_(lens.g2 * dy)
    by = (y - fx * lens.sin_phi).sub_(fy * lens.cos_phi).sub_(lens.g2 * dx).add_(lens.g1 * dy)
    return bx, by


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
    """Surface brightness (flux / arcsec^2) at points (B, P) (or (B, K, P) for K components).
    (R / R_sersic)^(1/n) is evaluated as exp(ln(R^2) / 2n - ln(R_sersic) / n): `pow` with a tensor exponent
    costs ~6x an `exp` on the CPU; light below 1.6e-38 of the amplitude is that floor, `EXP_MIN`.)"""
    dx, dy = x - p.cx, y - p.cy
    xt = (dx * p.a11).addcmul_(dy, p.a12)
    yt = dy.mul_(p.a22).addcmul_(dx, p.a12)
    r2 = xt.mul_(xt).addcmul_(yt, yt).clamp_(min=SERSIC_FLOOR ** 2)
    far = None  # points beyond MAX_R_FRAC R_sersic (lenstronomy: zero there); checked on the extremes first
    if r2.numel() and float(r2.max()) > float((p.reff * MAX_R_FRAC).min()) ** 2:
        far = r2 > (p.reff * MAX_R_FRAC) ** 2
    log_reff = torch.log(p.reff)
    t = r2.log_().mul_(0.5 * p.inv_n).sub_(log_reff * p.inv_n).exp_()  # (R / R_sersic)^(1/n)
    sb = t.sub_(1.0).mul_(-p.bn).clamp_(min=EXP_MIN).exp_().mul_(p.amp)
    return sb if far is None else sb.masked_fill_(far, 0.0)

