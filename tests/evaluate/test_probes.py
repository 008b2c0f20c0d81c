"""Model-probe building blocks on toy inputs: core masking, occlusion maps, gallery choice."""

from __future__ import annotations

import numpy as np

from darkhaloscope.evaluate.probes import mask_core, occlusion_maps, sky_stats
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

    from darkhaloscope.evaluate.score import _labels_array, coalesce
    from darkhaloscope.evaluate.sources import SourceBatch

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
