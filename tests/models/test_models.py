"""Every registered model: forward/backward on a (B, 3, 64, 64) batch, logits of shape (B,); registry errors."""

import math

import pytest
import torch

from darkhaloscope.errors import RefusedError, UsageError
from darkhaloscope.models import count_params, create_model, forward_flops, list_models, register_model


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = model(x)
    assert y.shape == (4,) and torch.isfinite(y).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(y, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # a fresh head gives logits near 0: initial BCE loss near ln 2, as the training guard expects
    assert abs(loss.item() - math.log(2)) < 0.5


def test_documented_sizes_and_flops():
    """The table in models/nets.py: params and forward GFLOPs per 64x64 stamp."""
    expected = {"resnet18": (11.17e6, 4.44e9), "resnet18_s2": (11.17e6, 1.11e9), "small_cnn": (0.079e6, 0.0295e9)}
    for name, (params, flops) in expected.items():
        m = create_model(name)
        assert count_params(m) == pytest.approx(params, rel=0.01)
        assert forward_flops(m) == pytest.approx(flops, rel=0.01)
    # the strided stem is 4x cheaper
    assert forward_flops(create_model("resnet18")) / forward_flops(create_model("resnet18_s2")) == pytest.approx(4, rel=0.01)


def test_unknown_model_lists_names():
    with pytest.raises(UsageError, match="unknown model 'resnet50'.*resnet18"):
        create_model("resnet50")


def test_bad_builder_argument_is_a_usage_error():
    with pytest.raises(UsageError, match="small_cnn"):
        create_model("small_cnn", depth=7)


def test_metadata_inputs_allowed_and_forbidden():
    m = create_model("small_cnn", meta_columns=["psfdepth_r", "psf_fwhm_used_r"])
    y = m(torch.randn(2, 3, 64, 64), torch.randn(2, 2))
    assert y.shape == (2,)
    y.sum().backward()
    with pytest.raises(UsageError, match=r"shape \(B, 2\)"):
        m(torch.randn(2, 3, 64, 64))
    for bad in (["theta_e_arcsec"], ["psfdepth_r", "arc_snr"], ["is_control"], ["src_mag_r"]):
        with pytest.raises(RefusedError, match="leak"):
            create_model("small_cnn", meta_columns=bad)


def test_register_twice_refused():
    with pytest.raises(ValueError, match="twice"):
        @register_model
        def small_cnn():  # noqa: F811
            return None
