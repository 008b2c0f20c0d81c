"""Typed configuration: dataclasses (the only defaults) + a preset or YAML file + `--key=value` overrides.

Every command that has settings defines a dataclass whose fields carry their unit in a comment, e.g.

    @dataclass
    class TrainConfig:
        lr: float = 3e-4          # AdamW peak learning rate
        batch_size: int = 256     # stamps per optimizer step (per rank)

and resolves it with `load_config(TrainConfig, path_or_None, ["--lr=1e-3"])` (the command-line side,
presets included, is `darkhaloscope.configargs`). Values are checked before any work: unknown keys
(with a "did you mean"), wrong types, NaN/inf floats, integers beyond int64, negative seeds. The
resolved config is written next to every run with `save_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from darkhaloscope.errors import MissingInputError, UsageError

T = TypeVar("T")
INT_MAX = 2**63 - 1  # every integer setting must fit an int64 (numpy, torch, parquet)
SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 0 <= seed < 2**32


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def config_keys(cls, prefix: str = "") -> list[str]:
    """Every settable key of `cls`, nested dataclasses as 'section.key'."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def unknown_key_message(cls, key: str, prefix: str = "") -> str:
    keys = config_keys(cls, prefix)
    return f"unknown config key {key!r} for {cls.__name__}{did_you_mean(key, keys)}; valid keys: {', '.join(keys)}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (from YAML or a command-line string) to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        last_err: Exception | None = None
        for a in inner:
            try:
                return _coerce(value, a, key)
            except UsageError as e:
                last_err = e
        raise last_err or UsageError(f"config key '{key}': cannot parse {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key '{key}': expected a list, got {value!r}")
        item_tp = args[0] if args else str
        out = [_coerce(v, item_tp, key) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"config key '{key}': expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
        try:
            if tp is int:
                out = int(value) if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()) \
                    else _whole(float(value))
                if abs(out) > INT_MAX:
                    raise UsageError(f"config key '{key}': {value} is too large (at most {INT_MAX})")
                if key.rsplit(".", 1)[-1] == "seed" and not 0 <= out <= SEED_MAX:
                    raise UsageError(f"config key '{key}': seed {out} must be in 0..{SEED_MAX}")
                return out
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"config key '{key}': expected {tp.__name__}, got {value!r}") from None
        if not math.isfinite(out):
            raise UsageError(f"config key '{key}': {value!r} is not a finite number")
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise UsageError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UsageError(f"config key '{key}': expected a mapping, got {value!r}")
        return _from_dict(tp, value, prefix=f"{key}.")
    return value


def _whole(f: float) -> int:
    if not math.isfinite(f) or f != int(f):
        raise ValueError
    return int(f)


def _from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(unknown_key_message(cls, prefix + unknown[0], prefix))
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn `['--lr=1e-3', 'epochs=5']` into `{'lr': '1e-3', 'epochs': '5'}` (dashes become underscores)."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        s = item[2:] if item.startswith("--") else item
        if "=" not in s:
            raise UsageError(f"override {item!r} must look like --key=value")
        k, v = s.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """`--shard K/N` (0-based K < N, like a SLURM array index) -> (K, N); None or '' -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected K/N with integers, e.g. 0/8 (K counts from 0)") from None
    if not (n >= 1 and 0 <= k < n):
        raise UsageError(f"--shard {text!r}: need 0 <= K < N (K counts from 0, like a SLURM array index)")
    return k, n


def _set_nested(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise UsageError(f"override {dotted!r}: {p} is not a section")
    data[parts[-1]] = value


def load_config(cls: type[T], path: str | os.PathLike | None = None,
                overrides: list[str] | dict | None = None) -> T:
    """Build `cls` from defaults, then the YAML file at `path`, then the overrides; validate types."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise MissingInputError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UsageError(f"config file {p} is not valid YAML: {e}".splitlines()[0]) from None
        if not isinstance(loaded, dict):
            raise UsageError(f"config file {p} must hold a mapping of key: value")
        data.update(loaded)
    ov = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    for k, v in ov.items():
        _set_nested(data, k, v)
    cfg = _from_dict(cls, data)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from darkhaloscope.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def git_commit() -> str:
    """The git commit of the installed source tree, or 'unknown'."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def run_info(argv: list[str] | None = None) -> dict:
    """Command line, package version and git commit: written into every run folder."""
    from darkhaloscope import __version__
    from darkhaloscope.redaction import redact

    return {
        "command": redact(" ".join(["dhs"] + list(argv if argv is not None else sys.argv[1:]))),
        "version": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
    }
