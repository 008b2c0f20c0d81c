"""Checkpoints: plain dicts of tensors and python primitives, written atomically, optionally mirrored.

    RUN/last.pt   newest state (every N steps / N minutes / epoch end): resume with `--resume auto`
    RUN/best.pt   state at the best val AUROC so far: what scoring uses
    load_for_inference("RUN/best.pt")  -> (model in eval mode, PreprocessConfig, meta)

A checkpoint holds model, optimizer, scheduler, grad scaler, the RNG states (torch, CUDA, numpy, python,
the augmentation generator), the data cursor (epoch, batches done), the resolved config (model name and
preprocessing included), the input band names (`bands`) and the package version. It is written to a temp file and renamed, so a kill -9 during the write leaves the previous
file whole; it is read back with `torch.load(weights_only=True)` (no pickled code is ever executed).
With `--checkpoint_uri s3://bucket/prefix` each saved file is uploaded (retried with backoff; each upload
bounded in wall-clock time, `stamps.fs.write_timeout_s`, ending in one exit-4 line), and
`--resume auto` on an empty run folder (a fresh Colab session) pulls last.pt from there.
Exercised by `dhs train ... --resume auto` and by scoring (`load_for_inference`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from darkhaloscope import __version__
from darkhaloscope.errors import DataError, DHSError, EnvironmentFault, MissingInputError
from darkhaloscope.fileio import atomic_path, atomic_write_bytes
from darkhaloscope.runtime.loading import ARCH_DEFAULTS, FORMAT, load_checkpoint  # noqa: F401 (re-exported)
from darkhaloscope.stamps.fs import (S3Options, call_with_deadline, fsspec_filesystem, is_s3, redact, s3_fault,
                                     write_timeout_s)

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
            except (FileNotFoundError, DHSError):
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
            nbytes = Path(local).stat().st_size
            seconds = write_timeout_s(nbytes)
            endpoint = redact((self.s3.endpoint_url if self.s3 else None) or "the default AWS endpoint")
            fault = lambda: EnvironmentFault(  # noqa: E731
                f"{self.uri}/{Path(local).name}: S3 endpoint {endpoint} unreachable or not answering: the upload of "
                f"{nbytes / 1e6:.1f} MB did not finish within {seconds:.1f} s (3 x the read timeout, "
                "$DHS_S3_READ_TIMEOUT_S, + 1 s per MB); check --s3-endpoint-url / AWS_ENDPOINT_URL and the network")
            self._retry(f"uploading {local} to {self.uri}/{Path(local).name}",
                        lambda: call_with_deadline(lambda: fs.put_file(str(local), remote), seconds, fault))
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
