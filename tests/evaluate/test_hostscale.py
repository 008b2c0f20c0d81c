"""The host-light probe: the same stamps with their host's smooth light scaled, scored again."""

import numpy as np
import pytest

from darkhaloscope.common.report.model import Section
from darkhaloscope.config import load_config
from darkhaloscope.errors import UsageError
from darkhaloscope.evaluate.config import EvaluateConfig
from darkhaloscope.evaluate.hostscale import host_scale_probe, render_host_scale
from darkhaloscope.stamps.hostlight import host_models
from darkhaloscope.stamps.schema import pixel_radius

SIGMA = 0.01


def _stamps(n: int = 240, seed: int = 0):
    """Hosts of random brightness on sky noise; the second half carry a faint ring at 8 px (the lenses)."""
    rng = np.random.default_rng(seed)
    r = pixel_radius(64)
    amp = 10 ** rng.uniform(-1.3, -0.3, n)
    x = (amp[:, None, None, None] * np.exp(-r / 3.0) + SIGMA * rng.normal(size=(n, 3, 64, 64))).astype(np.float32)
    y = (np.arange(n) >= n // 2).astype(int)
    x[y == 1] += (0.05 * np.exp(-0.5 * (r - 8.0) ** 2)).astype(np.float32)
    return x, y


RING = (pixel_radius(64) > 6) & (pixel_radius(64) < 10)


def brightness_scorer(x):  # a finder that takes central light for evidence (and sees the ring too)
    return x[:, :, 30:35, 30:35].mean(axis=(1, 2, 3)) / SIGMA + x[..., RING].mean(axis=(1, 2)) / SIGMA


def residual_scorer(x):  # a finder that looks at what is left when the smooth host is removed
    resid = x - host_models(x, np.full((len(x), 3), SIGMA))[0]
    return resid[..., RING].mean(axis=(1, 2)) / (0.1 * SIGMA)


def test_a_finder_that_scores_host_light_is_flagged():
    x, y = _stamps()
    res = host_scale_probe(x, y, brightness_scorer(x), brightness_scorer, [0.5, 2, 4], 400, 0)
    rows = {r["scale"]: r for r in res["rows"]}
    assert sorted(rows) == [0.5, 1.0, 2.0, 4.0] and res["n_controls"] == res["n_lenses"] == 120
    assert rows[1.0]["controls_above"] <= 0.01 and rows[1.0]["median_dlogit_controls"] == 0
    assert rows[2.0]["controls_above"] > 0.3 and rows[4.0]["controls_above"] > rows[2.0]["controls_above"]
    assert rows[0.5]["median_dlogit_controls"] < 0 < rows[2.0]["median_dlogit_controls"]
    sec, warnings = Section("probes", "Model probes"), []
    render_host_scale(sec, res, warnings)
    assert len(warnings) == 1 and warnings[0].startswith("HOST BRIGHTNESS: with their host's light x 4 (1.5 mag brighter)")


def test_a_finder_of_residual_light_is_not_flagged():
    x, y = _stamps()
    s = residual_scorer(x)
    res = host_scale_probe(x, y, s, residual_scorer, [0.5, 2, 4], 400, 0)
    for r in res["rows"]:
        assert r["controls_above"] < 0.02 and r["recall"] > 0.95, r
        assert abs(r["median_dlogit_controls"]) < 1
    warnings = []
    render_host_scale(Section("probes", "Model probes"), res, warnings)
    assert warnings == []


def test_no_scales_or_one_class_means_no_probe_and_says_so():
    x, y = _stamps(40)
    assert host_scale_probe(x, y, residual_scorer(x), residual_scorer, [], 40, 0) is None
    assert host_scale_probe(x, np.zeros(40, int), residual_scorer(x), residual_scorer, [2], 40, 0) is None
    sec = Section("probes", "Model probes")
    render_host_scale(sec, None, [])
    assert "not run" in str(sec.blocks)


@pytest.mark.parametrize("over", [{"host_scales": "0,2"}, {"host_scales": "2,1000"}, {"host_probe_rows": "1"}])
def test_bad_probe_settings_are_usage_errors(over):
    with pytest.raises(UsageError, match="host_scales"):
        load_config(EvaluateConfig, None, over)


def test_look_alikes_stay_out_of_the_controls_when_marked():
    x, y = _stamps()
    plain = np.ones(len(y), bool)
    plain[:60] = False  # the first 60 controls carry look-alikes
    res = host_scale_probe(x, y, brightness_scorer(x), brightness_scorer, [2], 400, 0, plain)
    assert res["n_controls"] == 60 and res["controls"] == "without look-alikes"
    sec = Section("probes", "Model probes")
    render_host_scale(sec, res, [])
    assert "controls (without look-alikes)" in str(sec.blocks)
