"""Reading a `dhs train` checkpoint (local path or s3:// URI) for inference: `load_checkpoint` (the dict, read
with torch.load(weights_only=True): no pickled code runs) and `load_for_inference` (the model in eval mode,
its preprocessing and metadata). Shared by training (resume) and scoring, below both.
Exercise: `dhs score --checkpoint RUN/best.pt ...`.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch

from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.stamps.fs import S3Options, fsspec_filesystem, is_s3, s3_fault

FORMAT = "darkhaloscope-checkpoint/1"  # bumped when the layout changes
# config keys that shape the net, as a checkpoint written before they existed was built (TrainConfig defaults)
ARCH_DEFAULTS = {"coords": "none", "pooling": "avg"}


def _read_bytes(path_or_uri: str, s3: S3Options | None) -> bytes:
    fs, p = fsspec_filesystem(str(path_or_uri), s3)
    try:
        with fs.open(p, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise MissingInputError(f"checkpoint {path_or_uri} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"checkpoint {path_or_uri} is a folder; give the file, e.g. RUN/best.pt") from None
    except Exception as e:  # noqa: BLE001 - botocore / aiohttp raise many kinds
        fault = s3_fault(e, str(path_or_uri), s3) if is_s3(str(path_or_uri)) else None
        if fault is None:
            raise
        raise fault from None


def load_checkpoint(path_or_uri: str | Path, s3: S3Options | None = None, map_location="cpu") -> dict:
    """Read a checkpoint (local path or s3:// URI) with weights_only=True; DataError if unreadable."""
    raw = _read_bytes(str(path_or_uri), s3)
    if not raw:
        raise DataError(f"checkpoint {path_or_uri} is empty (0 bytes: a copy or a save that did not finish); "
                        "use another file, e.g. best.pt or the mirror copy")
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a truncated/foreign file
        raise DataError(f"checkpoint {path_or_uri} is not a readable darkhaloscope checkpoint "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); use another file, e.g. best.pt "
                        "or the mirror copy") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"checkpoint {path_or_uri} has format {ckpt.get('format') if isinstance(ckpt, dict) else '?'}"
                        f", expected {FORMAT}; it was not written by this version of `dhs train`")
    return ckpt


def load_for_inference(path_or_uri: str | Path, device: str | torch.device = "cpu", s3: S3Options | None = None):
    """(model in eval mode on `device`, PreprocessConfig, meta) from a `dhs train` checkpoint.

    meta: {'config', 'epoch', 'step', 'best', 'version', 'git_commit', 'model', 'calibration', 'bands'}
    (calibration: {'temperature', 'ece_raw', 'ece_calibrated', 'split', 'n', 'step'} fitted on val, or None;
    bands: the input band names in channel order, None in a checkpoint written before they were recorded;
    the preprocessing is config['preprocess']). Score with
    `model(prepare_batch(x.to(device), preprocess, train=False))` -> logits (B,).
    """
    from darkhaloscope.models import create_model
    from darkhaloscope.stamps.normalise import COORD_PLANES, POOLINGS, PreprocessConfig

    ckpt = load_checkpoint(path_or_uri, s3)
    cfg = ckpt.get("config")
    if not isinstance(cfg, dict) or "model" not in cfg or not isinstance(ckpt.get("model"), dict):
        raise DataError(f"checkpoint {path_or_uri} has no model config or weights (keys: "
                        f"{', '.join(sorted(map(str, ckpt)))}); give a last.pt / best.pt written by `dhs train`")
    known = {f.name for f in dataclasses.fields(PreprocessConfig)}
    extra = sorted(set(cfg.get("preprocess") or {}) - known)
    if extra or not isinstance(cfg.get("preprocess"), dict):
        raise DataError(f"checkpoint {path_or_uri}: preprocess settings {', '.join(extra) or repr(cfg.get('preprocess'))} "
                        f"are not known to this version (known: {', '.join(sorted(known))}); score it with the "
                        "darkhaloscope version that trained it")
    arch = {k: cfg.get(k, ARCH_DEFAULTS[k]) for k in ("coords", "pooling")}  # absent: written before them
    for key, value in arch.items():
        known = COORD_PLANES if key == "coords" else POOLINGS
        if not isinstance(value, str) or value not in known:
            raise DataError(f"checkpoint {path_or_uri}: {key}={str(value)[:40]!r} is not known to this version "
                            f"(known: {', '.join(known)}); score it with the darkhaloscope version that trained it")
    model = create_model(cfg["model"], meta_columns=cfg.get("meta_columns") or (), **arch)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"checkpoint {path_or_uri}: its weights do not fit model {cfg['model']!r} "
                        f"({str(e).strip().splitlines()[0][:200]}); it was written for another architecture "
                        "or edited") from None
    model.to(device).eval()
    if cfg.get("channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    preprocess = PreprocessConfig(**cfg["preprocess"])
    meta = {k: ckpt.get(k) for k in ("epoch", "step", "best", "version", "git_commit", "calibration", "bands")}
    meta.update(config=cfg, model=cfg["model"])
    return model, preprocess, meta
