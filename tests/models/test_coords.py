"""Position planes (`--coords`): what they hold, every model takes them, checkpoints rebuild them, bad values refused."""

import pytest
import torch

from darkhaloscope.config import load_config
from darkhaloscope.errors import UsageError
from darkhaloscope.models import count_params, create_model, pools_itself
from darkhaloscope.models.coords import add_coord_planes, coord_planes
from darkhaloscope.models.pooling import GridPool, RadialPool, ring_masks
from darkhaloscope.stamps.normalise import COORD_PLANES, COORD_SCALE_PX
from darkhaloscope.stamps.schema import pixel_radius
from darkhaloscope.train.config import TrainConfig
from modelparams import every_model


def test_planes_are_offsets_from_the_stamp_centre_in_16_px_units():
    p = coord_planes("xyr", 64)
    assert p.shape == (3, 64, 64) and p.dtype == torch.float32
    x, y, r = p
    assert r[32, 32] == 0 and x[32, 32] == 0 and y[32, 32] == 0  # the centre pixel of every aperture in the package
    assert torch.allclose(r, torch.from_numpy(pixel_radius(64)).float() / COORD_SCALE_PX)
    assert x[32, 48] == 1 and y[32, 48] == 0 and y[48, 32] == 1  # x along columns, y along rows, 16 px = 1
    assert torch.equal(coord_planes("r", 64)[0], r)
    assert coord_planes("none", 64).shape == (0, 64, 64)


def test_planes_are_appended_after_the_bands_and_the_bands_untouched():
    x = torch.randn(5, 3, 64, 64)
    out = add_coord_planes(x, "r")
    assert out.shape == (5, 4, 64, 64)
    assert torch.equal(out[:, :3], x) and torch.equal(out[2, 3], coord_planes("r", 64)[0])
    assert add_coord_planes(x, "none") is x
    assert add_coord_planes(x.half(), "xyr").dtype == torch.float16


@pytest.mark.parametrize("name", every_model())
@pytest.mark.parametrize("coords", ["r", "xyr"])
def test_every_model_takes_the_planes(name, coords):
    torch.manual_seed(0)
    model = create_model(name, coords=coords)
    assert count_params(model) > count_params(create_model(name))  # the first layer sees 3 + k channels
    y = model(torch.randn(2, 3, 64, 64))  # callers still pass the 3 bands
    assert y.shape == (2,) and torch.isfinite(y).all()


def test_the_planes_reach_the_logit():
    """A model given r answers differently to the same stamp than one whose r plane is zeroed."""
    torch.manual_seed(0)
    model = create_model("small_cnn", coords="r").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        model.coords = "none"
        b = model.backbone(torch.cat([x, torch.zeros(2, 1, 64, 64)], 1))
    assert not torch.allclose(a, model.head(b).squeeze(1))


@pytest.mark.parametrize("bad", ["radius", "R", ""])
def test_unknown_coords_refused_naming_the_choices(bad):
    with pytest.raises(UsageError, match="none, r, xyr"):
        create_model("small_cnn", coords=bad)
    with pytest.raises(UsageError, match="coords="):
        load_config(TrainConfig, None, [f"--coords={bad}"]).validate()
    assert set(COORD_PLANES) == {"none", "r", "xyr"}


# ---- pooling (`--pooling`): models.pooling ------------------------------------------------------------------

@pytest.mark.parametrize("name", [m for m in every_model() if not pools_itself(getattr(m, "values", [m])[0])])
@pytest.mark.parametrize("pooling", ["radial", "grid"])
def test_every_model_takes_the_poolings(name, pooling):
    torch.manual_seed(0)
    model = create_model(name, pooling=pooling, coords="r")
    x = torch.randn(2, 3, 64, 64)
    y = model(x)
    assert y.shape == (2,) and torch.isfinite(y).all()
    y.sum().backward()
    assert model.head.weight.shape[1] == model.pooling.num_features > model.backbone.num_features


@pytest.mark.parametrize("name", every_model())
def test_pools_itself_marks_exactly_the_models_without_a_cartesian_map(name):
    """The registry's mark agrees with the backbone; such a model refuses --pooling radial/grid in one line."""
    assert pools_itself(name) == (not hasattr(create_model(name).backbone, "forward_map"))
    if pools_itself(name):
        with pytest.raises(UsageError, match="pools its own features.*pooling=avg"):
            create_model(name, pooling="radial")


def test_rings_cover_the_map_once_and_are_centred():
    for side in (4, 8, 16, 32):
        m = ring_masks(side)
        assert torch.allclose(m.sum((1, 2)), torch.ones(len(m)))
        assert ((m > 0).sum(0) == 1).all()  # every cell in exactly one ring
    assert len(ring_masks(8)) == 4 and len(ring_masks(4)) == 2  # rings holding no cell of a coarse map dropped
    inner = ring_masks(8)[0]  # the 2x2 cells around the stamp centre: map rows/cols 3 and 4
    assert inner.nonzero().tolist() == [[3, 3], [3, 4], [4, 3], [4, 4]]


@pytest.mark.parametrize("element", range(8))
def test_radial_pooling_is_invariant_under_the_dihedral_group_and_grid_is_not(element):
    """A flip or 90-degree turn of the feature map (what the augmentation does to an equivariant net's map) leaves
    the radial features as they were; the grid's features move with the light."""
    from darkhaloscope.models.preprocess import dihedral

    torch.manual_seed(0)
    m = torch.randn(2, 96, 8, 8).relu()
    turned = dihedral(m, torch.full((2,), element), centre="array")  # the rings are about the map's centre
    radial, grid = RadialPool(96, 8), GridPool(96, 8)
    assert torch.allclose(radial(turned), radial(m), atol=1e-6)
    assert torch.allclose(grid(turned), grid(m), atol=1e-6) == (element == 0)


@pytest.mark.parametrize("bad", ["max", "AVG"])
def test_unknown_pooling_refused_and_timm_keeps_its_own(bad, monkeypatch):
    with pytest.raises(UsageError, match="choose one of avg, radial, grid"):
        create_model("small_cnn", pooling=bad)
    with pytest.raises(UsageError, match="pooling="):
        load_config(TrainConfig, None, [f"--pooling={bad}"]).validate()
    with pytest.raises(UsageError, match="timm models pool as timm builds them"):
        create_model("timm:anything", pooling="radial")
