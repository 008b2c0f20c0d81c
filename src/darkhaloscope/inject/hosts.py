"""Synthetic host galaxies of a whole batch at once (torch): `sim.hosts.paint_synthetic_host`, batched.

    model = paint_hosts([SyntheticHost, ...], device)        # (B, 3, 64, 64) nanomaggies, pre-PSF

The host's Sersic (one per band: R_eff grows to the blue) is evaluated on every pixel, its core (< 0.8" from
the centre) on an 8 x 8 sub-pixel grid and its centre pixel on a 32 x 32 one, as the numpy engine's
`render_sersic` does; neighbour galaxies (all of the batch's in one flat list) with their cores on 4 x 4 grids;
stars shared bilinearly among their 4 nearest pixels. The draws are the numpy engine's (`draw_synthetic_host`).

Exercised by `dhs simulate --engine torch` and tests/inject/test_parity.py.
"""

from __future__ import annotations

import torch

from darkhaloscope.inject.arcs import PIXEL_AREA_ARCSEC2, pieces, pixel_grid, subpixel_offsets
from darkhaloscope.inject.profiles import sersic_sb, sersic_tensors, take
from darkhaloscope.sim.observing import mag_to_nmgy
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, STAMP_SIZE

CORE_ARCSEC = 0.8  # sim.inject.render_sersic's supersampled core radius
HOST_SS, HOST_CENTRE_SS = 8, 32  # host core / centre-pixel sub-pixels per side
NEIGHBOUR_SS = 4  # neighbours' core (and centre pixel, the same grid) sub-pixels per side
WINDOW = 4  # a neighbour's core lies within +-4 pixels of its nearest pixel (0.8" < 4 x 0.262")


def colour_scales(g_r: torch.Tensor, r_z: torch.Tensor) -> torch.Tensor:
    """(..., 3) flux ratio to r of g, r, z (sim.hosts.colour_scale)."""
    return torch.stack([10 ** (-0.4 * g_r), torch.ones_like(g_r), 10 ** (0.4 * r_z)], dim=-1)


def _f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _sersic_image(p, x, y, core: torch.Tensor, ss: int, centre: torch.Tensor | None, centre_ss: int) -> torch.Tensor:
    """(N, C, P) Sersic images of parameters (N, C, 1) on pixels (1, P): every pixel at its centre, `core`
    (N or 1, Q) pixel indices on ss x ss sub-pixels, `centre` pixel indices on centre_ss x centre_ss."""
    img = sersic_sb(x.unsqueeze(1), y.unsqueeze(1), p)
    for pix, s in ((core, ss), (centre, centre_ss)):
        if pix is None or s <= 1:
            continue
        ox, oy = subpixel_offsets(s, x.device)
        xs = x[0, pix].unsqueeze(-1) + ox  # (N or 1, Q, s*s)
        ys = y[0, pix].unsqueeze(-1) + oy
        val = sersic_sb(xs.unsqueeze(1), ys.unsqueeze(1), _expand(p)).mean(dim=-1)  # (N, C, Q)
        img = img.scatter(2, pix.unsqueeze(1).expand(val.shape), val)
    return img


def _expand(p):
    """Parameters (N, C, 1) -> (N, C, 1, 1), to broadcast over (Q, sub-pixels)."""
    return type(p)(**{k: v.unsqueeze(-1) for k, v in p.__dict__.items()})


def paint_hosts(hosts, device, size: int = STAMP_SIZE) -> torch.Tensor:
    """(B, 3, size, size) pre-PSF light of drawn synthetic hosts, nanomaggies per pixel."""
    device = torch.device(device)
    x, y = pixel_grid(device, size)
    n_b = len(hosts)
    r2 = (x * x + y * y)[0]
    core = torch.nonzero(r2 < CORE_ARCSEC ** 2).reshape(1, -1)
    centre = torch.nonzero(r2 == r2.min()).reshape(1, -1)
    e = [h.e1e2 for h in hosts]
    reff = _f64([[h.reff_arcsec * 10 ** (h.grad_dex * k) for k in (1, 0, -1)] for h in hosts])
    per_band = (lambda v: _f64(v).reshape(-1, 1).expand(n_b, 3))
    p = sersic_tensors(torch.ones(n_b, 3, dtype=torch.float64), reff, per_band([h.n_sersic for h in hosts]),
                       per_band([v[0] for v in e]), per_band([v[1] for v in e]), torch.zeros(n_b, 3),
                       torch.zeros(n_b, 3), device, shape=(n_b, 3, 1))
    shapes = torch.empty(n_b, 3, x.shape[1], device=device)
    for a, b in pieces(n_b, 3 * x.shape[1], device):
        shapes[a:b] = _sersic_image(take(p, slice(a, b)), x, y, core, HOST_SS, centre, HOST_CENTRE_SS)
    flux = (mag_to_nmgy([h.mag_r for h in hosts]).reshape(-1, 1)
            * colour_scales(_f64([h.g_r for h in hosts]), _f64([h.r_z for h in hosts])).numpy())
    model = (shapes * PIXEL_AREA_ARCSEC2) * torch.as_tensor(flux, dtype=torch.float32, device=device).unsqueeze(-1)
    model = _add_neighbours(model, hosts, x, y, size)
    model = _add_stars(model, hosts, size)
    return model.reshape(n_b, 3, size, size)


