"""Model registry: nets are chosen by name (`create_model("resnet18")`), never by an if/elif chain.

    from darkhaloscope.models import create_model, list_models
    model = create_model("small_cnn")          # logits of shape (B,) for a (B, 3, 64, 64) batch
    model = create_model("resnet18", meta_columns=["psfdepth_r"])  # + scalar observing conditions

Every registered builder returns a *backbone*: an nn.Module mapping (B, 3, 64, 64) -> (B, F) pooled
features with an attribute `num_features = F`. `create_model` puts the one classification head on top
(`LensClassifier`), so every model has the same output contract: one logit per stamp, shape (B,),
to be used with `BCEWithLogitsLoss` (sigmoid(logit) = P(lens)).

`create_model(NAME, coords="r")` appends position planes (`models.coords`: the radius from the stamp centre,
or x, y and r) to the 3 bands; the backbone is built with that many more input channels.
`create_model(NAME, pooling="radial")` pools the backbone's last feature map in rings about the stamp centre
instead of globally (`models.pooling`: avg, radial, grid), so the logit knows where a feature lies.

`create_model("timm:NAME")` builds a timm architecture instead (`models.timm_backend`: optional, imported
only for such names; same output contract, no metadata inputs).

Scalar metadata inputs are checked against the schema: injection metadata (theta_e, arc_snr, src_*, ...)
is null/zero for controls and leaks the label, so asking for it raises RefusedError (exit 3).
Exercised by `dhs train --model=NAME` and `dhs bench train --model NAME`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from darkhaloscope.errors import UsageError
from darkhaloscope.models.coords import add_coord_planes
from darkhaloscope.models.pooling import make_pooling
from darkhaloscope.models.timm_backend import PREFIX as TIMM_PREFIX, create_timm_model  # timm itself: lazily
from darkhaloscope.stamps.normalise import check_coords, check_pooling
from darkhaloscope.stamps.schema import BANDS, check_model_inputs

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_POOLS_ITSELF: set[str] = set()  # backbones with no Cartesian feature map (no `forward_map`): --pooling=avg only


def register_model(fn: Callable[..., nn.Module] | None = None, *, pools_itself: bool = False):
    """Decorator: register a backbone builder under its function name (first docstring line = description).
    `@register_model(pools_itself=True)` marks a backbone that pools its own features (e.g. over angle) and
    has no Cartesian map for `--pooling` radial/grid."""
    if fn is None:
        return lambda f: register_model(f, pools_itself=pools_itself)
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    _DESCRIPTIONS[name] = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    if pools_itself:
        _POOLS_ITSELF.add(name)
    return fn


def pools_itself(name: str) -> bool:
    """True for a registered model whose backbone pools its own features (no `--pooling` radial/grid)."""
    return name in _POOLS_ITSELF


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    """{name: one-line description} of every registered model."""
    return {n: _DESCRIPTIONS[n] for n in list_models()}


class LensClassifier(nn.Module):
    """(Bands + position planes ->) backbone features (+ optional scalar metadata through a small MLP) -> one
    logit per stamp, shape (B,)."""

    def __init__(self, backbone: nn.Module, meta_columns: tuple[str, ...] = (), meta_hidden: int = 32,
                 coords: str = "none", pooling: str = "avg"):
        super().__init__()
        self.backbone = backbone
        self.coords = coords
        self.pooling_name = pooling
        self.pooling = make_pooling(pooling, backbone, len(BANDS) + len(check_coords(coords)))
        self.meta_columns = tuple(meta_columns)
        n_feat = int(backbone.num_features if self.pooling is None else self.pooling.num_features)
        self.meta = (nn.Sequential(nn.Linear(len(self.meta_columns), meta_hidden), nn.ReLU(inplace=True))
                     if self.meta_columns else None)
        self.head = nn.Linear(n_feat + (meta_hidden if self.meta_columns else 0), 1)

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        x = add_coord_planes(x, self.coords)
        f = self.backbone(x) if self.pooling is None else self.pooling(self.backbone.forward_map(x))
        if self.meta is not None:
            if meta is None or meta.shape != (x.shape[0], len(self.meta_columns)):
                got = None if meta is None else tuple(meta.shape)
                raise UsageError(f"model expects metadata of shape (B, {len(self.meta_columns)}) for columns "
                                 f"{', '.join(self.meta_columns)}; got {got}")
            f = torch.cat([f, self.meta(meta.to(f.dtype))], dim=1)
        elif meta is not None:
            raise UsageError("this model was built without meta_columns but was given metadata")
        return self.head(f).squeeze(1)


def create_model(name: str, *, meta_columns: list[str] | tuple[str, ...] = (), coords: str = "none",
                 pooling: str = "avg", **kw) -> nn.Module:
    """Build the registered model `name` (`kw` go to its builder), or `timm:NAME` through timm, taking the 3
    bands plus the position planes of `coords`, its last feature map pooled by `pooling` (models.pooling).
    Unknown name -> UsageError listing the names."""
    n_in = len(BANDS) + len(check_coords(coords))
    check_pooling(pooling)
    if name.startswith(TIMM_PREFIX):
        if meta_columns or kw:
            raise UsageError(f"model {name}: timm models take no meta_columns or builder arguments")
        if pooling != "avg":
            raise UsageError(f"model {name}: timm models pool as timm builds them (pooling=avg); pooling={pooling} "
                             "is for the built-in models")
        return create_timm_model(name[len(TIMM_PREFIX):], coords=coords, builtin=list_models())
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}, or "
                         f"{TIMM_PREFIX}NAME for a timm architecture (needs the [cuda] extra: timm)")
    check_model_inputs(list(meta_columns))  # RefusedError (exit 3) for label-leaking columns
    try:
        backbone = _REGISTRY[name](**kw) if n_in == len(BANDS) else _REGISTRY[name](in_chans=n_in, **kw)
    except TypeError as e:
        raise UsageError(f"model {name!r}: bad argument(s) {kw}: {e}") from None
    return LensClassifier(backbone, tuple(meta_columns), coords=coords, pooling=pooling)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, image_size: int = 64) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass on one (3, size, size) stamp, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())
