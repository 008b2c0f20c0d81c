"""Checkpoints: plain dicts of tensors and python primitives, written atomically, optionally mirrored.

    RUN/last.pt   newest state (every N steps / N minutes / epoch end): resume with `--resume auto`
    RUN/best.pt   state at the best val AUROC so far: what scoring uses
    load_for_inference("RUN/best.pt")  -> (model in eval mode, PreprocessConfig, meta)

A checkpoint holds model, optimizer, scheduler, grad scaler, the RNG states (torch, CUDA, numpy, python,
the augmentation generator), the data cursor (epoch, batches done), the resolved config (model name and
preprocessing included), the input band names (`bands`) and the package version. It is written to a temp file and renamed, so a kill -9 during the write leaves the previous
file whole; it is read back with `torch.load(weights_only=True)` (no pickled code is ever executed).
With `--checkpoint_uri s3://bucket/prefix` each saved file is uploaded (retried with backoff), and
`--resume auto` on an empty run folder (a fresh Colab session) pulls last.pt from there.
Exercised by `dhs train ... --resume auto` and by scoring (`load_for_inference`).
"""

from __future__ import annotations

import dataclasses
import io
import random
import time
from pathlib import Path

import numpy as np
import torch

from darkhaloscope import __version__
from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_bytes
from darkhaloscope.stamps.fs import S3Options, fsspec_filesystem, is_s3, s3_fault

FORMAT = "darkhaloscope-checkpoint/1"  # bumped when the layout changes
# config keys that shape the net, as a checkpoint written before they existed was built (TrainConfig defaults)
ARCH_DEFAULTS = {"coords": "none", "pooling": "avg"}
LAST, BEST = "last.pt", "best.pt"


# ---- RNG states ------------------------------------------------------------------------------------
def rng_state(aug_generator: torch.Generator | None = None) -> dict:
    """Every RNG the run draws from, as tensors / primitives (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if aug_generator is not None:
        state["aug"] = aug_generator.get_state()
    return state


def set_rng_state(state: dict, aug_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if aug_generator is not None and "aug" in state:
        aug_generator.set_state(state["aug"])


# ---- files -----------------------------------------------------------------------------------------
def save_checkpoint(state: dict, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, rename onto `path`."""
    state = {"format": FORMAT, "version": __version__, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


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


# ---- mirror ----------------------------------------------------------------------------------------
class Mirror:
    """Copies of last.pt / best.pt under a URI prefix (s3:// or a local folder), with retries."""

    def __init__(self, uri: str, s3: S3Options | None = None, tries: int = 4, backoff_s: float = 1.0):
        self.uri = str(uri).rstrip("/")
        self.s3 = s3
        self.tries = tries  # attempts per transfer
        self.backoff_s = backoff_s  # first wait between attempts; doubles each time

    def _retry(self, what: str, fn):
        """Call fn, retrying unclassified errors with backoff; a recognised S3 fault (no credentials,
        no bucket, access denied, endpoint silent after botocore's own tries) stops at once, in one line."""
        for attempt in range(self.tries):
            try:
                return fn()
            except FileNotFoundError:
                raise
            except Exception as e:  # noqa: BLE001 - network errors come in many types
                fault = s3_fault(e, self.uri, self.s3) if is_s3(self.uri) else None
                if fault is not None:
                    raise fault from None
                if attempt == self.tries - 1:
                    raise DataError(f"{what} failed after {self.tries} attempts: {type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:160] if str(e) else ''}; check the S3 "
                                    "endpoint/credentials (--s3-endpoint-url) and the bucket") from None
                time.sleep(self.backoff_s * 2 ** attempt)

    def upload(self, local: Path) -> str:
        """Upload `local` as URI/<name>; returns the remote URI."""
        fs, root = fsspec_filesystem(self.uri, self.s3)
        remote = f"{root}/{Path(local).name}"
        if not is_s3(self.uri):  # a local folder (or a mounted drive): atomic copy
            self._retry(f"mirroring {local} to {remote}", lambda: atomic_write_bytes(remote, Path(local).read_bytes()))
        else:
            self._retry(f"uploading {local} to {self.uri}/{Path(local).name}", lambda: fs.put_file(str(local), remote))
            fs.invalidate_cache()
        return f"{self.uri}/{Path(local).name}"

    def download(self, name: str, dest: Path) -> bool:
        """Fetch URI/<name> into `dest` (atomically); False when the mirror has no such file."""
        fs, root = fsspec_filesystem(self.uri, self.s3)
        fs.invalidate_cache()
        remote = f"{root}/{name}"
        try:
            if not self._retry(f"checking {self.uri}/{name}", lambda: fs.exists(remote)):
                return False
            data = self._retry(f"downloading {self.uri}/{name}", lambda: fs.cat_file(remote))
        except FileNotFoundError:
            return False
        atomic_write_bytes(dest, data)
        return True


def find_resume(run_dir: Path, resume: str | None, mirror: Mirror | None) -> Path | None:
    """The checkpoint to resume from: `auto` = RUN/last.pt, else the mirror's (copied into RUN); or a path."""
    if not resume:
        return None
    if resume != "auto":
        p = Path(resume)
        if not p.is_file():
            raise MissingInputError(f"--resume {resume}: no such checkpoint file (use --resume auto to continue RUN/last.pt)")
        return p
    last = Path(run_dir) / LAST
    if last.is_file():
        return last
    if mirror is not None and mirror.download(LAST, last):
        mirror.download(BEST, Path(run_dir) / BEST)
        return last
    return None


# ---- inference -------------------------------------------------------------------------------------
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
