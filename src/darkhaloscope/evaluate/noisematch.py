"""Noise-matched operating points for real lenses: thresholds set on the test controls brought to a lens's
own sky noise ("found at 1% FPR of controls at its own depth").

A real lens imaged by a shallower survey (Pan-STARRS1 is 3-4x noisier per pixel than DR10) is judged, by a
threshold set on DR10-depth controls, against controls cleaner than itself. Here:
- `sky_sigma`: each stamp's sky noise per band, robust (1.4826 x MAD) over the pixels at r >= `SKY_RADIUS_PIX`
  from the centre (away from the lens and its arcs); NaN where it cannot be measured (too few finite pixels,
  or a flat band).
- `noise_bins`: the lenses in quantile bins of their noise relative to the controls' median (the median over
  bands of sigma_lens / sigma_controls), with at least `min_per_bin` lenses each (six DR10 candidates: one bin,
  one re-scoring of the controls); a bin's target noise per band is the median of its lenses'.
- `renoise`: each control raised to a target by Gaussian noise of sigma sqrt(target^2 - own^2) per band, with
  the lag-1 pixel correlation the simulation models (`sim.observing.correlated_noise`, `noise_corr_lag1`);
  a band whose target is below the control's own noise gets nothing (it cannot be matched by adding noise).
- `noise_matched`: per bin, the re-noised controls scored (`score_fn`, seeded per bin) and thresholds set on
  them at each FPR (`common.ranking.control_threshold`, the rule of every operating point); each lens found
  when its value is above its bin's threshold.
- `recall_cell` / `recall_table`: THE recall-table helper of the real-lens section (k/n, Wilson 95% interval,
  'not resolvable' where the controls allow no false positive at that FPR).

Pure numpy: the model comes in as `score_fn(images) -> values`. Exercise: `dhs evaluate SCORES --checkpoint
CKPT --data DATA --known-lenses ../shared/data/ps1_sled_lenses`; tests/evaluate/test_noisematch.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from darkhaloscope.common import ranking as M
from darkhaloscope.stamps.robust import median_sigma
from darkhaloscope.stamps.schema import masked_pixels, pixel_radius

SKY_RADIUS_PIX = 20  # sky noise from the pixels at r >= 20 px (5.2") of the centre: ~2,800 of a 64x64 stamp
MIN_SKY_PIXELS = 200  # fewer finite sky pixels than this: the noise of that band is not measurable
BELOW_TOLERANCE = 0.97  # a target under 97% of the controls' median noise counts as below the controls


def default_lag1() -> tuple[float, float]:
    """The pixel correlation (x, y) the simulation gives sky noise (`SimConfig.noise_corr_lag1`)."""
    from darkhaloscope.sim.simconfig import SimConfig

    return tuple(SimConfig().noise_corr_lag1)


def sky_sigma(images: np.ndarray, radius_pix: float = SKY_RADIUS_PIX) -> np.ndarray:
    """(N, B) robust sky sigma per stamp and band from the pixels at r >= radius_pix; NaN: not measurable."""
    x = masked_pixels(images, pixel_radius(images.shape[-1]) >= radius_pix).astype(np.float64)  # (N, B, P)
    out = np.full(x.shape[:2], np.nan)
    finite = np.isfinite(x)
    whole = finite.all(axis=-1)
    if whole.any():
        out[whole] = median_sigma(x[whole])[1]
    for n, b in zip(*np.nonzero(~whole)):  # bands with NaN pixels: the finite ones, when enough
        v = x[n, b][finite[n, b]]
        if len(v) >= MIN_SKY_PIXELS:
            out[n, b] = median_sigma(v)[1]
    out[~(out > 0)] = np.nan  # a flat (or empty) band has no measurable noise
    return out


@dataclass
class NoiseBins:
    """Lenses grouped by noise: `bin` (N,) index (-1: noise not measurable), `target` (K, B) noise per bin."""

    bin: np.ndarray
    target: np.ndarray
    ratio: np.ndarray  # (N,) median over bands of sigma_lens / sigma_controls (nan: not measurable)
    control_sigma: np.ndarray  # (B,) the controls' median noise

    def below(self) -> list[tuple[int, int]]:
        """(bin, band) pairs whose target lies below the controls' own noise: no noise added there."""
        return [(k, b) for k, b in zip(*np.nonzero(self.target < BELOW_TOLERANCE * self.control_sigma))]


