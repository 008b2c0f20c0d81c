"""Typed errors that the CLI turns into one-line messages and exit codes.

Every message names the file / row / column concerned and says what to do about it.
"""


class DHSError(Exception):
    """Base class: `dhs` prints `error: <message>` on one line and exits with `exit_code`."""

    exit_code = 1


class DataError(DHSError):
    """Input data are unreadable or invalid (corrupt npz, missing column, NaN pixels, truncated file)."""

    exit_code = 1


class UsageError(DHSError):
    """The command line or config is wrong (unknown key, bad value, impossible parameter)."""

    exit_code = 2


class RefusedError(DHSError):
    """A guard refused to proceed (NO-GO: one-class split, forbidden input column)."""

    exit_code = 3


class StampDecodeError(DataError):
    """One stamp could not be decoded; `where` names the file and row."""

    def __init__(self, message: str, where: str = ""):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
