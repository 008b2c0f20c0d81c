"""Fixtures for the training tests: a small tier (tierfactory, not the simulator), shared per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierfactory import make_tier


@pytest.fixture(scope="session")
def train_tier(tmp_path_factory) -> Path:
    """3 splits x 96 rows (half controls), 2 files per split, 16-row row groups."""
    return make_tier(tmp_path_factory.mktemp("train") / "tier", rows_per_split=96, files_per_split=2,
                     row_group_size=16, seed=1)
