"""The schema contract: the one label mapping, never-a-model-input columns, the stamp centre."""

import numpy as np
import pytest

from darkhaloscope.errors import DataError, RefusedError
from darkhaloscope.stamps.schema import check_model_inputs, is_forbidden_input, label_from_is_control, pixel_radius


def test_label_mapping():
    assert label_from_is_control([1, 0, 0, 1]).tolist() == [0, 1, 1, 0]
    with pytest.raises(DataError, match="row 1 has 2"):
        label_from_is_control([0, 2])


def test_injection_metadata_is_never_a_model_input():
    assert all(is_forbidden_input(c) for c in ("arc_snr", "theta_e_arcsec", "src_dmag", "is_control", "label"))
    assert not is_forbidden_input("psf_fwhm_used_r")
    with pytest.raises(RefusedError, match="arc_snr"):
        check_model_inputs(["psfdepth_r", "arc_snr"])


def test_stamp_centre_is_pixel_32():
    r = pixel_radius(64)
    assert r[32, 32] == 0 and r[32, 36] == 4 and r[0, 0] == pytest.approx(np.hypot(32, 32))
