"""The `dhs` entry point: every subcommand listed, version, and `--key=value` config overrides everywhere."""

import pytest

from darkhaloscope import __version__
from darkhaloscope.cli import main

COMMANDS = ("pack", "simulate", "audit", "train", "score", "evaluate", "review", "demo", "bench")
BENCHES = ("loader", "simulate", "audit", "train", "evaluate", "score")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(b in out for b in BENCHES)


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_key_value_is_a_config_override(tiny_tier):
    # the random-stamp tier audits GO with warnings; failing on warnings turns it NO-GO, by either spelling
    assert main(["audit", str(tiny_tier), "-q"]) == 0
    assert main(["audit", str(tiny_tier), "-q", "--fail_on=warning"]) == 3
    assert main(["audit", str(tiny_tier), "-q", "--set", "fail_on=warning"]) == 3


def test_unknown_key_and_unknown_flag_are_usage_errors(tiny_tier, capsys):
    assert main(["audit", str(tiny_tier), "--no_such_key=1"]) == 2
    assert "unknown config key(s) no_such_key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["audit", str(tiny_tier), "--no-such-flag"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["pack", str(tiny_tier), "out", "--rows=3"])  # pack has no config: not an override
    assert e.value.code == 2
