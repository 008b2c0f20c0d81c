"""The `dhs` command line: one entry point, one subcommand per job.

Each role package has a `commands.py` with `register(subparsers, bench_subparsers)` that adds its
subcommands; a subcommand's handler takes the parsed args and returns an exit status. `DHSError`s
become a one-line `error: ...` on stderr (credentials redacted) and their exit status (1 data, 2 usage,
3 refused / NO-GO, 4 environment: disk full, service unreachable; README "Reliability").
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from darkhaloscope import __version__
from darkhaloscope.errors import DHSError, DiskFullError, EnvironmentFault, is_disk_full

# Role packages that contribute subcommands, in the order the pipeline runs.
COMMAND_MODULES: tuple[str, ...] = (
    "darkhaloscope.stamps.commands",
    "darkhaloscope.sim.commands",
    "darkhaloscope.survey.commands",
    "darkhaloscope.audit.commands",
    "darkhaloscope.train.commands",
    "darkhaloscope.evaluate.commands",
    "darkhaloscope.review.commands",
    "darkhaloscope.demo.commands",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line + exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


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


_OVERRIDE = re.compile(r"^--[A-Za-z_][\w.-]*=")
_OVERRIDE_DESTS = ("set", "overrides")  # where commands with a config collect `--set KEY=VALUE`


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse argv; for commands that take `--set KEY=VALUE`, a bare `--key=value` is the same override
    (so every command accepts the `--key=value` form; the config loader rejects unknown keys)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        dest = next((d for d in _OVERRIDE_DESTS if hasattr(args, d)), None)
        bad = [x for x in extra if dest is None or not _OVERRIDE.match(x)]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        setattr(args, dest, list(getattr(args, dest) or []) + [x[2:] for x in extra])
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DHSError as e:
        return _fail(e)
    except (OSError, RuntimeError) as e:  # a fault of the machine, not a bug: one line, exit 4
        if is_disk_full(e):
            return _fail(DiskFullError(getattr(e, "filename", None) or "the output folder"))
        if not isinstance(e, OSError):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _fail(EnvironmentFault(f"{where}{e.strerror or e}; check the path, its permissions and free space"))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _fail(e: DHSError) -> int:
    """One `error:` line, credentials redacted, and the error's exit code."""
    from darkhaloscope.redaction import redact

    print(f"error: {redact(' '.join(str(e).split()))}", file=sys.stderr)
    return e.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
