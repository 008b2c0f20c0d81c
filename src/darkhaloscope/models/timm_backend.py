"""Optional timm backend: `--model timm:NAME` builds any timm architecture, adapted to 64x64 g/r/z stamps.

    pip install 'darkhaloscope[cuda]'                         # on a CUDA machine (timm + its torchvision)
    dhs train --data TIER --out RUN --model=timm:efficientnetv2_rw_s
    dhs bench train --model timm:convnext_nano --batch-size 256 --precision bf16

timm is imported only when such a name is asked for, never by `dhs --help` or the built-in models: its
PyPI torchvision does not load beside the CPU torch build, so on a CPU box `--model timm:X` stops with
one `error:` line (exit 2) naming the import error and the two ways on. The net is
`timm.create_model(NAME, pretrained=False, in_chans=3, num_classes=1)` (nothing is downloaded), wrapped so
that it returns one logit per stamp, shape (B,). The checkpoint's config keeps the name `timm:NAME`, so
`dhs score` rebuilds the same net (where timm imports).

Stem adaptation (the ImageNet stems divide 64x64 by 4 before the first stage; arcs 4-12 px wide need the
resolution), by the attributes timm's families expose:
- `conv_stem` (EfficientNet, EfficientNetV2, MobileNetV2/V3, MixNet ...): stride 2 -> 1, 64x64 stage 1.
- `conv1` + `maxpool` (ResNet, ResNeXt, SE-ResNet, ResNet-D ...): the first stem conv stride 2 -> 1 and a
  plain MaxPool2d removed, 64x64 stage 1 (a convolutional stem pool keeps its stride 2: 32x32).
- `stem` whose first conv is a patchify conv (kernel = stride, ConvNeXt): stride 2 with padding
  (kernel - 2) / 2, an overlapping 32x32 stem as the built-in `convnext_nano`.
- another `stem` (RegNet, ConvNeXt overlap stems, CSPNet ...): its first strided conv -> stride 1.
Other families (ViT, Swin: `patch_embed`) are built unchanged, with a warning naming the net. Every net
runs one blank 64x64 stamp when built: one that cannot (a ViT sized for 224) is refused in one line.
Checked against timm 1.0.31 (torchvision stubbed, CPU): efficientnetv2_rw_s, efficientnet_b0,
tf_efficientnet_b0, mobilenetv3_small_100, resnet18, resnet50d, resnet26t: 64x64 into stage 1;
convnext_nano, convnext_atto_ols, cspresnet50 (its stem pool stays): 32x32.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from darkhaloscope.errors import UsageError
from darkhaloscope.models.coords import add_coord_planes
from darkhaloscope.stamps.normalise import check_coords
from darkhaloscope.stamps.schema import STAMP_SIZE

PREFIX = "timm:"  # `--model timm:NAME`
EXTRA = "cuda"  # pyproject optional dependency group holding timm


def _first_conv(module: nn.Module, strided: bool = False) -> nn.Conv2d | None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and (not strided or max(m.stride) > 1):
            return m
    return None


def adapt_stem(net: nn.Module) -> str | None:
    """Make the stem of a timm net keep 64x64 stamps resolved (see the module docstring), in place.
    Returns what was changed, or None for a family with no known stem."""
    if isinstance(getattr(net, "conv_stem", None), nn.Conv2d):
        net.conv_stem.stride = (1, 1)
        return "conv_stem stride 1"
    if isinstance(getattr(net, "conv1", None), nn.Module) and hasattr(net, "maxpool"):
        done = []
        conv = _first_conv(net.conv1, strided=True)
        if conv is not None:
            conv.stride = (1, 1)
            done.append("conv1 stride 1")
        if isinstance(net.maxpool, nn.MaxPool2d):
            net.maxpool = nn.Identity()
            done.append("maxpool removed")
        return ", ".join(done) or "stem already stride 1"
    stem = getattr(net, "stem", None)
    conv = _first_conv(stem) if isinstance(stem, nn.Module) else None
    if conv is not None:
        k, s = conv.kernel_size[0], conv.stride[0]
        if k == s and k >= 4:  # patchify (ConvNeXt): k x k, stride k -> overlapping k x k, stride 2
            conv.stride, conv.padding = (2, 2), ((k - 2) // 2, (k - 2) // 2)
            return f"patchify stem {k}x{k} stride {s} -> stride 2, padding {(k - 2) // 2}"
        conv = _first_conv(stem, strided=True)
        if conv is not None:
            conv.stride = (1, 1)
            return "first strided stem conv stride 1"
        return "stem already stride 1"
    return None


class TimmClassifier(nn.Module):
    """A timm net with a 1-logit classifier (`backbone`, the name `--init` maps a timm state dict under)
    -> logits of shape (B,). No scalar metadata inputs."""

    meta_columns: tuple[str, ...] = ()

    def __init__(self, net: nn.Module, timm_name: str, stem: str | None, timm_version: str | None = None,
                 coords: str = "none"):
        super().__init__()
        self.backbone = net
        self.coords = coords  # position planes appended to the bands (models.coords)
        self.timm_name = timm_name
        self.stem = stem  # what adapt_stem changed (None: not adapted)
        self.timm_version = timm_version  # the net's layers are timm's: `dhs train` writes it into run.json

    def forward(self, x: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        if meta is not None:
            raise UsageError(f"model timm:{self.timm_name} takes no metadata (meta_columns)")
        out = self.backbone(add_coord_planes(x, self.coords))
        if out.shape != (x.shape[0], 1):
            raise UsageError(f"timm:{self.timm_name} returned shape {tuple(out.shape)}, expected ({x.shape[0]}, 1): "
                             "it does not honour num_classes=1; use another timm model")
        return out.squeeze(1)


def import_timm(builtin: list[str] = ()):
    """The timm module, or UsageError in one line saying why not and what to do (naming the `builtin` models
    to use instead: the registry passes them, so this module never imports the registry)."""
    try:
        import timm
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision's RuntimeError beside a CPU torch
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UsageError(f"timm models need timm, which does not import here ({type(e).__name__}: {msg}); on a "
                         f"CUDA machine install it with pip install 'darkhaloscope[{EXTRA}]', or use a built-in "
                         f"model: {', '.join(builtin)}") from None
    return timm


def create_timm_model(name: str, coords: str = "none", builtin: list[str] = ()) -> TimmClassifier:
    """`timm:NAME` -> TimmClassifier (pretrained=False, 3 input channels + the planes of `coords`, one logit,
    stem adapted). `builtin`: the registry's own model names, for the message when timm does not import."""
    if not name or ":" in name:  # timm's own sources (hf-hub:, local-dir:) would fetch a config
        raise UsageError(f"model {PREFIX}{name}: name one timm architecture, e.g. {PREFIX}efficientnetv2_rw_s "
                         "(no hub or file sources: nothing is downloaded)")
    timm = import_timm(builtin)
    try:
        net = timm.create_model(name, pretrained=False, in_chans=3 + len(check_coords(coords)), num_classes=1)
    except (RuntimeError, ValueError) as e:  # timm: "Unknown model (NAME)"
        raise UsageError(f"model {PREFIX}{name}: {str(e).strip().splitlines()[0][:200]}; "
                         "timm.list_models() names the valid ones") from None
    stem = adapt_stem(net)
    if stem is None:
        print(f"warning: {PREFIX}{name}: no known stem to adapt (conv_stem, conv1 + maxpool, stem); built as timm "
              "defines it, which may downsample 64x64 stamps 4x or more before its first stage", file=sys.stderr)
    model = TimmClassifier(net, name, stem, getattr(timm, "__version__", None), coords=coords)
    _check_runs_on_stamps(model)
    return model


def _check_runs_on_stamps(model: TimmClassifier) -> None:
    """One forward pass of a blank 64x64 stamp (eval mode, no grad): a net that cannot take 64x64 input (a
    ViT built for 224) or does not give one logit is refused here in one line, not mid-training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, STAMP_SIZE, STAMP_SIZE))
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the net raises for this input size
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UsageError(f"model {PREFIX}{model.timm_name} does not run on {STAMP_SIZE}x{STAMP_SIZE} stamps "
                         f"({type(e).__name__}: {msg}); choose a convolutional family (EfficientNet, ResNet, "
                         "ConvNeXt, RegNet ...)") from None
    finally:
        model.train(was_training)
