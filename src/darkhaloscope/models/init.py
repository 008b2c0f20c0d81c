"""`--init FILE`: start a model from a local state dict (no weights are ever downloaded).

    dhs train --data TIER --out RUN --model=efficientnetv2_s --init=weights/effv2s_backbone.pt

FILE is read with `torch.load(weights_only=True)` (no pickled code runs). Accepted: a state dict of the
whole model (`backbone.*` and `head.*` keys, e.g. `model.state_dict()`), a state dict of the backbone
alone (its keys are matched under `backbone.`; the head stays freshly initialised), or a `dhs train`
checkpoint (its `model` entry). Every key must match by name and shape, or the load is refused with the
first few missing, unexpected and wrongly shaped keys named: a silent partial load would train from
random weights while claiming otherwise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from darkhaloscope.errors import DataError, MissingInputError, UsageError

SHOWN = 4  # keys named per kind of mismatch


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--init {path}: no such file (a local state dict saved with torch.save)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a foreign file
        raise DataError(f"--init {path}: not a readable state dict ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''}); save one with "
                        "torch.save(model.state_dict(), FILE)") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a dhs train checkpoint
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise DataError(f"--init {path}: expected a dict of parameter name -> tensor, got {type(obj).__name__}")
    return obj


def load_init(model: nn.Module, path: str | Path) -> str:
    """Load FILE into `model` (all keys must match); returns 'model' or 'backbone' (what was loaded)."""
    sd = read_state_dict(path)
    own = model.state_dict()
    scope = "model"
    if not any(k in own for k in sd) and hasattr(model, "backbone"):
        sd, scope = {f"backbone.{k}": v for k, v in sd.items()}, "backbone"
    expected = [k for k in own if scope == "model" or k.startswith("backbone.")]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing: {_names(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {_names(unexpected)}" if unexpected else "",
                 f"{len(shapes)} of another shape (file vs model): {_names(shapes)}" if shapes else ""]
        raise UsageError(f"--init {path}: keys do not match this model ({scope}): "
                         f"{'; '.join(p for p in parts if p)}; use a state dict saved from the same --model")
    model.load_state_dict(sd, strict=scope == "model")
    return scope
