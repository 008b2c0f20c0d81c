"""Figures of the evaluation report, one function per PNG, matplotlib object API (Agg, no pyplot state).

Each function takes plain arrays / result dataclasses and a path, writes the PNG atomically and returns
the path. Axes carry labels and units; rates spanning decades use log axes.
Exercise: `dhs evaluate SCORES --out DIR` (every figure lands in DIR/figures/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.fileio import atomic_path
from darkhaloscope.stamps.display import lupton_rgb, stamp_noise
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, STAMP_SIZE

LENS_COLOUR, CONTROL_COLOUR = "tab:orange", "tab:blue"


def _figure(w: float = 6.0, h: float = 4.5, **kw):
    """A figure with fixed margins (set by `_margins` once its axes exist): matplotlib's constrained layout
    measured every text extent before each save, ~40% of an evaluate's figure time."""
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, **kw)


def _margins(fig, left: float = 0.8, right: float = 0.2, bottom: float = 0.6, top: float = 0.4,
             wspace: float = 0.0, hspace: float = 0.0, cols: int = 1, rows: int = 1) -> None:
    """Fixed margins and gaps between a `rows` x `cols` grid's axes, in inches (a 10 pt tick label plus an axis
    label is ~0.6 in; a title line ~0.3 in)."""
    w, h = fig.get_size_inches()
    cell_w = (w - left - right - (cols - 1) * wspace) / cols
    cell_h = (h - top - bottom - (rows - 1) * hspace) / rows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wspace / cell_w, hspace=hspace / cell_h)


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _err(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Asymmetric error bars (2, N), never negative (Wilson bounds can round past the value)."""
    return np.maximum(np.stack([value - lo, hi - value]), 0.0)


def _log_axis(axis) -> None:
    """Plain-number major labels and no minor labels on a log axis (no overlapping 2x10^1 labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _thin(x: np.ndarray, n: int = 4000) -> np.ndarray:
    """Indices keeping at most ~n points of a monotone curve, log-spaced in x (first and last kept)."""
    if len(x) <= n:
        return np.arange(len(x))
    pos = x[x > 0]
    grid = np.logspace(np.log10(pos.min()) if len(pos) else -9, 0, n)
    idx = np.searchsorted(x, grid, side="left")
    return np.unique(np.concatenate([[0, len(x) - 1], np.clip(idx, 0, len(x) - 1), np.clip(idx - 1, 0, len(x) - 1)]))


def roc(fpr: np.ndarray, tpr: np.ndarray, marks: dict[float, float | None], auc_text: str, path: Path) -> Path:
    """ROC with a log FPR axis (from 1/n_neg to 1); `marks` = {target FPR: TPR or None}."""
    fig = _figure()
    ax = fig.add_subplot()
    _margins(fig, bottom=0.65)
    keep = _thin(fpr)
    floor = fpr[fpr > 0].min() if (fpr > 0).any() else 1e-6
    ax.plot(np.maximum(fpr[keep], floor / 2), tpr[keep], color="k", lw=1.5, label=f"CNN ({auc_text})")
    grid = np.logspace(np.log10(floor / 2), 0, 100)
    ax.plot(grid, grid, ls=":", color="grey", label="random ranking")
    for f, t in marks.items():
        ax.axvline(f, color="tab:red", lw=0.6, alpha=0.5)
        if t is not None:
            ax.plot([f], [t], "o", color="tab:red")
            ax.annotate(f"TPR={t:.3g}", (f, t), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (controls scored as lens), log scale")
    ax.set_ylabel("true-positive rate (completeness)")
    ax.set_title("ROC (FPR at left-most point = 1 false positive)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr(recall: np.ndarray, precision: np.ndarray, base_rate: float, ap_text: str, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    _margins(fig)
    keep = _thin(recall)
    ax.plot(recall[keep], precision[keep], color="k", lw=1.5, label=f"CNN ({ap_text})")
    ax.axhline(base_rate, ls=":", color="grey", label=f"lens fraction in this set ({base_rate:.3g})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (completeness)")
    ax.set_ylabel("precision (purity, at this set's lens fraction)")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def score_histograms(scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path,
                     logits: np.ndarray | None = None) -> Path:
    """Histograms of the score by class (log counts); logits too when available."""
    panels = [("score (probability of lens)", scores, np.linspace(0, 1, 51))]
    if logits is not None and np.isfinite(logits).all() and len(logits):
        lo, hi = np.quantile(logits, [0.0005, 0.9995])
        panels.append(("logit", np.clip(logits, lo, hi), np.linspace(lo, hi + 1e-9, 61)))
    fig = _figure(6 * len(panels), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    _margins(fig, top=0.5, wspace=0.9, cols=len(panels))
    for ax, (name, v, bins) in zip(axes, panels):
        for lab, colour, text in ((0, CONTROL_COLOUR, "controls"), (1, LENS_COLOUR, "lenses/injections")):
            sel = v[labels == lab]
            ax.hist(sel, bins=bins, histtype="step", lw=1.5, color=colour, label=f"{text} (n={len(sel):,})")
        if name.startswith("score"):
            ax.axvline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.3g}")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("stamps per bin (log scale)")
        ax.legend(fontsize=8)
    fig.suptitle("Scores by class")
    return _save(fig, path)


def reliability(rel, path: Path) -> Path:
    fig = _figure(6, 6)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    _margins(fig, hspace=0.15, rows=2)
    ok = rel.count > 0
    top.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    top.errorbar(rel.mean_score[ok], rel.frac_pos[ok],
                 yerr=_err(rel.frac_pos[ok], rel.lo[ok], rel.hi[ok]),
                 fmt="o-", color="k", capsize=2, label=f"model (ECE {rel.ece:.3g}, Brier {rel.brier:.3g})")
    top.set_ylabel("observed fraction of lenses (95% Wilson)")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left", fontsize=8)
    top.set_title("Reliability (at this set's lens fraction)")
    centres = 0.5 * (rel.edges[1:] + rel.edges[:-1])
    bottom.bar(centres, rel.count, width=np.diff(rel.edges), color="lightgrey", edgecolor="grey")
    bottom.set_yscale("log")
    _log_axis(bottom.yaxis)
    bottom.set_xlabel("predicted probability of lens")
    bottom.set_ylabel("stamps")
    return _save(fig, path)


def binned_rates(curves, threshold: float, ylabel: str, title: str, path: Path) -> Path:
    """One panel per BinnedRate: rate with Wilson 95% interval versus the variable."""
    n = len(curves)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    _margins(fig, top=0.5, wspace=0.8, hspace=0.75, cols=cols, rows=rows)
    for ax, c in zip(axes, curves):
        ok = c.n > 0
        x = c.centres[ok]
        rate = c.rate[ok]
        ax.errorbar(x, rate, yerr=_err(rate, c.lo[ok], c.hi[ok]), fmt="o-", color="k", capsize=2)
        for xi, ni in zip(x, c.n[ok]):
            ax.annotate(f"{int(ni)}", (xi, 0), textcoords="offset points", xytext=(0, 3), fontsize=6,
                        ha="center", color="grey")
        if c.log:
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
        ax.set_xlabel(c.label)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.02) if "completeness" in ylabel else ax.set_ylim(bottom=0)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{title} (score >= {threshold:.3g}; grey: stamps per bin; bars: 95% Wilson)")
    return _save(fig, path)


def completeness_map(cmap, labels: tuple[str, str], threshold: float, path: Path) -> Path:
    fig = _figure(6.5, 5)
    ax = fig.add_subplot()
    _margins(fig, right=0.1)  # the colorbar, its ticks and label take their room from the axes' right
    rate = np.ma.masked_invalid(cmap.rate)
    mesh = ax.pcolormesh(cmap.x_edges, cmap.y_edges, rate.T, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=f"completeness (score >= {threshold:.3g})")
    for i in range(len(cmap.x_edges) - 1):
        for j in range(len(cmap.y_edges) - 1):
            if cmap.n[i, j]:
                xc = 0.5 * (cmap.x_edges[i] + cmap.x_edges[i + 1])
                yc = np.sqrt(cmap.y_edges[j] * cmap.y_edges[j + 1]) if labels[1][1] else \
                    0.5 * (cmap.y_edges[j] + cmap.y_edges[j + 1])
                ax.text(xc, yc, f"{cmap.rate[i, j]:.2f}\nn={int(cmap.n[i, j])}", ha="center", va="center",
                        fontsize=6, color="w" if cmap.rate[i, j] < 0.6 else "k")
    if labels[1][1]:
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
    ax.set_xlabel(labels[0][0])
    ax.set_ylabel(labels[1][0])
    ax.set_title("Completeness map of injections")
    return _save(fig, path)


OCCLUSION_LEGEND = "red = the score falls when that region is covered (the model relies on it), blue = it rises"


CAPTION_PT = 8  # stamp captions of the galleries (6 pt was unreadable in report.html)
TITLE_PT = 10  # gallery titles, wrapped to the figure's width (a long one was clipped at both ends)
PANEL_IN = 2.4  # inches per gallery panel (a caption line of ~40 characters at CAPTION_PT fits)


def gallery(images: np.ndarray, captions: list[str], title: str, path: Path, overlays=None, cols: int = 6) -> Path:
    """`gallery_figure` written to `path`."""
    return _save(gallery_figure(images, captions, title, overlays, cols), path)


def gallery_figure(images: np.ndarray, captions: list[str], title: str, overlays=None, cols: int = 6):
    """g/r/z composites with a caption each (shown verbatim: '$' in data never starts mathtext); optional (N, H, W)
    overlay maps (e.g. occlusion) drawn beside. Title and captions are wrapped to fit the figure."""
    import textwrap

    n = len(images)
    per = 2 if overlays is not None else 1
    vmax = float(np.max(np.abs(overlays))) or 1e-6 if overlays is not None else 0.0  # one scale for the gallery
    cols = min(cols, n) or 1
    rows = int(np.ceil(n / cols)) or 1
    width = max(PANEL_IN * cols * per, 4.8)
    chars = int(PANEL_IN * 72 / (0.55 * CAPTION_PT))  # a caption line's characters per panel (0.55 em per char)
    wrapped = ["\n".join(textwrap.fill(line, chars) for line in c.split("\n")) for c in captions]
    lines = max((c.count("\n") + 1 for c in wrapped), default=1)
    note = "" if overlays is None else f"; occlusion maps: {OCCLUSION_LEGEND}, scale ±{vmax:.2g}"
    head = textwrap.fill(f"{title} (g/r/z composite, {STAMP_SIZE} px = {STAMP_SIZE * PIXEL_SCALE_ARCSEC:.1f}\""
                         f"{note})", int(width * 72 / (0.55 * TITLE_PT)) - 4)
    # a text line is ~1.2 em tall: the stamp, its caption lines and the axes title's 6 pt pad; the title's lines
    row_in = PANEL_IN + (lines * CAPTION_PT * 1.3 + 8) / 72
    head_in = ((head.count("\n") + 1) * TITLE_PT * 1.3 + 6) / 72
    fig = _figure(width, row_in * rows + head_in)
    axes = np.atleast_1d(fig.subplots(rows, cols * per, squeeze=False)).ravel()
    cap_in = row_in - PANEL_IN  # a row's caption lines above its stamps
    _margins(fig, left=0.05, right=0.05, bottom=0.05, top=head_in + cap_in, wspace=0.1, hspace=cap_in,
             cols=cols * per, rows=rows)
    for ax in axes:
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, cols)
        ax = axes[r * cols * per + c * per]
        ax.imshow(lupton_rgb(images[i], stamp_noise(images[i])), origin="lower")
        ax.set_title(wrapped[i], fontsize=CAPTION_PT, parse_math=False)  # captions hold data strings: never mathtext
        if overlays is not None:
            ax2 = axes[r * cols * per + c * per + 1]
            ax2.imshow(overlays[i], origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax2.set_title("probability drop\nwhen occluded", fontsize=CAPTION_PT)
    fig.suptitle(head, fontsize=TITLE_PT, parse_math=False, y=1 - 3 / 72 / fig.get_size_inches()[1], va="top")
    return fig


def bar_scores(names: list[str], values: list[float], lo: list[float], hi: list[float], title: str, ylabel: str,
               path: Path) -> Path:
    """Bars of rates with asymmetric (e.g. Wilson 95%) intervals; long names wrap at ' ('."""
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot()
    _margins(fig, bottom=0.75)  # two-line tick labels
    v = np.asarray(values, float)
    ax.bar([n.replace(" (", "\n(") for n in names], v, yerr=_err(v, np.asarray(lo, float), np.asarray(hi, float)),
           color=["tab:orange", "tab:blue", "tab:green", "tab:grey"][:len(names)], capsize=3)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, path)
