"""Selection function: completeness of injections at the chosen threshold versus injection and observing
properties (binned, Wilson 95% intervals), a 2-D theta_E x arc S/N completeness map, and the false-positive
rate of controls versus host / observing properties (stratified FPR).

Plain numpy. Bins are quantiles of the values (so every bin holds data), rounded for readability.
Exercise: `dhs evaluate SCORES --out DIR` (section "Selection function").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darkhaloscope.common.ranking import wilson_interval

# Injection / observing variables of the selection function: column -> (axis label with unit, log axis).
SELECTION_VARIABLES: dict[str, tuple[str, bool]] = {
    "theta_e_arcsec": ("Einstein radius theta_E [arcsec]", False),
    "arc_snr": ("arc peak S/N, r band (peak pixel / sky sigma)", True),
    "src_mag_r": ("source r magnitude [AB mag]", False),
    "src_reff_arcsec": ("source half-light radius [arcsec]", False),
    "psf_fwhm_used_r": ("PSF FWHM, r band [arcsec]", False),
    "psfdepth_r": ("5-sigma PSF depth, r band [AB mag]", False),
}
# Host / observing columns of the stratified FPR: column -> (axis label with unit, log axis).
HOST_VARIABLES: dict[str, tuple[str, bool]] = {
    "host_mag_r": ("host r magnitude [AB mag]", False),
    **{f"psf_fwhm_used_{b}": (f"PSF FWHM, {b} band [arcsec]", False) for b in "grz"},
    **{f"psfdepth_{b}": (f"5-sigma PSF depth, {b} band [AB mag]", False) for b in "grz"},
    "psf_moffat_beta": ("PSF Moffat beta", False),
}
MAP_AXES = ("theta_e_arcsec", "arc_snr")  # the 2-D completeness map


@dataclass(frozen=True)
class BinnedRate:
    """A rate k/n in bins of one variable (completeness of injections, or FPR of controls)."""

    variable: str
    label: str  # axis label with unit
    log: bool  # log-scale axis
    edges: np.ndarray  # (B+1,)
    centres: np.ndarray  # (B,) mean value of the rows in each bin (where the point is drawn)
    k: np.ndarray  # (B,) hits (score >= threshold)
    n: np.ndarray  # (B,) rows in the bin
    lo: np.ndarray  # (B,) Wilson 95% interval
    hi: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.k / self.n

    def rows(self) -> list[dict]:
        last = len(self.n) - 1
        return [{"bin": bin_label(a, b, closed=j == last), "n": int(n), "k": int(k),
                 "rate": (float(k / n) if n else None), "lo": float(lo), "hi": float(hi)}
                for j, (a, b, n, k, lo, hi) in enumerate(zip(self.edges[:-1], self.edges[1:], self.n, self.k, self.lo,
                                                              self.hi))]


def bin_label(a: float, b: float, closed: bool = False) -> str:
    """'[23.41, 23.44)': the fewest significant digits (3 or more) that tell the two edges apart; the last
    bin, which holds its upper edge, is closed: '[a, b]'."""
    for digits in range(3, 12):
        lo, hi = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if lo != hi:
            break
    return f"[{lo}, {hi}{']' if closed else ')'}"


def quantile_edges(values: np.ndarray, n_bins: int, log: bool = False) -> np.ndarray:
    """Bin edges at quantiles of the finite values (duplicates removed), outermost edges at min/max."""
    v = values[np.isfinite(values)]
    if log:
        v = v[v > 0]
    if len(v) == 0:
        return np.empty(0)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, n_bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0] * (1 + 1e-9) + 1e-12])
    return edges


def binned_rate(values: np.ndarray, hit: np.ndarray, variable: str, n_bins: int = 8,
                label: str | None = None, log: bool = False) -> BinnedRate | None:
    """Rate of `hit` in quantile bins of `values` (rows with non-finite values are left out)."""
    ok = np.isfinite(values) & ((values > 0) if log else True)
    edges = quantile_edges(values[ok], n_bins, log)
    if len(edges) < 2:
        return None
    idx = np.clip(np.searchsorted(edges, values[ok], side="right") - 1, 0, len(edges) - 2)
    n = np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)
    k = np.bincount(idx, weights=hit[ok].astype(np.float64), minlength=len(edges) - 1)
    lo, hi = wilson_interval(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = np.bincount(idx, weights=values[ok], minlength=len(edges) - 1) / n
    return BinnedRate(variable, label or variable, log, edges, centres, k, n, lo, hi)


def completeness_curves(columns: dict[str, np.ndarray], labels: np.ndarray, hit: np.ndarray,
                        n_bins: int = 8) -> list[BinnedRate]:
    """Completeness of injections (label 1) versus each SELECTION_VARIABLES column present."""
    pos = labels == 1
    out = []
    for name, (label, log) in SELECTION_VARIABLES.items():
        if name in columns and np.isfinite(columns[name][pos]).any():
            r = binned_rate(columns[name][pos], hit[pos], name, n_bins, label, log)
            if r is not None:
                out.append(r)
    return out


def stratified_fpr(columns: dict[str, np.ndarray], names: list[str], labels: np.ndarray, hit: np.ndarray,
                   n_bins: int = 6, max_vars: int = 8) -> list[BinnedRate]:
    """False-positive rate of controls (label 0) versus each allowed host / observing column."""
    neg = labels == 0
    out = []
    for name in names:
        v = columns[name][neg]
        if np.isfinite(v).sum() < 2 * n_bins or len(np.unique(v[np.isfinite(v)])) < 2:
            continue
        label, log = HOST_VARIABLES.get(name, (name, False))
        r = binned_rate(v, hit[neg], name, n_bins, label, log)
        if r is not None:
            out.append(r)
        if len(out) >= max_vars:
            break
    return out


@dataclass(frozen=True)
class CompletenessMap:
    x: str  # column on the x axis
    y: str
    x_edges: np.ndarray
    y_edges: np.ndarray
    k: np.ndarray  # (nx, ny) detected injections
    n: np.ndarray  # (nx, ny) injections

    @property
    def rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.k / self.n


def completeness_map(columns: dict[str, np.ndarray], labels: np.ndarray, hit: np.ndarray,
                     n_bins: int = 6, axes=MAP_AXES) -> CompletenessMap | None:
    """2-D completeness of injections on quantile bins of two columns (default theta_E x arc S/N)."""
    x, y = axes
    if x not in columns or y not in columns:
        return None
    pos = labels == 1
    vx, vy, h = columns[x][pos], columns[y][pos], hit[pos]
    ok = np.isfinite(vx) & np.isfinite(vy) & (vy > 0 if SELECTION_VARIABLES[y][1] else True)
    if ok.sum() < 4:
        return None
    ex = quantile_edges(vx[ok], n_bins, SELECTION_VARIABLES[x][1])
    ey = quantile_edges(vy[ok], n_bins, SELECTION_VARIABLES[y][1])
    if len(ex) < 2 or len(ey) < 2:
        return None
    n, _, _ = np.histogram2d(vx[ok], vy[ok], bins=[ex, ey])
    k, _, _ = np.histogram2d(vx[ok], vy[ok], bins=[ex, ey], weights=h[ok].astype(np.float64))
    return CompletenessMap(x, y, ex, ey, k, n)
