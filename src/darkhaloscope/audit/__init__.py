"""The data gate: `dhs audit DATA` checks a tier (local or s3://) before a GPU hour is spent.

Python API (used by `dhs review` / `dhs demo`): `run_audit(uri, config=AuditConfig(), s3=None,
progress=False) -> AuditReport` with `.findings`, `.verdict` ('GO' | 'NO-GO'), `.to_json()`,
`.to_markdown()` and `.render()` (terminal table). Importable without torch.
"""

from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.audit.report import AuditReport, Finding
from darkhaloscope.audit.run import run_audit

__all__ = ["AuditConfig", "AuditReport", "Finding", "run_audit"]
