"""The audit gate of `dhs train --inject`: before the first step, a few rendered batches go through the pixel
checks `dhs audit` runs on a stored tier (shortcut probe, paired controls, paired hosts: audit/checks_signal.py),
with the same GO/NO-GO (AuditConfig's fail_on): NO-GO refuses the run, exit 3, before anything is written.

    report = audit_source(source, stamps=512)     # an AuditReport; raises RefusedError on NO-GO

The batches are rendered from their own seeds (not the training batches'), written as a one-split Phase 4c
tier (stamps, is_control, confuser_kind, arc_flux_r_nmgy, and each lens's host without the arc as
ctrl_stamp_npz) in a temporary folder, and decoded by the audit's own sampler. Exercised by
`dhs train --inject` and tests/train/test_onthefly_audit.py.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.audit import checks_signal  # noqa: F401 - registers the checks run here
from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.audit.pixels import ARC_FLUX_COLUMN, sample_pixels
from darkhaloscope.audit.registry import CHECKS, AuditContext
from darkhaloscope.audit.report import AuditReport
from darkhaloscope.errors import RefusedError
from darkhaloscope.stamps.codec import encode_stamp
from darkhaloscope.stamps.schema import CONFUSER_COLUMN, CTRL_STAMP_COLUMN, LABEL_SOURCE_COLUMN, STAMP_COLUMN
from darkhaloscope.stamps.tier import open_tier
from darkhaloscope.train.onthefly_source import AUDIT_STREAM, InjectSource, RenderedBatch

GATE_CHECKS = ("shortcut", "paired", "paired_hosts")  # the audit's checks that look at how stamps were made


def _write_tier(root: Path, batches: list[RenderedBatch]) -> None:
    cols: dict[str, list] = {c: [] for c in ("stamp_id", STAMP_COLUMN, LABEL_SOURCE_COLUMN, CTRL_STAMP_COLUMN,
                                             ARC_FLUX_COLUMN, CONFUSER_COLUMN)}
    for b in batches:
        for j, rid in enumerate(b.row_ids):
            cols["stamp_id"].append(rid)
            cols[STAMP_COLUMN].append(encode_stamp(b.images[j], compress=False))
            cols[LABEL_SOURCE_COLUMN].append(1 - int(b.labels[j]))
            cols[CTRL_STAMP_COLUMN].append(None if b.ctrl[j] is None else encode_stamp(b.ctrl[j], compress=False))
            cols[ARC_FLUX_COLUMN].append(b.columns[j].get(ARC_FLUX_COLUMN))
            cols[CONFUSER_COLUMN].append(b.columns[j].get(CONFUSER_COLUMN))
    types = {STAMP_COLUMN: pa.binary(), CTRL_STAMP_COLUMN: pa.binary(), LABEL_SOURCE_COLUMN: pa.int32(),
             ARC_FLUX_COLUMN: pa.float64(), CONFUSER_COLUMN: pa.string(), "stamp_id": pa.string()}
    path = root / "region_split=train" / "part-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({c: pa.array(v, types[c]) for c, v in cols.items()}), path, row_group_size=256)


def audit_batches(batches: list[RenderedBatch], config: AuditConfig | None = None) -> AuditReport:
    """The gate's checks on rendered batches: an AuditReport (verdict GO / NO-GO by `config.fail_on`)."""
    cfg = config or AuditConfig()
    with tempfile.TemporaryDirectory(prefix="dhs-onthefly-audit-") as tmp:
        _write_tier(Path(tmp), batches)
        tier = open_tier(tmp)
        pixels = sample_pixels(tier, cfg, full=True)
        ctx = AuditContext(tier, cfg, None, pixels)
        findings = [f for name in GATE_CHECKS for f in CHECKS[name](ctx)]
    stamps = sum(len(b.row_ids) for b in batches)
    return AuditReport(uri=f"{len(batches)} on-the-fly batch(es), {stamps} stamps", findings=findings,
                       fail_on=cfg.fail_on, summary={"batches": len(batches), "stamps": stamps,
                                                     "checks": list(GATE_CHECKS)})


def audit_rendered(source: InjectSource, stamps: int, config: AuditConfig | None = None) -> AuditReport:
    """Render about `stamps` stamps (whole batches, at least 2, from the gate's own seeds) and audit them."""
    n = max(2, math.ceil(stamps / source.batch_size))
    return audit_batches([source.render(g, AUDIT_STREAM) for g in range(n)], config)


def audit_source(source: InjectSource, stamps: int, config: AuditConfig | None = None) -> AuditReport:
    """`audit_rendered`, refused (RefusedError) on NO-GO."""
    report = audit_rendered(source, stamps, config)
    if report.verdict != "GO":
        floor = ("warning", "error") if report.fail_on == "warning" else ("error",)
        worst = [f for f in report.sorted_findings() if f.severity in floor]
        raise RefusedError(f"on-the-fly batches fail the audit (NO-GO, as `dhs audit` rules a stored tier): "
                           f"[{worst[0].check}] {worst[0].message}" + (f" (+{len(worst) - 1} more)" if len(worst) > 1
                                                                       else "")
                           + "; fix the simulate config (--sim.*) or the hosts (--inject), then train again")
    return report


def gate(source: InjectSource, stamps: int, info) -> AuditReport | None:
    """`dhs train --inject`'s gate: rank 0 says what it renders and audits `stamps` of it (0: no gate); a NO-GO
    refuses on every rank (RefusedError, exit 3). Returns the report (rank 0) for RUN/inject_audit.json."""
    from darkhaloscope.runtime import distributed as dd

    report, refusal = None, None
    if info.is_main:
        print(source.describe())
        if stamps:
            try:
                report = audit_source(source, stamps)
                print(f"audit of {report.uri}: {report.verdict} ({report.counts_line()})")
            except RefusedError as e:
                refusal = str(e)
    refusal = dd.broadcast_object(refusal, info)
    if refusal:
        raise RefusedError(refusal)
    return report
