"""Fixture of the audit tests: one small tier made by `dhs simulate` per session (broken copies of it are
made with `brokentier.mutate`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from brokentier import ROW_GROUP_ROWS  # noqa: E402

from darkhaloscope.cli import main  # noqa: E402


@pytest.fixture(scope="session")
def sim_tier(tmp_path_factory) -> Path:
    """`dhs simulate`: 240 rows (train/val/test 70/15/15, half controls), paired controls, 3 files per split.

    The audit checks read the tier's columns and image statistics, not the fine structure of the arcs, so
    the simulator's costliest realism is off (no sub-pixel sampling, no Poisson noise of the added light,
    no star-forming knots): same rows, hosts, arcs and confusers, ~half the time. Drawn by the batched torch
    engine (the same plan and draws as the numpy reference, tested in tests/inject): 2.3 s CPU, not 4.7."""
    out = tmp_path_factory.mktemp("sim")
    cheap = ["--supersample=1", "--photon_noise=false", "--src_knots=0,0", "--engine=torch"]
    rc = main(["simulate", "--out", str(out), "--tier", "fair", "--rows", "240", "--seed", "7", "--pair",
               "--rows-per-file", "80", "--set", f"row_group_rows={ROW_GROUP_ROWS}", "--workers", "1", "-q", *cheap])
    assert rc == 0
    return out / "fair"
