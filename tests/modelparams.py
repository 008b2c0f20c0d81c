"""Parametrize a test over every registered model, the heavy ones marked slow (used by tests/models, tests/train).

Heaviness is read from the manual's models table (docs/models.md) (checked against torch's FLOP count by
tests/models/test_models.py::test_models_table_params_and_flops), so collecting the tests counts no FLOPs.
"""

from pathlib import Path

import pytest

from darkhaloscope.models import list_models
from darkhaloscope.models.table import read_table

MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"
MODELS_TABLE = read_table(MODELS_PAGE)  # {name: (params, GFLOPs per 64x64 stamp)}
HEAVY_GFLOPS = 1.0  # models above this forward cost run in the slow tier (batch-2 CPU passes take seconds)


def every_model() -> list:
    """pytest.param per registered model; those above HEAVY_GFLOPS in the models table are marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if MODELS_TABLE.get(n, (0, 0))[1] > HEAVY_GFLOPS else n
            for n in list_models()]
