"""Confuser controls (`dhs simulate --confusers`): each kind rendered where it should be, recorded in
`confuser_kind`, never a model input, and as bright and as blue as the injected arcs."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import UsageError
from darkhaloscope.sim.build import SimContext, make_plan
from darkhaloscope.sim.confusers import CONFUSER_KINDS, kind_cycle, parse_kind_weights, parse_kinds, render_confuser
from darkhaloscope.sim.observing import pixel_sigma_nmgy
from darkhaloscope.sim.params import grid_points, parse_snr_dist
from darkhaloscope.sim.render import render_row
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, is_forbidden_input, pixel_radius

R_ARCSEC = pixel_radius() * PIXEL_SCALE_ARCSEC
SEEDS = range(12)


def _draws(kind: str):
    for s in SEEDS:
        body, knots, _ = render_confuser(np.random.default_rng([7, s]), kind)
        yield body, knots, body + knots


@pytest.mark.parametrize("kind", list(CONFUSER_KINDS))
def test_every_kind_has_unit_flux_inside_the_stamp(kind):
    for body, knots, img in _draws(kind):
        assert img.sum() == pytest.approx(1.0) and (img >= 0).all()
        assert img[R_ARCSEC < 6.0].sum() > 0.8  # the look-alike sits near the host, not at the edge


def test_ring_light_lies_on_a_ring_with_nothing_at_its_centre():
    for _, _, img in _draws("ring"):
        assert img[R_ARCSEC < 0.3].max() < 0.01 * img.max()  # only the host at the centre of the ring
        mean_r = (img * R_ARCSEC).sum()
        assert 0.4 < mean_r < 3.3  # (inclined: 0.5-1 axis ratio of a 0.8-3" ring)
        assert img[np.abs(R_ARCSEC - mean_r) < 1.0].sum() > 0.6  # concentrated in an annulus


def _variants(kind: str, n: int = 60) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for s in range(n):
        body, knots, variant = render_confuser(np.random.default_rng([9, s]), kind)
        out.setdefault(variant, []).append(body + knots)
    return out


@pytest.mark.parametrize("kind", list(CONFUSER_KINDS))
def test_every_variant_of_every_kind_is_drawn_and_named(kind):
    assert set(_variants(kind)) == set(CONFUSER_KINDS[kind].variants)


def _angular_cover(img, n: int = 12) -> float:
    """Share of n angular sectors about the centre holding at least 1/(10 n) of the light."""
    y, x = np.indices(img.shape) - img.shape[0] // 2
    sector = ((np.arctan2(y, x) + np.pi) / (2 * np.pi) * n).astype(int) % n
    per = np.bincount(sector.ravel(), weights=img.ravel(), minlength=n) / img.sum()
    return float((per > 1 / (10 * n)).mean())


def test_ring_variants_are_what_they_say():
    """Full rings go all the way round, partial ones leave a gap; a full round ring is round, an inclined one not."""
    v = _variants("ring", 120)
    assert min(_angular_cover(i) for i in v["full round"] + v["full inclined"]) == 1.0
    assert np.median([_angular_cover(i) for i in v["partial"]]) < 0.9
    assert min(_axis_ratio(i) for i in v["full round"]) > 0.7 > np.median([_axis_ratio(i) for i in v["full inclined"]])


def test_companion_variants_are_what_they_say():
    """A round companion or a tangential streak lies on one side of the host; an opposite pair on both."""
    def dipole(img):  # |light-weighted mean of exp(i angle)| off the centre: 1 all on one side, 0 balanced
        y, x = np.indices(img.shape) - img.shape[0] // 2
        w = img * (np.hypot(x, y) > 2)
        return abs((w * np.exp(1j * np.arctan2(y, x))).sum()) / w.sum()
    v = _variants("companion", 90)
    assert min(dipole(i) for i in v["round"] + v["tangential"]) > 0.8
    assert max(dipole(i) for i in v["opposite pair"]) < 0.65  # the second one 0.4-1x as bright, 180 +- 14 deg away
    assert np.median([_axis_ratio(i) for i in v["tangential"]]) < np.median([_axis_ratio(i) for i in v["round"]])


def test_companions_sit_1_to_4_arcsec_off_the_centre():
    for _, _, img in _draws("companion"):
        assert img[R_ARCSEC < 0.5].sum() < 0.15
        assert img[(R_ARCSEC > 0.5) & (R_ARCSEC < 5.5)].sum() > 0.8


def _axis_ratio(img):
    y, x = np.indices(img.shape)
    w = img / img.sum()
    cx, cy = (w * x).sum(), (w * y).sum()
    cov = np.cov(np.stack([x.ravel() - cx, y.ravel() - cy]), aweights=w.ravel() + 1e-300)
    lo, hi = np.linalg.eigvalsh(cov)
    return float(np.sqrt(lo / hi))


def test_disks_are_elongated():
    assert np.median([_axis_ratio(body) for body, _, _ in _draws("disk")]) < 0.45


def test_spiral_arms_are_point_symmetric_and_extended():
    for body, _, img in _draws("spiral"):
        sym = np.corrcoef(body[1:, 1:].ravel(), body[1:, 1:][::-1, ::-1].ravel())[0, 1]
        assert sym > 0.8  # two arms rotated by 180 deg (the knots are random)
        assert img[R_ARCSEC > 1.0].sum() > 0.3


def test_tidal_tails_leave_the_host_off_centre():
    for _, _, img in _draws("tidal"):
        assert img[R_ARCSEC < 0.4].sum() < 0.05
        assert (img * R_ARCSEC).sum() > 0.8


def _ctx(cfg, rows=120, seed=3):
    return SimContext(cfg, seed, make_plan(rows, seed, cfg), None, grid_points({}), parse_snr_dist(cfg.arc_snr_dist))


def test_plan_gives_the_fraction_of_controls_in_equal_kinds_and_never_injections():
    cfg = SimConfig(confusers=0.5)
    plan = make_plan(2000, 1, cfg)
    kinds = [plan.confuser_kind(i) for i in range(2000)]
    ctrl = plan.is_control == 1
    assert all(k is None for k, c in zip(kinds, ctrl) if not c)
    frac = np.mean([k is not None for k, c in zip(kinds, ctrl) if c])
    assert frac == pytest.approx(0.5, abs=0.01)
    counts = {k: kinds.count(k) for k in CONFUSER_KINDS}
    assert max(counts.values()) - min(counts.values()) <= 3  # (one per split at most)
    assert make_plan(2000, 1, SimConfig(confusers=0.0)).confuser_idx.max() == -1


def test_kind_shares_set_the_mix_and_equal_shares_plan_as_before():
    """`confuser_kinds=ring,spiral:3`: three spirals per ring among the look-alikes; shares of 1 (or none given)
    draw exactly the plan of the equal-share rule, so existing tiers and their digests do not change."""
    assert parse_kind_weights("ring, spiral:3") == (("ring", "spiral"), (1, 3))
    assert list(kind_cycle("ring,spiral:3")) == [0, 1, 1, 1] and list(kind_cycle("all")) == list(range(len(CONFUSER_KINDS)))
    plan = make_plan(2000, 1, SimConfig(confusers=0.5, confuser_kinds="ring,spiral:3,companion:2"))
    kinds = [plan.confuser_kind(i) for i in range(2000)]
    n = {k: kinds.count(k) for k in ("ring", "spiral", "companion")}
    assert abs(n["spiral"] - 3 * n["ring"]) <= 9 and abs(n["companion"] - 2 * n["ring"]) <= 6, n
    assert set(kinds) == {None, "ring", "spiral", "companion"}
    explicit = ",".join(f"{k}:1" for k in CONFUSER_KINDS)
    same = [make_plan(2000, 1, SimConfig(confusers=0.5, confuser_kinds=t)).confuser_idx for t in ("all", explicit)]
    assert np.array_equal(*same)


@pytest.mark.parametrize("text,words", [("spiral:0", "whole number from 1"), ("spiral:1.5", "whole number from 1"),
                                        ("spiral:", "whole number from 1"), ("spiral:101", "whole number from 1"),
                                        ("spiral:\u00b3", "whole number from 1"), ("spiral:-1", "whole number from 1"),
                                        ("ring,ring:2", "a kind is repeated"), ("halo:2", "unknown kind(s) 'halo'"),
                                        (":3", "unknown kind(s) ''")])
def test_bad_kind_shares_are_usage_errors(text, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        parse_kind_weights(text)


@pytest.mark.slow
def test_confuser_peak_sn_and_colours_overlap_the_arcs():
    """Confusers take a shadow arc's peak S/N and colours: same distributions as the injections'."""
    from scipy.stats import ks_2samp

    cfg = SimConfig(confusers=0.9, supersample=2, neighbours_mean=0, stars_mean=0)
    ctx = _ctx(cfg, rows=160)
    conf, arcs = [], []
    for i in range(160):
        res = render_row(ctx, i)
        if ctx.plan.is_control[i]:
            if ctx.plan.confuser_kind(i) is None:
                continue
            ctx.plan.confuser_idx[i] = -1  # the same row without its confuser: same host, same noise
            plain = render_row(ctx, i).image
            ctx.plan.confuser_idx[i] = 0
            light = res.image.astype(np.float64) - plain
            sigma_r = pixel_sigma_nmgy("r", res.columns["psfdepth_r"], res.columns["psf_fwhm_used_r"])
            conf.append((light[0].sum() / light[1].sum(), light[1].max() / sigma_r))
        else:
            arcs.append((10 ** (-0.4 * (res.columns["src_mag_g"] - res.columns["src_mag_r"])), res.columns["arc_snr"]))
    assert len(conf) > 40 and len(arcs) > 40
    # g/r flux ratio: the confusers' lies within the arcs' range (knots bluer, clipped to src_g_r)
    (gr_conf, sn_conf), (gr_arc, sn_arc) = np.array(conf).T, np.array(arcs).T
    assert ks_2samp(sn_conf, sn_arc).pvalue > 1e-3  # peak per-pixel r S/N: the same distribution
    assert gr_arc.min() - 0.05 < np.median(gr_conf) < gr_arc.max() + 0.05
    assert ks_2samp(gr_conf, gr_arc).pvalue > 1e-3


def test_tier_records_confuser_kind_and_it_is_never_a_model_input(tmp_path):
    assert main(["simulate", "--out", str(tmp_path), "--tier", "t", "--rows", "40", "--seed", "2", "-q",
                 "--workers", "1", "--supersample", "1", "--confusers", "0.5"]) == 0
    t = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "t").rglob("*.parquet"))]).to_pandas()
    ctrl = t[t.is_control == 1]
    assert t.loc[t.is_control == 0, "confuser_kind"].isna().all()
    assert set(ctrl.confuser_kind.dropna()) <= set(CONFUSER_KINDS) and ctrl.confuser_kind.notna().sum() >= 6
    assert (t.confuser_variant.isna() == t.confuser_kind.isna()).all()  # a variant exactly where a kind is
    assert all(v in CONFUSER_KINDS[k].variants for k, v in zip(ctrl.confuser_kind, ctrl.confuser_variant) if isinstance(k, str))
    assert is_forbidden_input("confuser_kind") and is_forbidden_input("confuser_variant")


def test_a_new_kind_is_declared_in_one_place(monkeypatch):
    """Issue #25 part 3: `@confuser(NAME, variants)` on a painter is all a new look-alike needs: the default
    `confuser_kinds=all` draws it, `--confuser_kinds` accepts it, its variant is named from the declaration."""
    import darkhaloscope.sim.confusers as confusers
    from darkhaloscope.sim.build import make_plan
    from darkhaloscope.sim.simconfig import SimConfig

    monkeypatch.setattr(confusers, "CONFUSER_KINDS", dict(CONFUSER_KINDS))

    @confusers.confuser("blob", variants=("small", "large"))
    def blob(rng, lay):
        lay.body[30:34, 30:34] = 1.0
        return 1

    assert parse_kinds("all") == (*CONFUSER_KINDS, "blob") and parse_kinds("blob,ring") == ("blob", "ring")
    assert render_confuser(np.random.default_rng(0), "blob")[2] == "large"
    plan = make_plan(60, 1, SimConfig(confusers=0.9), None)
    assert "blob" in plan.confuser_kinds and "blob" in {plan.confuser_kind(i) for i in range(60)} - {None}
    with pytest.raises(ValueError, match="registered twice"):
        confusers.confuser("blob", variants=("x",))(blob)
