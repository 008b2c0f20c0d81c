"""A ConvNeXt-nano-style net for 64x64 g/r/z stamps, in plain torch (no timm).

    dhs train --data TIER --out RUN --model=convnext_nano

ConvNeXt (Liu et al. 2022) with the nano sizes of timm's `convnext_nano`: depths 2-2-8-2, widths
80-160-320-640. Block: 7x7 depthwise conv -> LayerNorm -> Linear 4x -> GELU -> Linear -> layer scale
(init 1e-6) -> residual. Between stages: LayerNorm + 2x2 stride-2 conv. The ImageNet stem is a 4x4
stride-4 patchify, which would leave a 16x16 map in which an arc is one or two pixels; here the stem is
an overlapping 3x3 conv of stride 2 (+ LayerNorm): stage 1 on a 32x32 map, arcs at 4-12 px become 2-6 px,
and the final map is 4x4. Pooled features go through a final LayerNorm, as in the paper.
Not included: stochastic depth (a training regulariser) and pretrained weights (`--init FILE`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from darkhaloscope.models.registry import register_model


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (any memory format)."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)  # N H W C: the MLP is a Linear over channels
        y = self.fc2(self.act(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), stem_stride: int = 2, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 3, stem_stride, 1), LayerNorm2d(dims[0], eps=1e-6))
        stages = []
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            down = [] if i == 0 else [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            stages.append(nn.Sequential(*down, *[ConvNeXtBlock(dim) for _ in range(depth)]))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.num_features = dims[-1]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_map(self, x):
        """(B, C, S, S) -> the last feature map (B, dims[-1], h, w), before pooling and the final norm."""
        return self.stages(self.stem(x))

    def pool_map(self, m):
        return self.norm(m.mean((2, 3)))

    def forward(self, x):
        return self.pool_map(self.forward_map(x))


@register_model
def convnext_nano(in_chans: int = 3) -> nn.Module:
    """ConvNeXt-nano sizes (2-2-8-2, 80-640 wide), 3x3 stride-2 stem: 32x32 stage 1."""
    return ConvNeXt(in_chans=in_chans)
