"""Where the shared data sets are (a uniquely named helper module, as s3util.py): `../shared` beside the
checkout, or $DHS_SHARED (a worktree elsewhere). Tests that need them skip with that path named."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("DHS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DR10_DIR = SHARED / "data" / "dr10_cutouts"  # six real DR10 candidate stamps + DR10 host cutouts (npz)
LRG = SHARED / "data" / "dr10_lrg_catalog" / "lrg_parent_catalog.parquet"  # a DR10 LRG Tractor catalog
