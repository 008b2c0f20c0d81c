"""Typed errors that the CLI turns into one-line messages and exit codes.

Every message names the file / row / column / URL concerned and says what to do about it. Exit codes
(the table in docs/reliability.md): 0 ok / GO, 1 bad data, 2 usage, 3 refused / NO-GO, 4 environment
(disk full, unreachable or misconfigured service, missing credentials). Exercised by every `dhs` command.
"""

import errno


class DHSError(Exception):
    """Base class: `dhs` prints `error: <message>` on one line and exits with `exit_code`."""

    exit_code = 1


class DataError(DHSError):
    """Input data are unreadable or invalid (corrupt npz, missing column, NaN pixels, truncated file)."""

    exit_code = 1


class UsageError(DHSError):
    """The command line or config is wrong (unknown key, bad value, impossible parameter, missing input
    path, output that already exists)."""

    exit_code = 2


class MissingInputError(UsageError):
    """An input named on the command line (tier, file, checkpoint, bucket) does not exist: exit 2 in every
    command, local path or s3:// alike."""


class RefusedError(DHSError):
    """A guard refused to proceed (NO-GO: one-class split, forbidden input column, wrong label type)."""

    exit_code = 3


class EnvironmentFault(DHSError):
    """The machine or a service failed, not the data or the command line: disk full, S3 endpoint
    unreachable or silent, bucket missing, no credentials. Retrying after fixing it is safe."""

    exit_code = 4


class DiskFullError(EnvironmentFault):
    """No space left while writing `path`; the partial file was removed."""

    def __init__(self, path):
        self.path = str(path)
        super().__init__(f"disk full: {self.path} (nothing was half-written; free space and run the command again)")


class StampDecodeError(DataError):
    """One stamp could not be decoded; `where` names the file and row."""

    def __init__(self, message: str, where: str = ""):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


def is_disk_full(e: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when torch.save reports it as `unexpected pos ...` or a failed write."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, RuntimeError):
        msg = str(e)
        return "unexpected pos" in msg or "No space left" in msg or "failed writing file" in msg
    return False
