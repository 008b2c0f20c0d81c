"""Pooling: how a backbone's last feature map (B, F, h, w) becomes the features the one logit is read from.

    pool = make_pooling("radial", backbone, in_chans=4)     # features = pool(backbone.forward_map(x))

- `avg` (None here: the backbone's own global average pooling). Translation invariant: a curved blue streak
  gives the same features wherever it lies, so an arc at the Einstein radius and a companion, spiral arm or
  tidal tail off the centre look alike to it.
- `radial`: the map averaged in rings about the stamp centre (the lens galaxy), ring edges RING_EDGES_PX
  input pixels; each ring's mean of every channel (F x rings features). A ring that holds no map cell at the
  backbone's resolution is dropped. Invariant under the dihedral augmentation, like the lensing geometry.
- `grid`: the global average + a 1x1 convolution to GRID_CHANNELS channels averaged onto a grid of at most
  GRID_SIDE x GRID_SIDE cells, flattened: keeps where each feature lies.

Measured on the confuser benchmark (small_cnn, the demo tier): benchmarks/RESULTS.md, "where the lens is".
"""

from __future__ import annotations

import torch
from torch import nn

from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.normalise import check_pooling
from darkhaloscope.stamps.schema import STAMP_SIZE

RING_EDGES_PX = (0.0, 8.0, 14.0, 20.0, float("inf"))  # input pixels from the centre: 2.1", 3.7", 5.2" (0.262"/px)
GRID_CHANNELS = 8  # reduced channels of the grid pooling
GRID_SIDE = 8  # grid cells per side (at most; fewer when the map is smaller)


def map_side(backbone: nn.Module, in_chans: int) -> int:
    """Side of `backbone`'s last feature map for a 64x64 stamp of `in_chans` channels."""
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        side = backbone.forward_map(torch.zeros(1, in_chans, STAMP_SIZE, STAMP_SIZE)).shape[-1]
    backbone.train(was)
    return int(side)


def ring_masks(side: int, size: int = STAMP_SIZE, edges=RING_EDGES_PX) -> torch.Tensor:
    """(rings, side, side) weights: each non-empty ring's cells, normalised to sum 1. Distances run from the
    centre of a map cell to the centre of the map (the stamp's centre, half a pixel from the host's pixel
    size//2), in input pixels: a flip or a 90-degree turn of the map about its centre moves cells only within
    their ring. The training augmentation turns stamps about the host pixel instead, which moves the map by
    at most one input pixel, an eighth of a cell of an 8x8 map."""
    step = size / side
    c = (torch.arange(side, dtype=torch.float64) + 0.5) * step - size / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    r = torch.hypot(xx, yy)
    masks = [((r >= a) & (r < b)).double() for a, b in zip(edges[:-1], edges[1:])]
    return torch.stack([m / m.sum() for m in masks if m.sum() > 0]).float()


class RadialPool(nn.Module):
    def __init__(self, features: int, side: int):
        super().__init__()
        self.register_buffer("rings", ring_masks(side), persistent=False)
        self.num_features = features * self.rings.shape[0]

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,khw->bck", m, self.rings.to(m.dtype)).flatten(1)


class GridPool(nn.Module):
    def __init__(self, features: int, side: int):
        super().__init__()
        side = min(GRID_SIDE, side)
        self.reduce = nn.Sequential(nn.Conv2d(features, GRID_CHANNELS, 1), nn.ReLU(inplace=True),
                                    nn.AdaptiveAvgPool2d(side))
        self.num_features = features + GRID_CHANNELS * side * side

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.mean((2, 3)), self.reduce(m).flatten(1)], dim=1)


def make_pooling(name: str, backbone: nn.Module, in_chans: int) -> nn.Module | None:
    """The pooling `name` over `backbone`'s map (None for avg: the backbone pools itself)."""
    check_pooling(name)
    if name == "avg":
        return None
    if not hasattr(backbone, "forward_map"):
        raise UsageError(f"pooling={name}: this model has no Cartesian feature map to pool ({type(backbone).__name__} "
                         "pools its own features, e.g. polar_cnn over angle); use pooling=avg")
    cls = RadialPool if name == "radial" else GridPool
    return cls(int(backbone.num_features), map_side(backbone, in_chans))
