"""prepare_batch: annulus statistics ignore an injected arc, augmentation permutes pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darkhaloscope.errors import UsageError
from darkhaloscope.models.preprocess import MAD_TO_SIGMA, PreprocessConfig, dihedral, prepare_batch


def _sky(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Sky noise (sigma 0.002/0.003/0.008 nmgy in g/r/z) + a Gaussian host at the centre."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 64, 64, generator=g) * torch.tensor([0.002, 0.003, 0.008])[:, None, None]
    c = torch.arange(64.0) - 32
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return x + torch.tensor([0.02, 0.05, 0.08])[:, None, None] * torch.exp(-0.5 * r2 / 2.5**2)


def _arc(radius_px: float = 8.0) -> torch.Tensor:
    c = torch.arange(64.0) - 32
    r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    ring = torch.exp(-0.5 * (r - radius_px) ** 2) * (r < radius_px + 4)
    return torch.tensor([0.3, 0.3, 0.2])[:, None, None] * ring  # bright: moves whole-stamp statistics


def test_annulus_norm_ignores_an_arc_inside_r_in_but_stamp_norm_does_not():
    x = _sky()
    arc = _arc()
    off_arc = (arc == 0).expand_as(x)
    for norm, unchanged in (("annulus", True), ("stamp", False)):
        cfg = PreprocessConfig(norm=norm, clip_sigma=0)
        a, b = prepare_batch(x, cfg, train=False), prepare_batch(x + arc, cfg, train=False)
        same = torch.allclose(a[off_arc], b[off_arc], atol=1e-5)
        assert same is unchanged, norm


def test_normalisation_matches_hand_computed_median_and_mad():
    x = _sky(2)
    y = prepare_batch(x, PreprocessConfig(clip_sigma=0), train=False)
    c = np.arange(64) - 32
    ring = (np.hypot(c[:, None], c[None, :]) >= 20) & (np.hypot(c[:, None], c[None, :]) < 32)
    v = x[1, 2].numpy()[ring]
    med = np.sort(v)[(len(v) - 1) // 2]  # lower median
    dev = np.abs(v - med)
    mad = np.sort(dev)[(len(dev) - 1) // 2] * MAD_TO_SIGMA
    np.testing.assert_allclose(y[1, 2].numpy(), (x[1, 2].numpy() - med) / mad, rtol=1e-5, atol=1e-5)
    assert abs(float(np.median(y[1, 2].numpy()[ring]))) < 0.05


def test_float16_input_and_output_layout():
    x = _sky(3)
    y16 = prepare_batch(x.half(), PreprocessConfig(), train=False)
    y32 = prepare_batch(x.half().float(), PreprocessConfig(), train=False)
    assert y16.dtype == torch.float32 and y16.shape == (3, 3, 64, 64)
    assert y16.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y16, y32)
    aug = prepare_batch(x.half(), PreprocessConfig(), train=True, generator=torch.Generator().manual_seed(0))
    assert aug.dtype == torch.float32 and aug.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("norm", ["annulus", "stamp", "none"])
def test_the_input_batch_is_never_modified(norm):
    x = _sky(2)
    before = x.clone()
    prepare_batch(x, PreprocessConfig(norm=norm, per_band=norm != "stamp"), train=True)
    assert torch.equal(x, before)


def test_eval_is_deterministic_and_train_draws_from_the_generator():
    x = _sky(16)
    cfg = PreprocessConfig()
    assert torch.equal(prepare_batch(x, cfg, train=False), prepare_batch(x, cfg, train=False))
    a = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(1))
    b = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(1))
    c = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmentation_is_an_exact_pixel_permutation_and_covers_the_dihedral_group():
    """About the array centre: torch's flips and turns; about the host pixel (what training uses): the same
    element, rolled (modulo 64) so that pixel (32, 32) stays put."""
    x = torch.randn(8, 3, 64, 64)
    y, host = dihedral(x, torch.arange(8), centre="array"), dihedral(x, torch.arange(8))
    for e in range(8):
        ref = torch.rot90(x[e].flip(-1) if e >= 4 else x[e], e % 4, dims=(-2, -1))
        assert torch.equal(y[e], ref)
        assert torch.equal(y[e].flatten().sort().values, x[e].flatten().sort().values)  # pixel multiset kept
        pos = divmod(int(torch.rot90(torch.arange(4096).view(64, 64).flip(-1) if e >= 4 else torch.arange(4096).view(64, 64),
                                     e % 4, (0, 1)).flatten().tolist().index(32 * 64 + 32)), 64)
        assert torch.equal(host[e], ref.roll((32 - pos[0], 32 - pos[1]), dims=(-2, -1)))
        assert torch.equal(host[e][:, 32, 32], x[e][:, 32, 32])
    aug = prepare_batch(x, PreprocessConfig(norm="none"), train=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(aug.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)


def test_augmentation_about_the_host_keeps_every_distance_from_the_host():
    """Each element maps the pixel at offset (dy, dx) from the host to one at the same distance (the outermost
    row and column, 32 px out, wrap onto themselves); about the array centre the host itself moves by 1 px."""
    from darkhaloscope.stamps.schema import pixel_radius

    r = torch.from_numpy(pixel_radius(64)).float()[None, None].expand(8, 1, 64, 64)
    assert torch.equal(dihedral(r, torch.arange(8)), r)
    moved = dihedral(r, torch.arange(8), centre="array")[:, 0, 32, 32]
    assert (moved == 0).sum() == 2 and moved.max() == pytest.approx(2 ** 0.5)  # identity and one transpose keep it
    with pytest.raises(UsageError, match="host, array"):
        dihedral(r, torch.arange(8), centre="middle")


def test_pooled_bands_clip_constant_stamp_and_none():
    x = _sky(2)
    x[1] = 0.25  # constant stamp: MAD 0 -> only median-subtracted, no division by zero
    y = prepare_batch(x, PreprocessConfig(per_band=False, clip_sigma=3), train=False)
    assert torch.isfinite(y).all() and y.abs().max() <= 3
    assert torch.equal(y[1], torch.zeros(3, 64, 64))
    assert torch.equal(prepare_batch(x, PreprocessConfig(norm="none"), train=False), x)


def test_asinh_stretch_keeps_an_arc_on_a_bright_host_that_the_clip_flattens():
    c = torch.arange(64.0) - 32
    x = _sky(2) + 9 * torch.tensor([0.02, 0.05, 0.08])[:, None, None] * torch.exp(
        -0.5 * (c[:, None] ** 2 + c[None, :] ** 2) / 2.5**2)  # hosts 10x brighter than _sky's
    x[1] += _arc(4.0) * 0.2  # an arc at 4 px, on the host's wing where it is 17-70 sigma
    clip = prepare_batch(x, PreprocessConfig(clip_sigma=10), train=False)
    soft = prepare_batch(x, PreprocessConfig(clip_sigma=10, stretch="asinh"), train=False)
    on_arc = (slice(None), 32, 36)
    assert torch.equal(clip[0][on_arc], clip[1][on_arc])  # both at the plateau: the arc is gone
    assert (soft[1][on_arc] > soft[0][on_arc] + 1).all()  # the arc still adds contrast
    faint = clip.abs() < 1  # below clip_sigma both are near-linear: asinh(z/10)*10 = z (1 - z^2/600 ...)
    assert torch.allclose(clip[faint], soft[faint], atol=2e-3)
    assert soft.max() < 10 * np.arcsinh(100.0) and torch.isfinite(soft).all()


@pytest.mark.parametrize("kw", [{"norm": "minmax"}, {"annulus_r_in_px": 40.0}, {"clip_sigma": -1.0},
                                {"host_light": "remove"}, {"stretch": "log"},
                                {"annulus_r_in_px": 46.0, "annulus_r_out_px": 60.0}])
def test_bad_config_is_a_usage_error(kw):
    with pytest.raises(UsageError):
        cfg = PreprocessConfig(**kw)
        cfg.validate()
        prepare_batch(_sky(1), cfg, train=False)


@pytest.mark.parametrize("k", [1960, 1961])
def test_cpu_median_picks_the_same_element_as_torch_median_used_on_gpus(k):
    from darkhaloscope.models.preprocess import _lower_median

    v = torch.randn(6, 3, k, generator=torch.Generator().manual_seed(k))
    assert torch.equal(_lower_median(v), v.median(dim=-1, keepdim=True).values)


def test_norm_choices_of_the_torch_free_config_match_the_transform():
    from darkhaloscope.models.preprocess import NORMALISATIONS
    from darkhaloscope.stamps.normalise import NORM_CHOICES

    assert tuple(NORMALISATIONS) == NORM_CHOICES


def test_host_light_view_is_the_same_transform_at_training_and_scoring_time():
    """host_light=subtract: the stamp minus its host model (stamps.hostlight), then the usual normalisation; training
    differs only by the dihedral element (the model commutes with it: the fit is about the host pixel)."""
    from darkhaloscope.models.preprocess import robust_stats, subtract_host_light
    from darkhaloscope.stamps.hostlight import host_models

    x = _sky(4) + _arc() * 0.05  # a faint arc on the Gaussian host
    cfg = PreprocessConfig(host_light="subtract")
    assert PreprocessConfig().host_light == "keep"
    scored = prepare_batch(x, cfg, train=False)
    assert torch.equal(scored, prepare_batch(x, cfg, train=False))  # deterministic
    sigma = robust_stats(x, _annulus(), True)[1]  # the annulus noise, as prepare_batch measures it
    model = torch.from_numpy(host_models(x.numpy(), sigma.reshape(4, 3).numpy())[0])
    by_hand = prepare_batch(x - model, PreprocessConfig(), train=False)
    assert torch.allclose(scored, by_hand, atol=1e-5)
    assert torch.equal(subtract_host_light(x, sigma), x - model)
    # the host is gone: the centre, 10-35 sigma in the plain view, is within a few sigma of the sky
    plain = prepare_batch(x, PreprocessConfig(), train=False)
    assert plain[:, :, 32, 32].min() > 5 and scored[:, :, 30:35, 30:35].abs().max() < 5
    elements = torch.randint(0, 8, (4,), generator=torch.Generator().manual_seed(7))
    trained = prepare_batch(x, cfg, train=True, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(trained, dihedral(scored, elements), atol=1e-5)
    blank = torch.zeros(2, 3, 64, 64)
    assert torch.isfinite(prepare_batch(blank, cfg, train=False)).all()


def _annulus() -> torch.Tensor:
    from darkhaloscope.models.preprocess import _annulus_pixels

    return _annulus_pixels(PreprocessConfig(), 64, torch.device("cpu"))
