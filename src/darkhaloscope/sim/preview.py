"""`dhs simulate ... --preview grid.png`: injections next to the same host without the arc.

Each triplet shows an injected stamp, its host without the arc (same noise) and the arc alone (their
difference), as g/r/z colour composites with a Lupton-style asinh stretch in units of each band's sky
noise (z -> red, r -> green, g -> blue), one fixed scale for every panel so that brightness compares.
Titles give theta_E, arc S/N, src_dmag and the magnification.
"""

from __future__ import annotations

import io

import numpy as np

from darkhaloscope.fileio import atomic_write_bytes
from darkhaloscope.sim.render import render_row

NOISE_NMGY = (0.0018, 0.0030, 0.0080)  # typical per-pixel sigma g, r, z: each band is shown in S/N units


def lupton_rgb(image: np.ndarray, soft_snr: float = 4.0, max_snr: float = 150.0) -> np.ndarray:
    """(3, H, W) g/r/z nanomaggies -> (H, W, 3) RGB in [0, 1] (z red, r green, g blue).

    Each band is divided by its typical sky sigma, then the mean intensity is stretched with
    asinh(I / soft_snr) (Lupton et al. 2004: colours are preserved, faint arcs visible above the noise).
    """
    snr = np.asarray(image, np.float64) / np.asarray(NOISE_NMGY)[:, None, None]
    g, r, z = snr
    intensity = np.maximum((g + r + z) / 3.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.arcsinh(intensity / soft_snr) / np.arcsinh(max_snr / soft_snr)
        scale = np.where(intensity > 0, f / intensity, 0.0)
    rgb = np.stack([z, r, g], axis=-1).clip(0, None) * scale[..., None]
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = np.where(peak > 1, rgb / np.maximum(peak, 1e-12), rgb)
    return np.clip(rgb, 0.0, 1.0)


def write_preview(ctx, path, n: int = 8) -> list[int]:
    """Render the first `n` injection rows of the plan with their hosts; write a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [int(i) for i in np.flatnonzero(ctx.plan.is_control == 0)[:n]]
    ncol = 6  # two (injection, host without arc, arc alone) triplets per figure row
    nrow = -(-len(rows) // 2)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.35 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(rows):
        res = render_row(ctx, i, keep_ctrl=True)
        c = res.columns
        a_inj, a_ctl, a_arc = (axes[k // 2, 3 * (k % 2) + j] for j in range(3))
        a_inj.imshow(lupton_rgb(res.image), origin="lower")
        a_inj.set_title(f"row {i}: $\\theta_E$={c['theta_e_arcsec']:.2f}\"\nS/N={c['arc_snr']:.1f} "
                        f"dmag={c['src_dmag']:.1f}", fontsize=7)
        a_ctl.imshow(lupton_rgb(res.ctrl_image), origin="lower")
        a_ctl.set_title("same host, no arc", fontsize=7)
        a_arc.imshow(lupton_rgb(res.image - res.ctrl_image), origin="lower")
        a_arc.set_title(f"arc alone, mu={c['magnification']:.1f}", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return rows
