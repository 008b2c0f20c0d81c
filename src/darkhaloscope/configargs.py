"""Command-line wiring of the typed configs: one rule for every command that has settings.

    add_config_arguments(parser, TrainConfig, "train")      # in a commands.py register()
    cfg = config_from_args(args)                            # in its handler

gives the command `--config NAME_OR_FILE` (a YAML file, or a preset shipped in the package:
`darkhaloscope/presets/<section>/<name>.yaml`), `--preset NAME`, `--set KEY=VALUE` (repeatable) and one
`--key=value` flag per dataclass field (nested ones as `--section.key`), whose help is the field's comment
(unit, reason) and its default. Defaults live only in the dataclasses; a preset holds only what it
changes. Later wins: defaults < preset/file < `--set` < `--key=value`. Keys match exactly (no prefix
abbreviations); an unknown key lists the valid ones with a "did you mean". Exercised by every `dhs X --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import typing
from pathlib import Path
from typing import Any

from darkhaloscope.config import did_you_mean, load_config, parse_overrides
from darkhaloscope.errors import UsageError

PRESET_DIR = Path(__file__).resolve().parent / "presets"  # package data: found installed or from a checkout
CFG_PREFIX = "cfg:"  # argparse dest prefix of the per-key flags


def list_presets(section: str) -> list[str]:
    return sorted(p.stem for p in (PRESET_DIR / section).glob("*.yaml"))


def preset_path(section: str, name: str) -> Path:
    path = PRESET_DIR / section / f"{name}.yaml"
    if not path.is_file():
        have = list_presets(section)
        raise UsageError(f"no preset {name!r} for dhs {section}; presets: {', '.join(have) or 'none'}"
                         + did_you_mean(name, have))
    return path


def config_source(section: str, config: str | None = None, preset: str | None = None) -> Path | None:
    """The YAML that `--config NAME_OR_FILE` / `--preset NAME` name: an existing file, else a preset."""
    if config and preset:
        raise UsageError("give --config or --preset, not both")
    if preset:
        return preset_path(section, preset)
    if not config:
        return None
    if Path(config).is_file():
        return Path(config)
    if "/" not in config and not config.endswith((".yaml", ".yml")) and (PRESET_DIR / section / f"{config}.yaml").is_file():
        return PRESET_DIR / section / f"{config}.yaml"
    have = list_presets(section)
    raise UsageError(f"--config {config}: no such file, and not a preset of dhs {section} "
                     f"(presets: {', '.join(have) or 'none'}){did_you_mean(config, have)}")


def field_comments(cls) -> dict[str, str]:
    """{field: its trailing '# comment'} from the dataclass source. A comment line below continues it when
    its text is indented deeper than the field or the comment has an open parenthesis (else it is a heading)."""
    return dict(_field_comments(cls))


@functools.cache
def _field_comments(cls) -> dict[str, str]:
    """`field_comments`, read once per class: every parser build (each `dhs` call, each `cli.main` of the
    tests) asks again, and reading the source is most of the parser's cost. A dataclass that subclasses
    another (to change a default) keeps its base's comments for the fields it does not restate."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update(_own_field_comments(klass))
    return out


def _own_field_comments(cls) -> dict[str, str]:
    """The comments of the fields written in `cls`'s own source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    last, indent = None, 0
    for line in src.splitlines():
        m = re.match(r"^(\s+)(\w+):[^#\n]*#\s*(.*)$", line)
        c = re.match(r"^(\s+#\s*)(.*)$", line)
        if m:
            last, indent = m.group(2), len(m.group(1))
            out[last] = m.group(3).strip()
        elif last and c and (len(c.group(1)) > indent + 2 or out[last].count("(") > out[last].count(")")):
            out[last] += " " + c.group(2).strip()
        else:
            last = None
    return out


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        v = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        v = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v) or "(empty)"
    if v == "":
        return '""'
    return str(v)


def add_config_arguments(parser: argparse.ArgumentParser, cls, section: str, *, skip: tuple[str, ...] = (),
                         config_flag: str = "--config", preset_flag: bool = True) -> None:
    """`--config`, `--preset`, `--set` and one flag per key of `cls` (except `skip`, which the command
    spells its own way). Values stay text until `config_from_args` types and validates them.
    `preset_flag=False`: the command gives `--preset` another meaning (dhs review: the planned run's)."""
    presets = list_presets(section)
    names = f" (presets: {', '.join(presets)})" if presets else ""
    g = parser.add_argument_group(f"settings ({cls.__name__}; defaults below, in the units given)")
    g.add_argument(config_flag, dest="config", default=None, metavar="NAME_OR_FILE",
                   help=f"YAML of {cls.__name__} keys" + (f", or the name of a preset{names}" if presets else ""))
    if preset_flag:
        g.add_argument("--preset", default=None, metavar="NAME", help=f"a preset shipped with darkhaloscope{names}")
    g.add_argument("--set", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="same as --KEY=VALUE (repeatable)")
    add_key_flags(g, cls, "", skip)
    parser.set_defaults(config_class=cls, config_section=section)


def add_key_flags(group, cls, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """One `--PREFIXkey` flag per key of `cls` (nested dataclasses as `--PREFIXkey.sub`); `given_overrides`
    reads them back as {PREFIXkey: text}."""
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if name in skip:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            add_key_flags(group, hints[f.name], f"{name}.", skip)
            continue
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}
        text = comments.get(f.name, "").replace("%", "%%")
        group.add_argument(*flags, dest=CFG_PREFIX + name, default=argparse.SUPPRESS, metavar="V",
                           help=f"{text} [default: {_default_text(f).replace('%', '%%')}]", **extra)


def given_overrides(args: argparse.Namespace) -> dict[str, str]:
    """What the command line set: `--set key=value` items, then the `--key=value` flags, as {key: text}."""
    flags = {k[len(CFG_PREFIX):]: v for k, v in vars(args).items() if k.startswith(CFG_PREFIX)}
    return {**parse_overrides(getattr(args, "set", None)), **flags}


def config_from_args(args: argparse.Namespace, extra: dict | None = None, default: Path | str | None = None,
                     cls=None, section: str | None = None):
    """Resolve the command's config: dataclass defaults < `default` (a YAML used when no --config/--preset)
    < --config/--preset < --set < --key=value < `extra` (what the command's own flags mean)."""
    cls = cls or args.config_class
    source = config_source(section or args.config_section, getattr(args, "config", None),
                           getattr(args, "preset", None)) or default
    overrides = {**given_overrides(args), **(extra or {})}
    return load_config(cls, source, overrides)


def given_argv(args: argparse.Namespace) -> list[str]:
    """The settings as given on the command line (for run.json): --config/--preset, then --key=value."""
    out = [f"--config={args.config}"] if getattr(args, "config", None) else []
    out += [f"--preset={args.preset}"] if getattr(args, "preset", None) else []
    return out + [f"--{k}={v}" for k, v in given_overrides(args).items()]


def int_arg(lo: int, hi: int):
    """An argparse `type`: a whole number in lo..hi, else a one-line usage error (no traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range {lo}..{hi:,}")
        return value
    parse.__name__ = "whole number"
    return parse