def noise_bins(lens_sigma: np.ndarray, control_sigma: np.ndarray, n_bins: int, min_per_bin: int = 1) -> NoiseBins:
    """Quantile bins (at most `n_bins`, each holding >= `min_per_bin` lenses where there are that many) of the
    lenses' noise ratio to the controls."""
    lens_sigma = np.asarray(lens_sigma, np.float64)
    ctrl = np.asarray(control_sigma, np.float64)
    ok = np.isfinite(lens_sigma).all(axis=1)
    ratio = np.full(len(lens_sigma), np.nan)
    ratio[ok] = np.median(lens_sigma[ok] / ctrl, axis=1)
    b = np.full(len(lens_sigma), -1)
    if not ok.any():
        return NoiseBins(b, np.zeros((0, len(ctrl))), ratio, ctrl)
    order = np.flatnonzero(ok)[np.argsort(ratio[ok], kind="stable")]
    parts = [p for p in np.array_split(order, max(1, min(n_bins, len(order) // max(min_per_bin, 1)))) if len(p)]
    for k, p in enumerate(parts):
        b[p] = k
    target = np.stack([np.median(lens_sigma[p], axis=0) for p in parts])
    return NoiseBins(b, target, ratio, ctrl)


def renoise(images: np.ndarray, own_sigma: np.ndarray, target: np.ndarray, rng: np.random.Generator,
            lag1=None) -> np.ndarray:
    """Copy of `images` (N, B, H, W) with correlated Gaussian noise added so that each stamp's sky noise per
    band becomes `target` ((B,), or (N, B) per stamp): sigma_add = sqrt(max(target^2 - own^2, 0)) (own: (N, B),
    its measured noise; NaN counts as 0)."""
    from darkhaloscope.sim.observing import correlated_noise

    lag1 = default_lag1() if lag1 is None else lag1
    own = np.nan_to_num(np.asarray(own_sigma, np.float64), nan=0.0)
    target = np.broadcast_to(np.asarray(target, np.float64), own.shape)
    add = np.sqrt(np.clip(target ** 2 - own ** 2, 0.0, None))  # (N, B)
    out = np.array(images, np.float32, copy=True)
    for i in range(len(out)):
        if add[i].any():
            out[i] += correlated_noise(rng, add[i], out[i].shape, lag1).astype(np.float32)
    return out


@dataclass
class RecallCell:
    """k of n found, with the Wilson 95% interval; `resolvable` False: the FPR allows no false positive on
    these controls, so no recall is quoted there."""

    found: int
    n: int
    lo: float
    hi: float
    resolvable: bool = True
    extra: dict = field(default_factory=dict)  # threshold, achieved FPR, controls: whatever set the point

    @property
    def recall(self) -> float | None:
        return self.found / self.n if self.n else None

    def text(self) -> str:
        if not self.resolvable:
            return "not resolvable"
        return f"{self.found}/{self.n} = {self.recall:.0%} [{self.lo:.0%}, {self.hi:.0%}]" if self.n else "none"

    def as_dict(self) -> dict:
        return {"recall": self.recall if self.resolvable else None, "found": self.found, "n": self.n,
                "ci95": [self.lo, self.hi], "resolvable": self.resolvable, **self.extra}


def recall_cell(hit: np.ndarray, resolvable: bool = True, **extra) -> RecallCell:
    hit = np.asarray(hit, bool)
    k, n = int(hit.sum()), int(hit.size)
    lo, hi = M.wilson_interval(np.array([k]), np.array([max(n, 1)]))
    return RecallCell(k, n, float(lo[0]) if n else float("nan"), float(hi[0]) if n else float("nan"),
                      resolvable, dict(extra))


def recall_table(groups: dict[str, np.ndarray], hits: dict[str, np.ndarray],
                 resolvable: dict[str, bool] | None = None,
                 extra: dict[str, dict] | None = None) -> dict[str, dict[str, RecallCell]]:
    """{group: {operating point: RecallCell}} of lenses `groups` (masks over the lenses) under `hits`
    ({operating point: (N,) bool found})."""
    resolvable, extra = resolvable or {}, extra or {}
    return {g: {op: recall_cell(hit[sel], resolvable.get(op, True), **extra.get(op, {})) for op, hit in hits.items()}
            for g, sel in groups.items()}


@dataclass
class NoiseMatched:
    """What `noise_matched` measured: per lens its bin and threshold per FPR, and whether it is found."""

    bins: NoiseBins
    fprs: list[float]
    threshold: dict[float, np.ndarray]  # fpr -> (N,) the lens's bin threshold (nan: noise not measurable)
    found: dict[float, np.ndarray]  # fpr -> (N,) bool
    resolvable: dict[float, bool]  # fpr -> every bin has >= 1/fpr controls
    n_controls: int
    achieved_sigma: np.ndarray  # (K, B) median noise of the re-noised controls per bin (should equal target)
    seed: int
    control_values: list[np.ndarray] = field(default_factory=list)  # per bin: the re-noised controls' values
    #   (the same control stamps in every bin, in one order: what a paired bootstrap resamples)

    @property
    def measured(self) -> np.ndarray:
        return self.bins.bin >= 0


def noise_matched(lens_values: np.ndarray, lens_sigma: np.ndarray, control_images: np.ndarray,
                  score_fn: Callable[[np.ndarray], np.ndarray], fprs, *, n_bins: int = 4, min_per_bin: int = 1,
                  seed: int = 0, lag1=None) -> NoiseMatched:
    """Thresholds on the controls brought to each lens's noise (see the module docstring)."""
    ctrl_sigma = sky_sigma(control_images)
    bins = noise_bins(lens_sigma, np.nanmedian(ctrl_sigma, axis=0), n_bins, min_per_bin)
    n = len(lens_values)
    thr = {f: np.full(n, np.nan) for f in fprs}
    achieved = np.zeros_like(bins.target)
    per_bin = []
    for k, target in enumerate(bins.target):
        noisy = renoise(control_images, ctrl_sigma, target, np.random.default_rng([seed, k]), lag1)
        achieved[k] = np.nanmedian(sky_sigma(noisy), axis=0)
        values = np.asarray(score_fn(noisy), np.float64)
        per_bin.append(values)
        for f in fprs:
            thr[f][bins.bin == k] = M.control_threshold(values, f)[0]
    lv = np.asarray(lens_values, np.float64)
    found = {f: (bins.bin >= 0) & (lv > np.nan_to_num(thr[f], nan=np.inf)) for f in fprs}
    resolvable = {f: len(control_images) * f >= 1 for f in fprs}
    return NoiseMatched(bins, list(fprs), thr, found, resolvable, len(control_images), achieved, seed, per_bin)
