"""One writer per output: an advisory lock beside every file or folder a `dhs` command writes.

    with output_lock("tiers/real"):      # `dhs` takes it around every command with an --out (cli.main)
        build_cutout_tier(..., "tiers/real")

The lock is the file `.<name>.dhs-lock` next to the output (next to it, not inside: a tier or run folder
holds only its own files), holding the holder's pid, host, command and start time as JSON. It is created
atomically (written under a temp name, then hard-linked into place, which fails if it exists) and held with
`flock` for the life of the command. A second writer is refused (`OutputLockedError`, exit 3) naming the
holder. A lock left by a process that died (kill -9, power loss) on this host is reclaimed: its pid is gone,
or it no longer holds the flock (the pid was reused). A lock from another host is never reclaimed: the
message says which file to remove once that host's command is known to be gone. s3:// outputs are not
locked (object stores have no advisory locks). Parent folders made to hold the lock are removed again when the
command leaves them empty: a refused command (missing input, bad flag) leaves no folders behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from darkhaloscope.errors import RefusedError

LOCK_SUFFIX = ".dhs-lock"


class OutputLockedError(RefusedError):
    """Another `dhs` command is writing the same output (exit 3: refused)."""


def lock_path(out: str | os.PathLike) -> Path:
    """`.<name>.dhs-lock` beside the output, symlinks resolved: two spellings of one folder share one lock."""
    p = Path(out).resolve()
    return p.with_name(f".{p.name}{LOCK_SUFFIX}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode("utf-8", "replace"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict, path: Path) -> str:
    cmd = str(info.get("command", "?"))[:120]
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, `{cmd}` since {info.get('started', '?')}; "
            f"lock file {path}")


def _create(path: Path, info: dict) -> int | None:
    """The fd (flocked) of a new lock file at `path`, or None if one exists."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, json.dumps(info).encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            os.link(tmp, path)  # atomic: fails if a lock exists
        except FileExistsError:
            os.close(fd)
            return None
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _try_reclaim(path: Path, out: str) -> bool:
    """Remove a stale lock at `path` (its holder died on this host): True if removed; OutputLockedError if held."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False  # released meanwhile: try again
    try:
        info = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        same_host = info.get("host") == socket.gethostname()
        pid = info.get("pid")
        dead = same_host and isinstance(pid, int) and (not _alive(pid) or not held)
        if held or not dead:
            hint = "wait for it to finish" + ("" if same_host else
                                              ", or remove the lock file once that command is known to be gone")
            raise OutputLockedError(f"{out}: another dhs command is writing it ({_describe(info, path)}); {hint}")
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # still the stale one, not a newer lock
                path.unlink()
                return True
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike | None, note=None) -> Iterator[Path | None]:
    """Hold the lock of output `out` (file or folder, existing or not) for the duration of the block.

    None, s3:// and other URLs are not locked. `note(text)` is told when a stale lock is reclaimed."""
    if out is None or "://" in str(out):
        yield None
        return
    path = lock_path(out)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(["dhs"] + sys.argv[1:])[:500],
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    from darkhaloscope.redaction import redact

    info["command"] = redact(info["command"])
    for _ in range(5):
        fd = _create(path, info)
        if fd is not None:
            break
        if _try_reclaim(path, str(out)) and note is not None:
            note(f"note: {out}: took over the lock its earlier command left (that process is gone)")
    else:
        raise OutputLockedError(f"{out}: could not take its lock {path} (other commands keep taking it)")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)
        for d in created:  # folders made only to hold the lock, left empty (a refused command): removed
            try:
                d.rmdir()
            except OSError:
                break
