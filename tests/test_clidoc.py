"""docs/cli.md is the output of `python -m darkhaloscope.clidoc` (the parsers are the one source of truth)."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from darkhaloscope import clidoc
from darkhaloscope.cli import build_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_committed_cli_page_is_current():
    fresh = clidoc.render()
    committed = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    diff = "".join(difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True), "docs/cli.md (committed)",
                                        "generated", n=0))
    assert committed == fresh, f"docs/cli.md is stale: regenerate it with `{clidoc.REGENERATE}`\n{diff[:3000]}"


def test_every_command_and_option_is_on_the_page():
    page = clidoc.render()
    for name, _, parser in clidoc.subcommands(build_parser()):
        assert f"## `dhs {name}`" in page, name
        for action in parser._actions:
            for flag in action.option_strings:
                if action.help is not argparse.SUPPRESS and flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, (name, flag)


def test_markdown_from_the_parsers_is_escaped():
    assert clidoc.escape_md("a <b> *c* `x*y <z>` d_e") == r"a \<b\> \*c\* `x*y <z>` d\_e"
    assert clidoc.escape_md("keep `a|b` | c", table=True) == r"keep `a|b` \| c"
