"""The review's batch-composition check: random batches scatter as binomial draws, class-sorted ones ~n times more."""

import numpy as np
import pytest

from darkhaloscope.errors import UsageError
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.review.sanity import composition_dispersion


def test_random_batches_scatter_like_binomial_draws():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([0, 1], 1600))
    shares = [labels[i:i + 32].mean() for i in range(0, 3200, 32)]
    assert 0.6 < composition_dispersion(shares, 32) < 1.4  # sd ~ sqrt(2/100) = 0.14 around 1


def test_class_sorted_batches_are_flagged():
    shares = [1.0] * 50 + [0.0] * 50  # the loader read one class after the other
    ratio = composition_dispersion(shares, 32)
    assert ratio == pytest.approx(32 * 100 / 99)  # n x (sample variance of a 50/50 split: 0.25 * 100/99 / 0.25)
    assert ratio > ReviewConfig().max_batch_dispersion


def test_one_class_or_one_batch_is_undefined():
    assert np.isnan(composition_dispersion([1.0, 1.0], 16)) and np.isnan(composition_dispersion([0.5], 16))


def test_dispersion_bound_must_exceed_random():
    with pytest.raises(UsageError, match="max_batch_dispersion"):
        ReviewConfig(max_batch_dispersion=1.0).validate()
