"""EfficientNetV2-S and EfficientNet-B0 for 64x64 g/r/z stamps, in plain torch (no timm / torchvision).

    dhs train --data TIER --out RUN --model=efficientnetv2_s      # the group's final model family
    dhs bench train --model efficientnet_b0

Stage tables from the papers (Tan & Le 2021, EfficientNetV2 Table 4; Tan & Le 2019, EfficientNet Table 1):
each row is (block, expansion, kernel, stride, channels, layers, SE). The one change for stamps is the
stem: a 3x3 conv of stride 1 instead of 2, so stage 1 runs on the full 64x64 grid where arcs at 4-12 px
from the centre are resolved; the later strides are the paper's (total stride 16: a 4x4 final map).
Blocks: Fused-MBConv (3x3 expand conv + 1x1 project; expansion 1: a single 3x3 conv) in the early
stages of V2, MBConv (1x1 expand, depthwise kxk, squeeze-excitation at 1/4 of the block's input
channels, 1x1 project) later; SiLU; batch norm eps 1e-3; identity shortcut where stride 1 and channels
match; a 1x1 conv to 1280 features before pooling. Not included: stochastic depth and dropout (training
regularisers of the ImageNet recipe), and pretrained weights (use `--init FILE` with a local state dict).
"""

from __future__ import annotations

import torch
from torch import nn

from darkhaloscope.models.registry import register_model

# (block, expansion, kernel, stride, out channels, layers, squeeze-excitation)
EFFICIENTNETV2_S = (("fused", 1, 3, 1, 24, 2, False), ("fused", 4, 3, 2, 48, 4, False),
                    ("fused", 4, 3, 2, 64, 4, False), ("mb", 4, 3, 2, 128, 6, True),
                    ("mb", 6, 3, 1, 160, 9, True), ("mb", 6, 3, 2, 256, 15, True))
EFFICIENTNET_B0 = (("mb", 1, 3, 1, 16, 1, True), ("mb", 6, 3, 2, 24, 2, True), ("mb", 6, 5, 2, 40, 2, True),
                   ("mb", 6, 3, 2, 80, 3, True), ("mb", 6, 5, 1, 112, 3, True), ("mb", 6, 5, 2, 192, 4, True),
                   ("mb", 6, 3, 1, 320, 1, True))
BN_EPS = 1e-3  # as in the TensorFlow reference


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    mods = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out, eps=BN_EPS)]
    return nn.Sequential(*mods, nn.SiLU(inplace=True)) if act else nn.Sequential(*mods)


class SqueezeExcite(nn.Module):
    """Channel gates from the pooled map: 1x1 reduce, SiLU, 1x1 expand, sigmoid."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: (1x1 expand) -> depthwise kxk (strided) -> (SE) -> 1x1 project (no activation)."""

    def __init__(self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int, se: bool):
        super().__init__()
        mid = c_in * expansion
        self.expand = conv_bn(c_in, mid, 1) if expansion != 1 else nn.Identity()
        self.dw = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid, max(1, c_in // 4)) if se else nn.Identity()
        self.project = conv_bn(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class FusedMBConv(nn.Module):
    """EfficientNetV2's early block: 3x3 expand conv (strided) -> 1x1 project; expansion 1: one 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int, se: bool):
        super().__init__()
        if se:
            raise ValueError("Fused-MBConv stages of EfficientNetV2-S have no squeeze-excitation")
        if expansion == 1:
            self.body = conv_bn(c_in, c_out, kernel, stride)
        else:
            self.body = nn.Sequential(conv_bn(c_in, c_in * expansion, kernel, stride),
                                      conv_bn(c_in * expansion, c_out, 1, act=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    """Stem (3x3, stride `stem_stride`) -> stages of (Fused-)MBConv -> 1x1 conv to `head` -> pooled features."""

    def __init__(self, stages, stem: int, head: int = 1280, stem_stride: int = 1, in_chans: int = 3):
        super().__init__()
        self.stem = conv_bn(in_chans, stem, 3, stem_stride)
        blocks, c = [], stem
        for kind, e, k, s, c_out, n, se in stages:
            for i in range(n):
                blocks.append((FusedMBConv if kind == "fused" else MBConv)(c, c_out, e, k, s if i == 0 else 1, se))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(c, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = head
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_map(self, x):
        """(B, C, S, S) -> the last feature map (B, head, h, w), before pooling."""
        return self.head(self.blocks(self.stem(x)))

    def pool_map(self, m):
        return self.pool(m).flatten(1)

    def forward(self, x):
        return self.pool_map(self.forward_map(x))


@register_model
def efficientnetv2_s(in_chans: int = 3) -> nn.Module:
    """EfficientNetV2-S (Fused-MBConv stages 1-3, MBConv+SE 4-6), 3x3 stride-1 stem: 64x64 stage 1."""
    return EfficientNet(EFFICIENTNETV2_S, stem=24, in_chans=in_chans)


@register_model
def efficientnet_b0(in_chans: int = 3) -> nn.Module:
    """EfficientNet-B0 (MBConv+SE, kernels 3/5), 3x3 stride-1 stem: 64x64 stage 1."""
    return EfficientNet(EFFICIENTNET_B0, stem=32, in_chans=in_chans)
