"""Atomic writes: every file darkhaloscope writes appears whole or not at all (temp file + rename).

A write that runs out of space raises `DiskFullError` naming the file, after removing the temp file.
Temp files are named `.<name>.<random>.tmp`; a command killed mid-write leaves one behind, and
`clean_temps(folder)` removes them at the command's next start (train, score, evaluate, pack, simulate).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from darkhaloscope.errors import DiskFullError, is_disk_full

TEMP_GLOB = ".*.tmp"  # what atomic_path names its temp files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it is fsynced and renamed onto `path`.

    On any exception the temporary file is removed and `path` is left as it was; running out of space
    (also as torch.save's `unexpected pos`) becomes DiskFullError(path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(path) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs (checkpoints, reports) are meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(e):
            raise DiskFullError(path) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def clean_temps(folder: str | os.PathLike, recursive: bool = False, name: str | None = None) -> list[Path]:
    """Remove the temp files (`.*.tmp`; only those of file `name` if given) a killed command left in
    `folder` (and below, if `recursive`); the real files are untouched. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*.tmp" if name else TEMP_GLOB
    stale = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    for p in stale:
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return stale


def remove_stale(folder: str | os.PathLike, pattern: str, *, keep=(), since: float | None = None) -> list[Path]:
    """Remove what an earlier run left in the same --out and this run did not write again (PNGs of candidates
    no longer listed, a figure no longer made): the files of `folder` matching `pattern`, except `keep`, and
    when `since` (a `time.time()` taken as the command started) is given, only those last written over a
    second (clock granularity) before it. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    kept = {Path(p).resolve() for p in keep}
    stale = [p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink() and p.resolve() not in kept
             and (since is None or p.stat().st_mtime < since - 1.0)]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale
