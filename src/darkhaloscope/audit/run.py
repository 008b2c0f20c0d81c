"""`run_audit(uri)`: open the tier, run the cheap pass, the sampled pixel pass and every registered check.

    from darkhaloscope.audit import run_audit, AuditConfig
    report = run_audit("s3://bucket/stamps/train_stamp64/", AuditConfig(sample_rows=5000))
    report.verdict, report.findings, report.to_json()

Used by `dhs audit DATA`, `dhs review` and `dhs demo`. Importable without torch. `checks=("balance", ...)` runs a
subset (library callers and tests; the verdict then covers those checks only): a subset of pixel-free checks
(balance, leakage) skips the pixel pass.
"""

from __future__ import annotations

import contextlib
import time

from darkhaloscope.audit import checks_data, checks_signal, checks_split  # noqa: F401 - registers the checks
from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.audit.pixels import sample_pixels
from darkhaloscope.audit.registry import CHECKS, PIXEL_FREE, AuditContext
from darkhaloscope.audit.report import AuditReport
from darkhaloscope.common.report import Finding
from darkhaloscope.audit.scan import scan_tier
from darkhaloscope.common.progress import Progress
from darkhaloscope.errors import DataError
from darkhaloscope.stamps.batch import stamp_column
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.stamps.tier import open_tier


@contextlib.contextmanager
def _progress(enabled: bool):
    """Yield `task(description, total, unit) -> advance(n)`: one `Progress` per pass, each closed when the
    next starts (and at the end)."""
    bars: list[Progress] = []

    def task(desc: str, total: int, unit: str):
        if bars:
            bars[-1].close()
        bars.append(Progress(total, desc, unit=unit, enabled=enabled, transient=True))
        return bars[-1].advance
    try:
        yield task
    finally:
        if bars:
            bars[-1].close()


def run_audit(uri: str, config: AuditConfig | None = None, s3: S3Options | None = None, *, full: bool = False,
              progress: bool = False, run_info: dict | None = None, checks=None) -> AuditReport:
    """Audit the tier at `uri` (folder, file or s3:// prefix); never raises for bad data, reports it.
    `checks`: names of the checks to run (default: every registered one, in registration order)."""
    cfg = config or AuditConfig()
    names = list(CHECKS) if checks is None else [n for n in CHECKS if n in set(checks)]
    unknown = sorted(set(checks or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown audit check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    report = AuditReport(uri=str(uri), fail_on=cfg.fail_on, run=run_info or {})
    t0 = time.perf_counter()
    try:
        tier = open_tier(str(uri), s3, threads=cfg.threads)
    except DataError as e:
        report.findings.append(Finding("schema", "error", str(e), {}))
        return report
    with _progress(progress) as task:
        advance = task("cheap pass: label/split/id columns", len(tier.files), "files")
        scan = scan_tier(tier, leakage_max_rows=cfg.leakage_max_rows, seed=cfg.seed, threads=cfg.threads,
                         progress=advance)
        t_cheap = time.perf_counter() - t0
        pixels = None
        if stamp_column(tier.columns) in tier.columns and not set(names) <= PIXEL_FREE:
            holder = {}
            pixels = sample_pixels(
                tier, cfg, full=full, progress=lambda n: holder["adv"](n),
                total_hint=lambda n: holder.setdefault("adv", task("pixel pass: decoding row groups", n, "row groups")))
    ctx = AuditContext(tier, cfg, scan, pixels)
    for name in names:
        report.findings.extend(CHECKS[name](ctx))
    report.summary = {"files": len(tier.files), "rows": tier.num_rows,
                      "rows_decoded": pixels.rows_decoded if pixels else 0,
                      "sample": "full" if full else f"seeded sample ({cfg.sample_rows} rows)",
                      "cheap_pass_s": round(t_cheap, 3), "total_s": round(time.perf_counter() - t0, 3)}
    return report
