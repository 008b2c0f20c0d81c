"""Numbers behind the leakage and shortcut checks: one-column AUROC, per-stamp image statistics, and a
cross-validated logistic-regression probe. Plain numpy / scikit-learn (no torch).

The shortcut probe asks the question the users' first network answered for them: can the classes be
told apart from crude image statistics (central flux, total flux, background MAD, colour) without
looking at arcs? Exercised by `dhs audit DATA`.
"""

from __future__ import annotations

import numpy as np

from darkhaloscope.common import ranking
from darkhaloscope.stamps.schema import BANDS, ZEROPOINT_AB, masked_pixels, pixel_radius


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of `scores` for label 1 vs 0 as a plain float, NaN with one class: `common.ranking.auroc` (the
    one ROC of the package, ties counting one half) for the audit's columns and probes."""
    v = ranking.auroc(np.asarray(labels) == 1, np.asarray(scores, dtype=np.float64)).value
    return float("nan") if v is None else float(v)


def separation(auc: float) -> float:
    """max(AUROC, 1 - AUROC): how well a column separates the classes whichever way round (0.5 = not)."""
    return float("nan") if not np.isfinite(auc) else max(auc, 1.0 - auc)


def column_leakage(values: np.ndarray, labels: np.ndarray, min_per_class: int = 5) -> dict:
    """AUROC of one metadata column alone (non-null rows) and its null fraction per class."""
    null = ~np.isfinite(values)
    y = labels.astype(np.int8)
    out = {"null_frac_controls": float(null[y == 0].mean()) if (y == 0).any() else float("nan"),
           "null_frac_injections": float(null[y == 1].mean()) if (y == 1).any() else float("nan")}
    ok = ~null
    if min((y[ok] == 0).sum(), (y[ok] == 1).sum()) >= min_per_class:
        out["auroc"] = auroc(y[ok], values[ok])
    else:
        out["auroc"] = float("nan")
    out["separation"] = separation(out["auroc"])
    out["null_frac_diff"] = abs(out["null_frac_injections"] - out["null_frac_controls"])
    return out


def _masks(size: int, centre_radius_pix: float, background_radius_pix: float):
    r = pixel_radius(size)
    return r <= centre_radius_pix, r >= background_radius_pix


def feature_names(probe_bands: tuple[str, ...] = ("r", "z")) -> list[str]:
    colours = [f"centre_colour_{a}_{b}_mag" for a, b in zip(probe_bands, probe_bands[1:])]
    return ([f"centre_flux_{b}_nmgy" for b in probe_bands] + [f"total_flux_{b}_nmgy" for b in probe_bands]
            + [f"background_mad_{b}_nmgy" for b in BANDS] + colours)


def image_features(images: np.ndarray, centre_radius_pix: float = 4.0, background_radius_pix: float = 24.0,
                   probe_bands: tuple[str, ...] = ("r", "z")) -> np.ndarray:
    """(N, 3, S, S) nanomaggies -> (N, F) float64 statistics, in the order of `feature_names(probe_bands)`.

    Fluxes and colours use `probe_bands` only (default r, z: there a red host dominates the central
    light, whereas in g a blue arc is a large part of it, i.e. g statistics measure the arc itself);
    the background MAD (r >= background_radius_pix) uses every band.
    """
    n, nb, size, _ = images.shape
    centre, outer = _masks(size, centre_radius_pix, background_radius_pix)
    bi = [BANDS.index(b) for b in probe_bands]
    img = images.astype(np.float64, copy=False)
    cflux = masked_pixels(img[:, bi], centre).sum(axis=2)
    total = img[:, bi].reshape(n, len(bi), -1).sum(axis=2)
    bg = masked_pixels(img, outer)
    mad = np.median(np.abs(bg - np.median(bg, axis=2, keepdims=True)), axis=2)
    mag = ZEROPOINT_AB - 2.5 * np.log10(np.clip(cflux, 1e-4, None))  # AB mag of the central flux
    colours = mag[:, :-1] - mag[:, 1:]
    return np.concatenate([cflux, total, mad, colours], axis=1)


def probe_auroc(features: np.ndarray, labels: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated AUROC of a standardised logistic regression on all image statistics."""
    from darkhaloscope.common.logistic import cv_decision_function

    y = labels.astype(np.int8)
    folds = int(min(folds, (y == 0).sum(), (y == 1).sum()))
    if folds < 2:
        return float("nan")
    x = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
    return auroc(y, cv_decision_function(x, y, folds=folds, seed=seed, max_iter=2000))


SHORTCUT_AUROC = 0.85  # image statistics reaching this AUROC without arcs = a shortcut (AuditConfig default)


def shortcut_verdict(stats_auroc: float | None, bound: float = SHORTCUT_AUROC, cnn_auroc: float | None = None,
                     cnn_close: bool = False) -> tuple[str, str]:
    """The one shortcut verdict of `dhs audit` and `dhs evaluate`: ('shortcut' | 'no shortcut', reason).

    'shortcut' when a logistic regression on crude image statistics (fluxes, background, colour: no arc
    shape) reaches AUROC >= `bound`: the classes separate without arcs. With the CNN's AUROC on the same
    rows, the reason also says how much the CNN adds (`cnn_close`: it recovers >= 90% of the gain)."""
    if stats_auroc is None or not np.isfinite(stats_auroc):
        return "no shortcut", "not measurable (one class, or too few rows)"
    cnn = f"; the CNN reaches {cnn_auroc:.3f} on the same rows" if cnn_auroc is not None else ""
    if stats_auroc >= bound:
        return "shortcut", (f"image statistics alone (no arc shape) reach AUROC {stats_auroc:.3f} >= {bound:g}: the "
                            f"classes separate without arcs{cnn}; match controls and injections in flux, background "
                            "and colour")
    if cnn_close:
        return "no shortcut", (f"image statistics reach AUROC {stats_auroc:.3f} (< {bound:g}, the dhs audit bound){cnn}: "
                               "the CNN adds little beyond them (arcs bright enough to find by flux, or an "
                               "undertrained CNN); the core-masked probe (--checkpoint) tells more")
    return "no shortcut", f"image statistics reach AUROC {stats_auroc:.3f} (< {bound:g}){cnn}"
