"""The data gate: `dhs audit DATA` checks a tier (local or s3://) before a GPU hour is spent.

Python API (used by `dhs review` / `dhs demo`): `run_audit(uri, config=AuditConfig(), s3=None,
progress=False) -> AuditReport` with `.findings`, `.verdict` ('GO' | 'NO-GO'), `.to_json()`,
`.to_markdown()` and `.render()` (terminal table). Importable without torch; the names below load on
first use, so `darkhaloscope.audit.config` (what `dhs audit --help` needs) imports no scipy.
"""

import importlib

_EXPORTS = {"AuditConfig": "darkhaloscope.audit.config", "AuditReport": "darkhaloscope.audit.report",
            "Finding": "darkhaloscope.common.report", "run_audit": "darkhaloscope.audit.run"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'darkhaloscope.audit' has no attribute {name!r}")
