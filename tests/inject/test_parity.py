"""The torch engine against the numpy reference on identical parameters: same draws (seeded per row), so
the same lenses, hosts and noise; pixels and columns agree to float32 precision."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.inject.arcs import render_lensed, source_batch
from darkhaloscope.inject.engine import TorchEngine
from darkhaloscope.inject.hosts import paint_hosts
from darkhaloscope.inject.profiles import lens_tensors
from darkhaloscope.sim.build import SimContext, make_plan
from darkhaloscope.sim.hosts import draw_synthetic_host, paint_synthetic_host
from darkhaloscope.sim.inject import render_clumpy_source
from darkhaloscope.sim.params import draw_lens, draw_source, grid_points, parse_grid, parse_snr_dist, parse_theta_e_dist
from darkhaloscope.sim.render import render_row
from darkhaloscope.sim.simconfig import SimConfig


def _corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_lensed_clumpy_sources_match_the_numpy_engine():
    cfg = SimConfig(src_second_prob=0.5)
    rng = np.random.default_rng(3)
    theta_e = parse_theta_e_dist(cfg.theta_e_dist, cfg.theta_e_arcsec)[0]
    draws = []
    for _ in range(12):
        lens = draw_lens(rng, cfg, {}, 0.3, theta_e)
        draws.append((lens, *draw_source(rng, cfg, {}, lens.theta_e_arcsec)))
    assert any(len(d[1]) == 2 for d in draws) and len({len(d[2]) for d in draws}) > 1
    body, knots = render_lensed(lens_tensors([d[0] for d in draws], "cpu"), source_batch(draws, "cpu"), ss=4)
    for k, (lens, sources, kn) in enumerate(draws):
        ref_body, ref_knots = render_clumpy_source(lens, sources, kn, ss=4)
        for ref, got in ((ref_body, body[k]), (ref_knots, knots[k])):
            got = got.double().numpy()
            assert got.sum() == pytest.approx(ref.sum(), rel=1e-3)  # magnification (unit flux)
            assert _corr(ref, got) >= 0.999


def test_synthetic_hosts_match_the_numpy_engine():
    cfg = SimConfig(neighbours_mean=2.0, stars_mean=1.0)
    hosts = [draw_synthetic_host(np.random.default_rng([5, 1, h]), cfg) for h in range(12)]
    assert any(h.stars for h in hosts) and any(h.neighbours for h in hosts)
    got = paint_hosts(hosts, "cpu").double().numpy()
    for k, h in enumerate(hosts):
        ref = paint_synthetic_host(h)
        np.testing.assert_allclose(got[k].sum(axis=(1, 2)), ref.sum(axis=(1, 2)), rtol=1e-3)
        assert _corr(ref, got[k]) >= 0.999


RECIPES = {"default": {}, "snr target, paired": {"arc_snr_dist": "loguniform:3:50", "pair": True},
           "grid": {"grid": "theta_e=1.0,2.0 src_dmag=1,2", "arc_snr_dist": "none"}}


@pytest.mark.parametrize("recipe", ["default"] + [pytest.param(r, marks=pytest.mark.slow) for r in list(RECIPES)[1:]])
def test_whole_rows_match_the_numpy_engine(recipe):
    """Same seed, same rows: every column within 1e-4 (relative), every stamp (arc, host, look-alike, noise)
    correlated >= 0.999 with the reference; the injected light's summed flux within 1e-3."""
    cfg = SimConfig(**RECIPES[recipe])
    ctx = SimContext(cfg, 7, make_plan(16, 7, cfg), None, grid_points(parse_grid(cfg.grid)),
                     parse_snr_dist(cfg.arc_snr_dist))
    got = TorchEngine("cpu", batch_rows=8).render_rows(ctx, range(16))
    kinds = set()
    for i, res in enumerate(got):
        ref = render_row(ctx, i, keep_ctrl=True)
        assert res.columns.keys() == ref.columns.keys()
        for k, v in ref.columns.items():
            if isinstance(v, float):
                assert res.columns[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (i, k)
            else:
                assert res.columns[k] == v, (i, k)
        assert res.image.dtype == np.float32 and res.image.shape == ref.image.shape
        assert _corr(ref.image, res.image) >= 0.999
        kinds.add(ref.columns.get("confuser_kind", "arc") or "plain")
        if not ref.columns["is_control"]:
            assert (res.ctrl_image is not None) == cfg.pair
            if cfg.photon_noise is False or res.ctrl_image is None:
                continue
            arc_ref, arc_got = ref.image - ref.ctrl_image, res.image - res.ctrl_image
            assert _corr(arc_ref, arc_got) >= 0.999
            assert arc_got.sum() == pytest.approx(arc_ref.sum(), rel=1e-3)
    assert {"arc", "plain"} <= kinds


def test_noiseless_arc_flux_and_einstein_radius_match_the_numpy_engine():
    cfg = SimConfig(photon_noise=False, pair=True, confusers=0.0, grid="theta_e=0.8,1.6,2.4")
    ctx = SimContext(cfg, 2, make_plan(12, 2, cfg), None, grid_points(parse_grid(cfg.grid)), None)
    inj = [int(i) for i in np.flatnonzero(ctx.plan.is_control == 0)]
    got = TorchEngine("cpu").render_rows(ctx, inj)
    for i, res in zip(inj, got):
        ref = render_row(ctx, i)
        assert res.columns["theta_e_arcsec"] == ref.columns["theta_e_arcsec"]
        arc_ref = ref.image.astype(np.float64) - ref.ctrl_image
        arc_got = res.image.astype(np.float64) - res.ctrl_image
        assert arc_got.sum() == pytest.approx(arc_ref.sum(), rel=1e-3)
        assert _corr(arc_ref, arc_got) >= 0.999
        assert res.columns["magnification"] == pytest.approx(ref.columns["magnification"], rel=1e-3)
