"""Model-probe building blocks on toy inputs: core masking, occlusion maps, gallery choice."""

from __future__ import annotations

import numpy as np

from darkhaloscope.evaluate.probes import _model_scorer, mask_core, occlusion_maps, sky_stats
from darkhaloscope.stamps.schema import pixel_radius


def _stamps(n=3, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.01, 0.003, (n, 3, 64, 64)).astype(np.float32)
    img[:, :, 30:34, 30:34] += 1.0  # bright core
    return img


def test_mask_core_replaces_only_the_core_with_sky_noise():
    img = _stamps()
    out = mask_core(img, 4.0, np.random.default_rng(1))
    core = pixel_radius(64) < 4.0
    assert np.array_equal(out[..., ~core], img[..., ~core])
    med, sigma = sky_stats(img)
    assert np.allclose(out[..., core].mean(-1), med, atol=4 * sigma.max() / np.sqrt(core.sum()))
    assert abs(out[..., core].std() - sigma.mean()) < 0.2 * sigma.mean()


def test_occlusion_map_peaks_where_the_score_looks():
    img = _stamps(2)

    def score_fn(x):  # a "model" whose logit is the flux in a box at (y 40-47, x 16-23)
        return x[:, 1, 40:48, 16:24].sum(axis=(1, 2)) * 10 - 5

    img[:, 1, 40:48, 16:24] += 0.05
    maps = occlusion_maps(score_fn, img, patch=8, stride=8, rng=np.random.default_rng(0))
    assert maps.shape == (2, 64, 64)
    for m in maps:
        y, x = np.unravel_index(np.argmax(m), m.shape)
        assert 40 <= y < 48 and 16 <= x < 24
        assert m[40:48, 16:24].mean() > 10 * np.abs(m[:32, 32:]).mean()


def test_coalesce_merges_small_batches_keeping_order_errors_and_unknown_labels():
    import pyarrow as pa

    from darkhaloscope.score.infer import _labels_array, coalesce
    from darkhaloscope.score.sources import SourceBatch

    def sb(n, start, labels, err=None):
        return SourceBatch(np.full((n, 3, 64, 64), start, np.float32), np.ones(n, bool), err or {}, labels,
                           pa.table({"k": np.arange(start, start + n)}), [f"f{start}"] * n, np.arange(n))
    parts = [sb(3, 0, np.array([1, 0, 1], np.int8)), sb(2, 3, None, {1: "bad"}), sb(4, 5, np.zeros(4, np.int8))]
    out = list(coalesce(iter(parts), 5))
    assert [len(b.valid) for b in out] == [5, 4]
    m = out[0]
    assert m.meta["k"].to_pylist() == [0, 1, 2, 3, 4] and m.errors == {4: "bad"}
    assert _labels_array(m.labels, 5).to_pylist() == [1, 0, 1, None, None]
    assert m.images[3, 0, 0, 0] == 3 and m.source_file[3] == "f3"


def test_occlusion_wording_matches_the_figure(tmp_path, monkeypatch):
    """#13: the report said 'bright = the model relies on that region' while the maps are drawn red/blue."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tierfactory import make_tier

    from darkhaloscope.evaluate import plots, probes
    from darkhaloscope.evaluate.analysis import rank_values
    from darkhaloscope.evaluate.config import EvaluateConfig
    from darkhaloscope.evaluate.report import Evaluation
    from darkhaloscope.score.scoresfile import METADATA_KEY, read_scores
    from darkhaloscope.score.sources import open_source

    tier = make_tier(tmp_path / "tier", rows_per_split=8, files_per_split=1, splits=("test",))
    rows = [(f, int(r), int(lab)) for b in open_source(str(tier)).batches()
            for f, r, lab in zip(b.source_file, b.source_row, b.labels)]
    logit = np.linspace(-2, 2, len(rows))
    t = pa.table({"score": 1 / (1 + np.exp(-logit)), "logit": logit, "label": [r[2] for r in rows],
                  "row_id": [f"id{k}" for k in range(len(rows))], "source_file": [r[0] for r in rows],
                  "source_row": [r[1] for r in rows], "region_split": ["test"] * len(rows)})
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: json.dumps({"data": str(tier)}).encode()}),
                   tmp_path / "s.parquet")
    scores = read_scores(tmp_path / "s.parquet")
    titles = []
    monkeypatch.setattr(probes, "_model_scorer", lambda ckpt, s3: lambda imgs: imgs[:, 1].mean(axis=(1, 2)) * 100)
    monkeypatch.setattr(probes, "probe_section", lambda *a, **k: None)
    import matplotlib.figure
    orig = matplotlib.figure.Figure.suptitle
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **k: titles.append(t) or orig(self, t, **k))
    ev, cfg = Evaluation(), EvaluateConfig(gallery_size=2)
    ranked = rank_values(scores)
    source, reason = probes.resolve_source(scores, None, True, None, "ckpt")
    probes.run_data_sections(scores, ranked, 0.0, cfg, ev, tmp_path / "fig", source=source, reason=reason,
                             checkpoint="ckpt", s3=None)
    text = " ".join(b.plain() for s in ev.sections for b in s.blocks if hasattr(b, "plain"))
    assert plots.OCCLUSION_LEGEND in text and "bright =" not in text
    assert titles and all(plots.OCCLUSION_LEGEND in " ".join(t.split()) for t in titles)  # titles wrap to fit
    assert plots.OCCLUSION_LEGEND.startswith("red = ")


def test_gallery_shows_data_captions_verbatim_even_with_dollar_signs(tmp_path):
    """A stamp id or kind from a tier is data: '$\\frac{$' or '$\\nosuchcmd$' must not reach matplotlib's
    mathtext parser (it raises on them) and must be drawn as written."""
    from darkhaloscope.evaluate import plots

    stamps = np.random.default_rng(0).normal(0, 1e-3, (2, 3, 64, 64)).astype(np.float32)
    hostile = ["p=0.9 ring $\\frac{$", "p=0.8 $\\nosuchcmd$ id"]
    out = plots.gallery(stamps, hostile, "Hostile captions", tmp_path / "g.png")
    assert out.exists() and out.stat().st_size > 1000


def test_model_scorer_of_a_committee_is_the_mean_member_logit(demo, second):
    """The noise-matched operating points of a committee re-score controls with every member: the mean logit,
    as `dhs score` combines them."""
    images = (np.random.default_rng(0).normal(0, 0.003, (5, 3, 64, 64))).astype(np.float32)
    one, two = _model_scorer(str(demo["checkpoint"]), None)(images), _model_scorer(str(second), None)(images)
    both = _model_scorer([str(demo["checkpoint"]), str(second)], None)(images)
    assert not np.allclose(one, two)
    np.testing.assert_allclose(both, (one + two) / 2, rtol=1e-6, atol=1e-6)
