"""What built a tier, read from the manifests beside its files: `dhs simulate` / `dhs cutouts` write
`manifest.json`, `dhs pack` writes `_dhs_packed.json` (whose `source` names the tier it packed).

    design = survey_design(open_tier("tiers/real"))   # None for a simulated tier
    design.neg_per_pos                                 # 100.0: the target list's negatives per lens

Used by `dhs audit` (a real search's 100:1 tier is imbalanced by design, not by mistake) and `dhs train`
(a real tier missing lenses in a split is fixed in `dhs catalog`, not by re-simulating).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from darkhaloscope.stamps.fs import arrow_filesystem, is_s3
from darkhaloscope.stamps.tier import Tier

TIER_MANIFEST = "manifest.json"  # written last by `dhs simulate` and `dhs cutouts`
PACKED_MANIFEST = "_dhs_packed.json"  # written last by `dhs pack`
SURVEY_KIND = "survey cutouts"  # the `tier_kind` of a `dhs cutouts` manifest


@dataclass(frozen=True)
class SurveyDesign:
    """A tier of real survey cutouts of a `dhs catalog` target list."""

    neg_per_pos: float | None  # negatives per lens the target list was built with (None: not recorded)
    targets: tuple[str, ...]  # the target lists the cutouts were fetched for


def tier_base(tier: Tier) -> str:
    """The folder holding a tier's files and manifests (the parent of a single-file tier)."""
    root = tier.root.rstrip("/")
    return posixpath.dirname(root) if root.endswith(".parquet") else root


def _read_json(fs, path: str) -> dict | None:
    try:
        with fs.open_input_stream(path) as fh:
            out = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def read_tier_json(tier: Tier, name: str) -> dict | None:
    """The JSON file `name` beside a tier's files (None when absent or unreadable)."""
    return _read_json(tier.fs, f"{tier_base(tier)}/{name}")


def _read_source_json(uri: str, name: str, s3) -> dict | None:
    """The JSON file `name` in the folder `uri` (a packed tier's source); None when it cannot be read."""
    try:
        fs, base = arrow_filesystem(uri, s3 if is_s3(uri) else None)
    except Exception:  # noqa: BLE001 - an unreachable source only means the design is unknown
        return None
    return _read_json(fs, f"{base.rstrip('/')}/{name}")


def survey_design(tier: Tier) -> SurveyDesign | None:
    """The design of a `dhs cutouts` tier, or of a `dhs pack` copy of one (None for any other tier)."""
    m = read_tier_json(tier, TIER_MANIFEST)
    if m is None:
        packed = read_tier_json(tier, PACKED_MANIFEST)
        source = (packed or {}).get("source")
        m = _read_source_json(str(source), TIER_MANIFEST, tier.s3) if source else None
    if not m or not (m.get("tier_kind") == SURVEY_KIND or "targets" in m):  # older cutouts manifests: targets only
        return None
    ratio = m.get("neg_per_pos")
    return SurveyDesign(float(ratio) if isinstance(ratio, (int, float)) else None, tuple(m.get("targets") or ()))
