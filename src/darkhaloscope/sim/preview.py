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
from darkhaloscope.stamps.display import lupton_rgb

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
    renderer = getattr(ctx, "renderer", None)  # the tier's engine (torch: inject/engine.py), else the numpy one
    results = renderer(ctx, rows, keep_ctrl=True) if renderer else [render_row(ctx, i, keep_ctrl=True) for i in rows]
    for k, (i, res) in enumerate(zip(rows, results)):
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
