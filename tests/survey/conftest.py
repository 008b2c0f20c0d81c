"""Fixtures for the real-target tests: the shared DR10 LRG catalog, a synthetic sweep-like FITS catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from shareddata import DR10_DIR as CUTOUTS
from shareddata import LRG


@pytest.fixture(scope="session")
def lrg_catalog() -> Path:
    if not LRG.is_file():
        pytest.skip(f"shared DR10 LRG catalog not found at {LRG} (the ../shared folder is missing)")
    return LRG


@pytest.fixture(scope="session")
def real_cutouts() -> Path:
    if not CUTOUTS.is_dir():
        pytest.skip(f"shared DR10 cutouts not found at {CUTOUTS} (the ../shared folder is missing)")
    return CUTOUTS