def _add_neighbours(model: torch.Tensor, hosts, x, y, size: int) -> torch.Tensor:
    nbs = [(b,) + nb for b, h in enumerate(hosts) for nb in h.neighbours]
    if not nbs:
        return model
    b_idx, flux, reff, n, e1, e2, nx, ny, gr, rz = (_f64(v) for v in zip(*nbs))
    dev = model.device
    p = sersic_tensors(flux, reff, n, e1, e2, nx, ny, dev, shape=(-1, 1, 1))
    # each neighbour's core: the pixels of a (2 WINDOW + 1)^2 window round its nearest pixel within 0.8"
    cx = torch.clamp(torch.round(nx / PIXEL_SCALE_ARCSEC) + size // 2, 0, size - 1)
    cy = torch.clamp(torch.round(ny / PIXEL_SCALE_ARCSEC) + size // 2, 0, size - 1)
    off = torch.arange(-WINDOW, WINDOW + 1, dtype=torch.float64)
    wy = (cy.reshape(-1, 1, 1) + off.reshape(1, -1, 1)).expand(-1, len(off), len(off)).reshape(len(nbs), -1)
    wx = (cx.reshape(-1, 1, 1) + off.reshape(1, 1, -1)).expand(-1, len(off), len(off)).reshape(len(nbs), -1)
    inside = (wx >= 0) & (wx < size) & (wy >= 0) & (wy < size)
    win = (torch.clamp(wy, 0, size - 1) * size + torch.clamp(wx, 0, size - 1)).long()
    px = (wx - size // 2) * PIXEL_SCALE_ARCSEC - nx.reshape(-1, 1)
    py = (wy - size // 2) * PIXEL_SCALE_ARCSEC - ny.reshape(-1, 1)
    in_core = inside & (px * px + py * py < CORE_ARCSEC ** 2)
    coarse = torch.empty(len(nbs), 1, x.shape[1], device=dev)  # (N, 1, P)
    for a, b in pieces(len(nbs), x.shape[1], dev):
        coarse[a:b] = sersic_sb(x.unsqueeze(1), y.unsqueeze(1), take(p, slice(a, b)))
    ox, oy = subpixel_offsets(NEIGHBOUR_SS, dev)
    win_d = win.to(dev)
    sub = sersic_sb((x[0, win_d].unsqueeze(-1) + ox).unsqueeze(1), (y[0, win_d].unsqueeze(-1) + oy).unsqueeze(1),
                    _expand(p)).mean(dim=-1)  # (N, 1, W)
    n_idx, w_idx = torch.nonzero(in_core.to(dev), as_tuple=True)  # inside the stamp: no repeated pixel
    img = coarse.index_put((n_idx, torch.zeros_like(n_idx), win_d[n_idx, w_idx]), sub[n_idx, 0, w_idx])
    colour = colour_scales(gr, rz).to(dev, torch.float32).unsqueeze(-1)  # (N, 3, 1)
    return model.index_add(0, b_idx.long().to(dev), img * PIXEL_AREA_ARCSEC2 * colour)


def _add_stars(model: torch.Tensor, hosts, size: int) -> torch.Tensor:
    stars = [(b,) + s for b, h in enumerate(hosts) for s in h.stars]
    if not stars:
        return model
    b_idx, flux, sx, sy, gr, rz = (_f64(v) for v in zip(*stars))
    px, py = sx / PIXEL_SCALE_ARCSEC + size // 2, sy / PIXEL_SCALE_ARCSEC + size // 2
    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = px - x0, py - y0
    light = flux.reshape(-1, 1) * colour_scales(gr, rz)  # (S, 3) nanomaggies per band
    band = torch.arange(3).reshape(1, 3)
    out = model.reshape(-1, 3, size, size)
    for dy, wy in ((0, 1 - fy), (1, fy)):  # the 4 pixels sharing each star (bilinear)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = (y0 + dy).long(), (x0 + dx).long()
            ok = (yi >= 0) & (yi < size) & (xi >= 0) & (xi < size)
            idx = [t[ok].reshape(-1, 1).expand(-1, 3) for t in (b_idx.long(), yi, xi)]
            val = (light * (wy * wx).reshape(-1, 1))[ok].to(out.device, out.dtype)
            out = out.index_put((idx[0].to(out.device), band.expand(len(val), 3).to(out.device),
                                 idx[1].to(out.device), idx[2].to(out.device)), val, accumulate=True)
    return out.reshape(model.shape)
