"""The evaluated data's own simulated lenses at the real lenses' depth: what recall to expect of these real lenses
if they were like the simulations.

A finder trained on simulations that finds 6% of real lenses at their own depth may be failing on real arcs, or
the real lenses may be ones whose arcs no finder sees at that depth. `sim_lenses_at_depth` tells the two apart:
a seeded sample of the evaluated lenses (simulated injections, label 1) is brought to each real-lens noise bin of
the noise-matched figures (`evaluate.noisematch`: the same bins, targets and thresholds), scored by the same
model, and counted against that bin's threshold. Weighted by the real lenses per bin, that is the recall the
simulated lenses would have at the real lenses' depths ("expected"), beside the real recall; and the same by the
simulated arcs' peak r S/N at the data's own depth (`arc_snr`, when the data records it), which says which arcs
survive that depth. When the real recall's Wilson interval lies wholly below the expected one, the report warns
(SIM-TO-REAL GAP).

Cost: `noise_match_sim_lenses` stamps re-noised and scored per bin (400 x 4 bins: ~1,600 forward passes).
Exercise: `dhs evaluate SCORES --checkpoint CKPT --data DATA --known-lenses ../shared/data/ps1_sled_lenses`;
tests/evaluate/test_simdepth.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from darkhaloscope.evaluate.noisematch import NoiseMatched, renoise, sky_sigma

SNR_SPLIT = 10.0  # arcs of peak r S/N below / above this at the data's own depth are reported apart
Z95 = 1.959963984540054


@dataclass
class SimAtDepth:
    """Recall of the simulated lenses at the real lenses' depths, per FPR of the noise-matched figures."""

    n_sim: int  # simulated lenses re-noised (the same stamps in every bin)
    weights: np.ndarray  # (K,) share of the measured real lenses in each noise bin
    per_bin: dict[float, np.ndarray]  # fpr -> (K,) recall of the simulated lenses at bin k's noise and threshold
    expected: dict[float, tuple[float, float, float]]  # fpr -> (recall, lo, hi) weighted by the real lenses per bin
    by_snr: dict[str, dict[float, tuple[float, float, float, int]]] = field(default_factory=dict)  # group -> fpr
    #   -> (recall, lo, hi, n) for the arcs below / above SNR_SPLIT

    def summary(self, operating_point: str = "FPR") -> str:
        """'23% at FPR 0.01, 54% at FPR 0.1': the expected recall per FPR, for one-line summaries."""
        return ", ".join(f"{v[0]:.0%} at {operating_point} {f:g}" for f, v in self.expected.items())

    def as_dict(self) -> dict:
        f = lambda v: {"recall": v[0], "ci95": [v[1], v[2]], **({"n": v[3]} if len(v) > 3 else {})}  # noqa: E731
        return {"n_simulated": self.n_sim, "bin_weights": self.weights.tolist(),
                "per_bin": {f"{k:g}": v.tolist() for k, v in self.per_bin.items()},
                "expected": {f"{k:g}": f(v) for k, v in self.expected.items()},
                "by_arc_snr": {g: {f"{k:g}": f(v) for k, v in row.items()} for g, row in self.by_snr.items()}}


def _mean_interval(h: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-lens expected hits (each in [0, 1]) with a normal 95% interval, clipped to [0, 1]."""
    if len(h) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(h.mean())
    half = Z95 * float(h.std(ddof=1)) / np.sqrt(len(h)) if len(h) > 1 else 1.0
    return m, max(0.0, m - half), min(1.0, m + half)


def sim_lenses_at_depth(nm: NoiseMatched, sim_images: np.ndarray, score_fn: Callable[[np.ndarray], np.ndarray],
                        arc_snr: np.ndarray | None = None, *, lag1=None) -> SimAtDepth:
    """Score `sim_images` (simulated lenses, (N, B, H, W)) brought to each noise bin of `nm`; see the module doc."""
    measured = nm.bins.bin[nm.bins.bin >= 0]
    k_bins = len(nm.bins.target)
    weights = np.bincount(measured, minlength=k_bins) / max(len(measured), 1)
    own = sky_sigma(sim_images)
    hits = {f: np.zeros((len(sim_images), k_bins), bool) for f in nm.fprs}
    for k, target in enumerate(nm.bins.target):
        if weights[k] == 0:
            continue
        noisy = renoise(sim_images, own, target, np.random.default_rng([nm.seed, 7, k]), lag1)
        values = np.asarray(score_fn(noisy), np.float64)
        for f in nm.fprs:
            thr = nm.threshold[f][nm.bins.bin == k][0]
            hits[f][:, k] = values > thr
    per_bin = {f: h.mean(axis=0) for f, h in hits.items()}
    expected_hit = {f: h.astype(np.float64) @ weights for f, h in hits.items()}  # (N,) per simulated lens
    res = SimAtDepth(len(sim_images), weights, per_bin, {f: _mean_interval(h) for f, h in expected_hit.items()})
    if arc_snr is not None and np.isfinite(arc_snr).any():
        for name, sel in ((f"arc S/N < {SNR_SPLIT:g}", arc_snr < SNR_SPLIT), (f"arc S/N >= {SNR_SPLIT:g}",
                                                                              arc_snr >= SNR_SPLIT)):
            if sel.any():
                res.by_snr[name] = {f: (*_mean_interval(h[sel]), int(sel.sum())) for f, h in expected_hit.items()}
    return res


def render_sim_at_depth(sec, sd: SimAtDepth, real: dict, warnings: list[str], n_real: int) -> None:
    """The section's paragraph; `real`: fpr key -> RecallCell of all real lenses, noise-matched. SIM-TO-REAL GAP
    when, at the first resolvable FPR, the real recall's upper bound is below the expected recall's lower one."""
    pct = lambda v: f"{v[0]:.0%} [{v[1]:.0%}, {v[2]:.0%}]"  # noqa: E731
    parts = [f"FPR {f:g}: {pct(v)} (real: {real[f'{f:g}'].text()})" for f, v in sd.expected.items()]
    snr = "; ".join(f"{g} ({next(iter(row.values()))[3]}): " + ", ".join(f"{pct(v)} at FPR {f:g}"
                                                                        for f, v in row.items())
                    for g, row in sd.by_snr.items())
    sec.text(f"Simulated lenses at these real lenses' depths: {sd.n_sim} lenses of the evaluated data (a seeded "
             "sample), each brought to every noise bin above and scored against that bin's thresholds, weighted by "
             "the real lenses per bin. The recall to expect if the real lenses were like the simulated ones: "
             + "; ".join(parts) + "." + (f" By the simulated arcs' peak r S/N at the data's own depth: {snr}." if snr
                                         else "")
             + " A real recall far below it means real lenses unlike the simulations (arcs, hosts, or fainter arcs "
             "than the simulations make: the S/N rows show what survives at this depth).")
    for f, v in sd.expected.items():
        cell = real[f"{f:g}"]
        if not cell.resolvable or not cell.n:
            continue
        if cell.hi < v[1]:
            warnings.append(f"SIM-TO-REAL GAP: the {n_real} real lenses are found at {cell.recall:.0%} "
                            f"[{cell.lo:.0%}, {cell.hi:.0%}] at the noise-matched FPR {f:g}, simulated lenses brought "
                            f"to their depths at {pct(v)}: the simulations are not like these lenses (or these "
                            "lenses' arcs are fainter than the simulated ones; see the real-lens section)")
        break
