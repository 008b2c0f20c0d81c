"""The `dhs` command line: one entry point, one subcommand per job.

Each role package has a `commands.py` with `register(subparsers, bench_subparsers)` that adds its
subcommands; a subcommand's handler takes the parsed args and returns an exit status. `DHSError`s
become a one-line `error: ...` on stderr (credentials redacted) and their exit status (1 data, 2 usage,
3 refused / NO-GO, 4 environment: disk full, service unreachable; docs/reliability.md). Every command's
output (`--out` / OUT) is locked for its run (`darkhaloscope.outlock`): a second writer is refused.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys

from darkhaloscope import __version__
from darkhaloscope.config import config_keys, did_you_mean, unknown_key_message
from darkhaloscope.errors import DHSError, DiskFullError, EnvironmentFault, UsageError, is_disk_full
from darkhaloscope.outlock import output_lock

# Role packages that contribute subcommands, in the order the pipeline runs.
COMMAND_MODULES: tuple[str, ...] = (
    "darkhaloscope.stamps.commands",
    "darkhaloscope.inject.commands",
    "darkhaloscope.survey.commands",
    "darkhaloscope.audit.commands",
    "darkhaloscope.train.commands",
    "darkhaloscope.score.commands",
    "darkhaloscope.evaluate.commands",
    "darkhaloscope.review.commands",
    "darkhaloscope.grade.commands",
    "darkhaloscope.demo.commands",
)


class _Parser(argparse.ArgumentParser):
    """No prefix abbreviations (`--epoch=2` is not `--epochs`); a usage error is one line + exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        m = re.search(r"invalid choice: '([^']*)'", message)
        if m:
            choices = [c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices]
            message = f"{self.prog}: no command {m.group(1)!r}{did_you_mean(m.group(1), choices)}; " \
                      f"commands: {', '.join(choices)}"
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dhs", description="darkhaloscope: audit, train and evaluate strong-lens finders "
                     "on Legacy Surveys stamps. Start with `dhs demo`.")
    parser.add_argument("--version", action="version", version=f"darkhaloscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    bench = sub.add_parser("bench", help="measure throughput (loader, train, ...)")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT", parser_class=_Parser)
    bench.set_defaults(func=lambda a: (bench.print_help(), 2)[1])
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, bench_sub)
    return parser


_OVERRIDE = re.compile(r"^--([A-Za-z_][\w.-]*)(=|$)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse argv. Commands with a config (`configargs.add_config_arguments`) have one flag per key, so
    what is left over is an unknown key: name the valid ones."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    m = _OVERRIDE.match(extra[0])
    cls = getattr(args, "config_class", None)
    prog = " ".join(["dhs"] + [c for c in (getattr(args, "command", None), getattr(args, "bench_command", None)) if c])
    if cls is not None and m:
        key = m.group(1).replace("-", "_")
        own = _own_flag(parser, args, key) if key in config_keys(cls) else None
        if own:
            _usage_error(prog, f"config key {key!r} is set with this command's own flag {own}")
        _usage_error(prog, unknown_key_message(cls, key))
    _usage_error(prog, f"unrecognized arguments: {' '.join(extra)}")


def _own_flag(parser: argparse.ArgumentParser, args: argparse.Namespace, key: str) -> str | None:
    """The flag a command spells a config key with (`dhs cutouts --rate-limit` sets `rate_limit_per_s`)."""
    for name in ("command", "bench_command"):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, name, None) not in sub.choices:
            break
        parser = sub.choices[getattr(args, name)]
    for action in parser._actions:
        dest = action.dest
        if action.option_strings and (key == dest or key.startswith(dest + "_")):
            return action.option_strings[-1] if len(action.option_strings) == 1 else action.option_strings[0]
    return None


def _usage_error(prog: str, message: str):
    print(f"error: {message} (see `{prog} --help`)", file=sys.stderr)
    raise SystemExit(2)


PATH_SHAPE_ERRNOS = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG)  # usage faults (exit 2)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with output_lock(_output_of(args), note=lambda s: print(s, file=sys.stderr)):
            return int(args.func(args) or 0)
    except DHSError as e:
        return _fail(e)
    except (OSError, RuntimeError) as e:  # a fault of the machine, not a bug: one line, exit 4
        if is_disk_full(e):
            return _fail(DiskFullError(getattr(e, "filename", None) or "the output folder"))
        if not isinstance(e, OSError):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        if e.errno in PATH_SHAPE_ERRNOS:  # the path given cannot be one: a file where a folder must be, too long
            return _fail(UsageError(f"{where}{e.strerror or e} (a file where a folder is needed, a folder where a file "
                                    "is, or a name too long); give another path"))
        return _fail(EnvironmentFault(f"{where}{e.strerror or e}; check the path, its permissions and free space"))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _output_of(args: argparse.Namespace) -> str | None:
    """What the command writes (its --out / OUT), locked against a second writer; None under torchrun ranks
    other than 0 (they share rank 0's --out and write nothing)."""
    out = getattr(args, "out", None)
    if out is None or os.environ.get("RANK", "0") not in ("", "0"):
        return None
    return str(out)


def _fail(e: DHSError) -> int:
    """One `error:` line, credentials redacted, and the error's exit code."""
    from darkhaloscope.common.report.render import printable
    from darkhaloscope.redaction import redact

    print(f"error: {printable(redact(' '.join(str(e).split())))}", file=sys.stderr)  # data strings: no ESC
    return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
