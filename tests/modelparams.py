"""Parametrize a test over every registered model, the heavy ones marked slow (used by tests/models, tests/train).

Heaviness is read from the README's models table (checked against torch's FLOP count by
tests/models/test_models.py::test_readme_table_params_and_flops), so collecting the tests counts no FLOPs.
"""

from pathlib import Path

import pytest

from darkhaloscope.models import list_models
from darkhaloscope.models.table import read_readme_table

README = Path(__file__).resolve().parents[1] / "README.md"
README_TABLE = read_readme_table(README)  # {name: (params, GFLOPs per 64x64 stamp)}
HEAVY_GFLOPS = 1.0  # models above this forward cost run in the slow tier (batch-2 CPU passes take seconds)


def every_model() -> list:
    """pytest.param per registered model; those above HEAVY_GFLOPS in the README table are marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if README_TABLE.get(n, (0, 0))[1] > HEAVY_GFLOPS else n
            for n in list_models()]
