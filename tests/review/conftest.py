"""Fixtures of the review tests: one `dhs demo --quick` per session (its tiers and run are reused by the
review tests), and one torch thread per test (on a shared 2-core
machine two intra-op threads oversubscribe and run a small CNN up to 8x slower)."""

from __future__ import annotations

import pytest
import torch
from shareddata import DR10_DIR


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory, request):
    """`dhs demo --quick` (with the DR10 hosts when present), run once; asserted in test_demo.py."""
    from darkhaloscope.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    hosts = DR10_DIR
    argv = ["demo", "--out", str(out), "--quick", "--workers", "2"] + (["--real-hosts", str(hosts)] if hosts.is_dir() else [])
    rc = main(argv)
    (out / "exit_code").write_text(str(rc))
    yield out
    torch.set_num_threads(before)
