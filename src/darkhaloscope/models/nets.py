"""ResNets (18, 34, 50) and the small CPU net for 64x64 g/r/z stamps (`dhs bench train --model NAME`).

Params and FLOPs of every registered model: the table in docs/models.md (`python -m darkhaloscope.models.table`).

Why this stem: the ImageNet stem (7x7 stride 2 + maxpool) divides the resolution by 4 before the first
residual block; on a 64x64 stamp whose arcs are 1-3" (4-12 pixels) wide in radius, that leaves a 16x16
map in which an arc is one or two pixels. The CIFAR-style stem (3x3 stride 1, no maxpool) keeps the full
64x64 grid for stage 1 (the users' Phase 5 "ResNet-18 style" net): 2.2 G multiply-adds per stamp,
1.2x an ImageNet ResNet-18 at 224x224, and 4x the FLOPs of the strided stem, hence `resnet18_s2` for
throughput-bound runs. `small_cnn` is for CPU demos and tests.
ResNet-34 / ResNet-50 keep the same stem (BasicBlocks 3-4-6-3; Bottlenecks 3-4-6-3 with 4x expansion).
"""

from __future__ import annotations

from torch import nn

from darkhaloscope.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 strided) shortcut: the ResNet-18 block."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.short = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                      if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.short(x))

    def zero_init_last_bn(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, batch norms, identity or 1x1 shortcut: the ResNet-50 block."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.short = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                      if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.short(x))

    def zero_init_last_bn(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class ResNet(nn.Module):
    """ResNet (BasicBlock or Bottleneck), a 3x3 stem of configurable stride, global average pooling -> features."""

    def __init__(self, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_stride: int = 1, in_chans: int = 3,
                 block: type[nn.Module] = BasicBlock):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, c = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(block(c, w, stride=2 if (i > 0 and j == 0) else 1))
                c = w * getattr(block, "expansion", 1)
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each residual branch: each block starts as identity
            if isinstance(m, (BasicBlock, Bottleneck)):
                m.zero_init_last_bn()

    def forward_map(self, x):
        """(B, C, S, S) -> the last feature map (B, F, h, w), before pooling."""
        return self.layers(self.stem(x))

    def pool_map(self, m):
        return self.pool(m).flatten(1)

    def forward(self, x):
        return self.pool_map(self.forward_map(x))


@register_model
def resnet18(in_chans: int = 3) -> nn.Module:
    """ResNet-18, 3x3 stride-1 stem, no maxpool: full 64x64 resolution in stage 1 (the Phase 5 net)."""
    return ResNet(stem_stride=1, in_chans=in_chans)


@register_model
def resnet18_s2(in_chans: int = 3) -> nn.Module:
    """ResNet-18, 3x3 stride-2 stem: 32x32 stage 1, ~4x fewer FLOPs than resnet18 (throughput runs)."""
    return ResNet(stem_stride=2, in_chans=in_chans)


@register_model
def resnet34(in_chans: int = 3) -> nn.Module:
    """ResNet-34 (BasicBlocks 3-4-6-3), 3x3 stride-1 stem, no maxpool: 64x64 stage 1."""
    return ResNet(blocks=(3, 4, 6, 3), stem_stride=1, in_chans=in_chans)


@register_model
def resnet50(in_chans: int = 3) -> nn.Module:
    """ResNet-50 (Bottlenecks 3-4-6-3, 2048 features), 3x3 stride-1 stem, no maxpool: 64x64 stage 1."""
    return ResNet(blocks=(3, 4, 6, 3), stem_stride=1, in_chans=in_chans, block=Bottleneck)


@register_model
def small_cnn(in_chans: int = 3, width: int = 16) -> nn.Module:
    """Small fast CNN (4 conv blocks, 0.08 M params, 0.03 GFLOPs) for CPU demos and tests."""
    return SmallCNN(in_chans, width)


class SmallCNN(nn.Module):
    def __init__(self, in_chans: int = 3, width: int = 16):
        super().__init__()
        w = (width, 2 * width, 4 * width, 6 * width)

        def block(ci, co, pool):
            mods = [nn.Conv2d(ci, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True)]
            return nn.Sequential(*mods, nn.MaxPool2d(2)) if pool else nn.Sequential(*mods)

        self.features = nn.Sequential(block(in_chans, w[0], True), block(w[0], w[1], True),
                                      block(w[1], w[2], True), block(w[2], w[3], False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = w[3]

    def forward_map(self, x):
        """(B, C, S, S) -> the last feature map (B, F, S/8, S/8), before pooling."""
        return self.features(x)

    def pool_map(self, m):
        return self.pool(m).flatten(1)

    def forward(self, x):
        return self.pool_map(self.forward_map(x))
