"""A stand-in for timm in the tests (the real one does not import beside the CPU torch build).

`install(monkeypatch)` puts a module named `timm` into sys.modules whose `create_model` builds tiny nets
shaped like timm's families, with their strided ImageNet stems, and records every call's arguments.
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn


class _Net(nn.Module):
    """Stem (per family) -> one stride-2 conv stage -> global mean pool -> Linear(num_classes)."""

    def __init__(self, stem_out: int, num_classes: int):
        super().__init__()
        self.stages = nn.Sequential(nn.Conv2d(stem_out, 16, 3, 2, 1), nn.ReLU())
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(self.stages(self.forward_stem(x)).mean((2, 3)))


class EfficientNetLike(_Net):  # timm EfficientNet / EfficientNetV2: conv_stem 3x3 stride 2
    def __init__(self, in_chans, num_classes):
        super().__init__(8, num_classes)
        self.conv_stem = nn.Conv2d(in_chans, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)

    def forward_stem(self, x):
        return torch.relu(self.bn1(self.conv_stem(x)))


class ResNetLike(_Net):  # timm ResNet: conv1 7x7 stride 2 + maxpool 3x3 stride 2
    def __init__(self, in_chans, num_classes):
        super().__init__(8, num_classes)
        self.conv1 = nn.Conv2d(in_chans, 8, 7, 2, 3, bias=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward_stem(self, x):
        return self.maxpool(torch.relu(self.conv1(x)))


class ConvNeXtLike(_Net):  # timm ConvNeXt: patchify stem, 4x4 stride 4
    def __init__(self, in_chans, num_classes):
        super().__init__(8, num_classes)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 8, 4, 4), nn.GroupNorm(1, 8))

    def forward_stem(self, x):
        return self.stem(x)


class ViTLike(_Net):  # a patch embedding sized for 224x224 input: no stem to adapt, refuses 64x64
    def __init__(self, in_chans, num_classes):
        super().__init__(8, num_classes)
        self.patch_embed = nn.Conv2d(in_chans, 8, 16, 16)

    def forward_stem(self, x):
        assert x.shape[-1] == 224, f"Input height ({x.shape[-1]}) doesn't match model (224)."
        return self.patch_embed(x)


FAMILIES = {"fake_efficientnet": EfficientNetLike, "fake_resnet": ResNetLike, "fake_convnext": ConvNeXtLike,
            "fake_vit": ViTLike}


def install(monkeypatch) -> list[dict]:
    """Inject the fake timm; returns the list each create_model call's arguments are appended to."""
    calls: list[dict] = []
    mod = types.ModuleType("timm")

    def create_model(name, pretrained=False, **kw):
        calls.append({"name": name, "pretrained": pretrained, **kw})
        if name not in FAMILIES:
            raise RuntimeError(f"Unknown model ({name})")
        return FAMILIES[name](kw.get("in_chans", 3), kw.get("num_classes", 1000))

    mod.create_model = create_model
    mod.__version__ = "0.0+fake"
    monkeypatch.setitem(sys.modules, "timm", mod)
    return calls
