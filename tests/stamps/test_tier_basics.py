"""Smoke tests of the core stamp layer (the stamps helper extends these)."""

import numpy as np

from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.stamps.counts import class_counts
from darkhaloscope.stamps.tier import open_tier


def test_open_hive_tier_by_split(tiny_tier):
    tier = open_tier(str(tiny_tier))
    assert tier.splits() == ["test", "train", "val"]
    assert tier.num_rows == 72
    rows = sum(b.table.num_rows for b in tier.iter_batches(["stamp_npz", "is_control"], split="val"))
    assert rows == 24
    b = next(tier.iter_batches(["stamp_npz", "is_control"], split="train"))
    sb = decode_tier_batch(b)
    assert sb.images.shape == (8, 3, 64, 64) and sb.images.dtype == np.float32
    assert set(sb.labels.tolist()) <= {0, 1}


def test_class_counts(tiny_tier):
    counts = class_counts(open_tier(str(tiny_tier)))
    assert counts == {s: {0: 12, 1: 12} for s in ("test", "train", "val")}
