"""The schema contract: the one label mapping, never-a-model-input columns, the stamp centre."""

import numpy as np
import pyarrow as pa
import pytest

from darkhaloscope.errors import DataError, RefusedError
from darkhaloscope.stamps.schema import check_model_inputs, is_forbidden_input, label_from_is_control, masked_pixels, pixel_radius


def test_label_mapping():
    assert label_from_is_control([1, 0, 0, 1]).tolist() == [0, 1, 1, 0]
    with pytest.raises(DataError, match="row 1 has 2"):
        label_from_is_control([0, 2])
    assert label_from_is_control(np.array([1.0, 0.0])).tolist() == [0, 1]  # whole floats are labels
    for frac in ([0.0, 1.5], [0.0, 0.25]):  # truncated to 1 / 0 before: a fractional is_control became a label
        with pytest.raises(DataError, match=f"row 1 has {frac[1]}"):
            label_from_is_control(pa.array(frac))


def test_injection_metadata_is_never_a_model_input():
    assert all(is_forbidden_input(c) for c in ("arc_snr", "theta_e_arcsec", "src_dmag", "is_control", "label"))
    assert not is_forbidden_input("psf_fwhm_used_r")
    with pytest.raises(RefusedError, match="arc_snr"):
        check_model_inputs(["psfdepth_r", "arc_snr"])


def test_stamp_centre_is_pixel_32():
    r = pixel_radius(64)
    assert r[32, 32] == 0 and r[32, 36] == 4 and r[0, 0] == pytest.approx(np.hypot(32, 32))


def test_masked_pixels_equals_boolean_indexing_in_values_and_order():
    x = np.random.default_rng(0).normal(size=(5, 3, 64, 64)).astype(np.float32)
    x[1, 2, 0, 0] = np.nan
    mask = pixel_radius(64) >= 20
    want = x[..., mask]
    got = masked_pixels(x, mask)
    assert got.shape == want.shape == (5, 3, int(mask.sum())) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # NaN in the same place
    np.testing.assert_array_equal(masked_pixels(x[0, 0], mask), x[0, 0][mask])  # one (H, W) image
