"""Simulated lenses at the real lenses' depth (evaluate.simdepth): the recall to expect, by bin and by arc S/N,
and the SIM-TO-REAL GAP warning."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.evaluate import noisematch as N
from darkhaloscope.evaluate.simdepth import render_sim_at_depth, sim_lenses_at_depth


def _central_flux(images):
    return images[:, 1, 29:35, 29:35].mean(axis=(1, 2)).astype(np.float64)  # r band, central 6x6 px


class _Section:
    def __init__(self):
        self.lines = []

    def text(self, *parts):
        self.lines.append("".join(str(p) for p in parts))


@pytest.fixture(scope="module")
def measured():
    """200 controls (sky 0.002 nmgy), 8 real lenses in two noise bins (as the controls, and 5x noisier), 60
    simulated lenses: 30 faint (a central blob of 0.002 nmgy per pixel, arc S/N 5) and 30 bright (0.02, S/N 30)."""
    rng = np.random.default_rng(0)
    ctrl = (rng.normal(0, 0.002, (200, 3, 64, 64))).astype(np.float32)
    lens_sigma = np.array([[0.002] * 3] * 4 + [[0.01] * 3] * 4)
    nm = N.noise_matched(np.ones(8), lens_sigma, ctrl, _central_flux, [0.05], n_bins=2, seed=3)
    sims = rng.normal(0, 0.002, (60, 3, 64, 64)).astype(np.float32)
    amp = np.r_[np.full(30, 0.002), np.full(30, 0.02)]
    sims[:, :, 28:36, 28:36] += amp[:, None, None, None].astype(np.float32)
    snr = np.r_[np.full(30, 5.0), np.full(30, 30.0)]
    return nm, sims, sim_lenses_at_depth(nm, sims, _central_flux, snr)


def test_faint_arcs_are_lost_at_the_noisier_depth_and_the_expectation_weights_the_bins(measured):
    nm, sims, sd = measured
    assert nm.bins.bin.tolist() == [0] * 4 + [1] * 4 and sd.weights.tolist() == [0.5, 0.5] and sd.n_sim == 60
    clean, noisy = sd.per_bin[0.05]
    assert clean == 1.0 and 0.45 <= noisy <= 0.6  # the bright half is still found 5x deeper in noise
    recall, lo, hi = sd.expected[0.05]
    assert recall == pytest.approx((clean + noisy) / 2) and lo < recall < hi
    faint, bright = sd.by_snr["arc S/N < 10"][0.05], sd.by_snr["arc S/N >= 10"][0.05]
    assert faint[3] == bright[3] == 30 and bright[0] == 1.0 and 0.45 <= faint[0] <= 0.6
    assert sd.summary() == f"{recall:.0%} at FPR 0.05"
    d = sd.as_dict()
    assert d["expected"]["0.05"]["recall"] == recall and d["by_arc_snr"]["arc S/N >= 10"]["0.05"]["n"] == 30
    again = sim_lenses_at_depth(nm, sims, _central_flux)  # seeded: the same figures; no S/N given: no S/N rows
    assert again.per_bin[0.05].tolist() == sd.per_bin[0.05].tolist() and again.by_snr == {}


@pytest.mark.parametrize("found,warned", [(0, True), (6, False)])
def test_gap_is_warned_only_when_real_recall_is_below_the_expected_interval(measured, found, warned):
    sd = measured[2]
    real = {"0.05": N.recall_cell(np.r_[np.ones(found, bool), np.zeros(8 - found, bool)])}
    sec, warnings = _Section(), []
    render_sim_at_depth(sec, sd, real, warnings, 8)
    assert "Simulated lenses at these real lenses' depths: 60 lenses" in sec.lines[0]
    assert "arc S/N < 10 (30)" in sec.lines[0] and f"real: {found}/8" in sec.lines[0]
    assert bool(warnings) == warned
    if warned:
        assert warnings[0].startswith("SIM-TO-REAL GAP: the 8 real lenses are found at 0%")


def test_off_and_bad_settings():
    from darkhaloscope.config import load_config
    from darkhaloscope.errors import UsageError
    from darkhaloscope.evaluate.config import EvaluateConfig

    assert load_config(EvaluateConfig, None, {"noise_match_sim_lenses": 0}).noise_match_sim_lenses == 0
    with pytest.raises(UsageError, match="noise_match_sim_lenses=-1: must be >= 0"):
        load_config(EvaluateConfig, None, {"noise_match_sim_lenses": -1})
